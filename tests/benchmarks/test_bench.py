"""The benchmark script (benchmarks/bench.py) in its --tiny mode: runs, prints its table, appends a JSON line."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from support import ROOT

TIMINGS = ("model_load_s", "reference_encode_s", "lineart_s", "prepare_s", "once_per_image_s", "step_first_s",
           "step_median_s", "decode_s", "e2e_s")


def test_bench_tiny(tmp_path):
    results = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/bench.py", "--tiny", "--compare-precisions", "--breakdown",
                           "--results", str(results)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("model build/load (s)", "once per image (s)", "per step, median (s)", "decode (s)",
                  "end to end (s)", "peak RSS overall (GB)", "PSNR vs fp32"):
        assert label in out, f"{label!r} missing from the table:\n{out}"

    lines = results.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    for key in ("timestamp", "machine", "device", "versions", "threads", "git_commit", "params", "results"):
        assert key in record
    assert {"platform", "cpu_model", "cores", "ram_bytes"} <= set(record["machine"])
    assert {"torch", "diffusers", "transformers"} <= set(record["versions"])
    assert record["threads"] >= 1
    assert record["params"]["tiny"] is True and record["params"]["steps"] == 2 and record["params"]["size"] == 128

    r = record["results"]
    for key in TIMINGS:
        assert isinstance(r[key], float) and r[key] > 0, (key, r[key])
    assert len(r["frames"]) == 1 and len(r["frames"][0]["steps_s"]) == 2
    assert math.isclose(r["once_per_image_s"], r["reference_encode_s"] + r["lineart_s"] + r["prepare_s"])
    assert r["e2e_s"] >= r["once_per_image_s"]
    assert r["peak_rss_bytes"] >= r["peak_rss_after_build_bytes"] > 0
    assert set(r["phases"]) >= {"build", "encode_reference", "lineart", "steps", "decode"}
    totals = r["breakdown"]["totals"]
    assert {"controlnet", "unet", "reference_unet", "unet_attn1_reference", "vae_decoder", "clip_vision"} <= set(totals)
    assert r["breakdown"]["counts"]["controlnet"] == 2 and r["breakdown"]["counts"]["unet"] == 2
    assert "where the time goes" in out and "official" not in out
    for p in ("fp16", "bf16"):
        value = r["precision"][f"psnr_{p}_vs_fp32_db"]
        assert value == "inf" or value > 0


def test_frames_benchmark_tiny(tmp_path):
    """benchmarks/frames.py: frames/s with frames sharing network calls vs one by one, and their equality."""
    results = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "benchmarks/frames.py", "--tiny", "--frames", "3", "--frames-per-call",
                           "3", "--repeats", "1", "--results", str(results)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "frames/s" in proc.stdout and "speed-up" in proc.stdout
    record = json.loads(results.read_text().splitlines()[0])
    r = record["results"]
    assert record["benchmark"] == "frames" and set(r) >= {"batch_1", "batch_3", "speedup", "max_latent_diff"}
    assert r["max_latent_diff"] < 1e-3 and r["max_image_diff"] <= 1  # batched frames equal frame-by-frame ones
    assert r["batch_3"]["peak_memory_bytes"] > 0 and len(r["batch_1"]["seconds"]) == 1


def test_metrics_speed_benchmark_runs(tmp_path):
    """benchmarks/metrics_speed.py: the evaluate command over generated pairs, timed (numbers printed, not asserted)."""
    proc = subprocess.run([sys.executable, "benchmarks/metrics_speed.py", "--pairs", "3", "--size", "64", "--keep",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "evaluate command end to end:" in proc.stdout and "3 pairs of 64x64" in proc.stdout
    assert (tmp_path / "out" / "r.json").is_file() and len(list((tmp_path / "pred").iterdir())) == 3


def test_finish_speed_benchmark_runs(tmp_path):
    """benchmarks/finish_speed.py on a small page: every mode in its own process, the table and JSON written."""
    proc = subprocess.run([sys.executable, "benchmarks/finish_speed.py", "--width", "300", "--height", "450",
                           "--repeat", "1", "--json", str(tmp_path / "r.json")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "finish s" in proc.stdout and "the plain bicubic resize:" in proc.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["mode"] for r in results] == ["smooth", "flat", "flat+shading+prior"]
    for r in results:
        assert r["size"] == [300, 450] and r["peak_rss_mb"] >= r["rss_before_mb"] > 0 and r["psd_mb"] > 0
    assert results[0]["bad_pixels"] < results[0]["bad_pixels_resized"]


def test_shot_run_benchmark_runs(tmp_path):
    """benchmarks/shot_run.py on a short shot: the uninterrupted run, the SIGKILL and resume, the figures."""
    proc = subprocess.run([sys.executable, "benchmarks/shot_run.py", "--frames", "24", "--single-runs", "2",
                           "--json", str(tmp_path / "r.json")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "the single-image rate" in proc.stdout and "SIGKILL after" in proc.stdout
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["kill"]["identical_to_uninterrupted"] is True
    assert 0 < results["kill"]["killed_after_frames"] < 24
    assert results["uninterrupted"]["frames_per_s"] > 0 and results["uninterrupted"]["rss_first_tenth_mb"] > 0


def test_points_benchmark_runs_with_an_official_style_case(tmp_path):
    """benchmarks/points_bench.py: the warp table, and the official case's mechanics on a stand-in laid out like
    the official repository (test_cases/hz0.png, hz1.png and hz01_0/1.npy label maps: label k marks pair k), made
    from one of our warped drawings so the human pairs are known: pairs at the true correspondence must score
    (the real hz0/hz1 are CC BY-NC and are read from a checkout: README, Points without clicking)."""
    import numpy as np
    from PIL import Image

    from mn_core.warp_cases import make_case

    case = make_case("character", 2)
    folder = tmp_path / "official" / "test_cases"
    folder.mkdir(parents=True)
    case.reference.save(folder / "hz0.png")
    Image.merge("RGB", [case.lineart] * 3).save(folder / "hz1.png")  # a colour image, as the official hz1 is
    maps = [np.zeros((512, 512), np.uint8) for _ in range(2)]
    for k, (x, y) in enumerate([(120 + 60 * (i % 5), 110 + 90 * (i // 5)) for i in range(14)], 1):
        rx, ry = np.clip(case.truth([(x + 0.5, y + 0.5)])[0], 0, 511)
        maps[1][y, x] = k
        maps[0][int(ry), int(rx)] = k
    np.save(folder / "hz01_0.npy", maps[0])
    np.save(folder / "hz01_1.npy", maps[1])
    proc = subprocess.run([sys.executable, "benchmarks/points_bench.py", "--characters", "1", "--no-photos",
                           "--runs", "1", "--official", str(tmp_path / "official"), "--json", str(tmp_path / "p.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "prec@12" in proc.stdout and "official hz0->hz1" in proc.stdout
    r = json.loads((tmp_path / "p.json").read_text())
    assert r["warps"]["rows"][0]["pairs"] == 12 and r["warps"]["precision"] >= 0.9
    assert r["official"]["human_pairs"] == 14
    forward = r["official"]["hz0->hz1"]
    assert forward["pairs"] >= 8 and forward["precision"] >= 0.9  # the stand-in is a smooth warp: found
    assert forward["raw_matches"] >= forward["pairs"]
