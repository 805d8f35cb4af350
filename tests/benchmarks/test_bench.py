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
