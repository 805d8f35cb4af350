"""python -m mn_core evaluate: pairing by name, the reports (JSON, CSV, HTML looked at in Chromium), the
benchmark protocol on tiny weights, and one-line errors."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mn_core import evaluate as E
from mn_core import metrics as M
from support import ROOT


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mn_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _frames(n=4, h=176, w=184, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / w
    out = []
    for t in range(n):
        base = np.stack([np.sin(4 * xx + t * 0.3), np.cos(3 * yy - t * 0.2), np.sin(5 * (xx + yy))], -1)
        out.append(((base * 0.5 + 0.5) * 255).astype(np.uint8))
    preds = [np.clip(f.astype(np.int16) + rng.integers(-15, 16, f.shape), 0, 255).astype(np.uint8) for f in out]
    return preds, out


@pytest.fixture
def folders(tmp_path):
    preds, targets = _frames()
    for sub in ("pred", "target", "reference", "points"):
        (tmp_path / sub).mkdir()
    for k, (p, t) in enumerate(zip(preds, targets)):
        Image.fromarray(p).save(tmp_path / "pred" / f"f{k}.png")
        Image.fromarray(t).save(tmp_path / "target" / f"f{k}.jpg" if k == 1 else tmp_path / "target" / f"f{k}.png",
                                quality=100)
        Image.fromarray(t[::2, ::2]).save(tmp_path / "reference" / f"f{k}.png")
    Image.fromarray(targets[0]).save(tmp_path / "pred" / "f0.png")  # one perfect prediction: PSNR inf
    (tmp_path / "points" / "f2.json").write_text(json.dumps({"pairs": [{"reference": [3, 3], "lineart": [40, 50]}]}))
    return tmp_path


def test_evaluate_writes_json_csv_and_html(folders):
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--reference",
              folders / "reference", "--points", folders / "points", "--sequence", "--out", folders / "ev" / "r.json")
    assert out.returncode == 0, out.stderr
    report = json.loads((folders / "ev" / "r.json").read_text())
    assert [r["name"] for r in report["images"]] == ["f0", "f1", "f2", "f3"]  # f1.png paired with f1.jpg
    assert report["columns"] == ["psnr", "ssim", "ms_ssim", "point_mse", "temporal"]
    first, second, third = report["images"][:3]
    assert first["psnr"] == "inf" and first["ssim"] == pytest.approx(1.0) and first["temporal"] is None
    assert first["point_mse"] is None and third["point_mse"] is not None

    # every number is the metric of the files themselves
    pred = np.asarray(Image.open(folders / "pred" / "f2.png").convert("RGB"))
    target = np.asarray(Image.open(folders / "target" / "f2.png").convert("RGB"))
    assert third["psnr"] == pytest.approx(M.psnr(pred, target)) and third["ssim"] == pytest.approx(M.ssim(pred,
                                                                                                           target))
    finite = [r["ssim"] for r in report["images"]]
    assert report["mean"]["ssim"] == pytest.approx(np.mean(finite)) and report["mean"]["psnr"] == "inf"
    assert second["temporal"] > 0 and report["count"] == 4

    # the printed table: a row per image and the mean
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "psnr", "↑"] and any(l.startswith("mean (4)") for l in lines)

    rows = list(csv.reader(open(folders / "ev" / "r.csv")))
    assert rows[0] == ["name", "psnr", "ssim", "ms_ssim", "point_mse", "temporal"]
    assert [r[0] for r in rows[1:]] == ["f0", "f1", "f2", "f3", "mean"] and rows[1][1] == "inf"
    assert float(rows[3][2]) == pytest.approx(third["ssim"])

    html = (folders / "ev" / "r.html").read_text()
    files = folders / "ev" / "r_files"
    assert sorted(p.name for p in files.glob("plot_*.png")) == [f"plot_{c}.png" for c in
                                                                 sorted(["psnr", "ssim", "ms_ssim", "point_mse",
                                                                         "temporal"])]
    sheets = sorted(files.glob("sheet_*.jpg"))
    assert len(sheets) == 4 and all(f"r_files/{p.name}" in html for p in sheets)
    # reference | prediction | target | difference, 160 px high
    assert Image.open(sheets[0]).height == 160 and Image.open(sheets[0]).width > 4 * 160


def test_html_report_shows_in_chromium(folders):
    from support.browser_helpers import launch, require_playwright

    assert run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--metrics", "psnr,ssim",
               "--out", folders / "ev" / "r.json").returncode == 0
    sync_playwright = require_playwright()
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page()
        page.goto((folders / "ev" / "r.html").as_uri())
        page.wait_for_load_state("load")
        shown = page.evaluate("""() => [...document.images].map(i => [i.getAttribute('src'), i.complete,
                                                                      i.naturalWidth])""")
        cells = page.evaluate("() => [...document.querySelectorAll('#mean td')].map(td => td.textContent)")
        browser.close()
    assert len(shown) == 2 + 4 and all(ok and width > 0 for _, ok, width in shown), shown
    assert cells[0] == "4" and cells[1] == "inf"


def test_pairing_and_size_errors_are_one_line(folders):
    (folders / "target" / "f3.png").unlink()
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--out", folders / "r.json")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "1 file(s) have no target in" in out.stderr and "f3" in out.stderr
    assert not (folders / "r.json").exists()

    Image.fromarray(np.zeros((100, 120, 3), np.uint8)).save(folders / "target" / "f3.png")
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--metrics", "psnr,ssim",
              "--out", folders / "r.json")
    assert out.returncode == 2 and "f3: prediction f3.png is 184x176 but target f3.png is 120x100" in out.stderr
    assert "--resize" in out.stderr
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--metrics", "psnr,ssim",
              "--resize", "--no-html", "--out", folders / "r.json")
    assert out.returncode == 0, out.stderr
    assert not (folders / "r.html").exists()

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folders / "pred" / "f3.jpg")
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--out", folders / "r.json")
    assert out.returncode == 2 and "f3.jpg and f3.png have the same name" in out.stderr
    (folders / "pred" / "f3.jpg").unlink()
    out = run("evaluate", "--pred", folders / "nope", "--target", folders / "target", "--out", folders / "r.json")
    assert out.returncode == 2 and "--pred" in out.stderr and "no such folder" in out.stderr
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--metrics", "fidd",
              "--out", folders / "r.json")
    assert out.returncode == 2 and "unknown metric(s) fidd" in out.stderr
    out = run("evaluate", "--pred", folders / "pred", "--target", folders / "target", "--metrics", "temporal",
              "--out", folders / "r.json")
    assert out.returncode == 2 and "needs a sequence" in out.stderr


def test_score_images_of_a_batch():
    preds, targets = _frames(3)
    report = E.score_images(preds, targets[:1], ["psnr", "ssim"])  # one target for every prediction
    assert [r["name"] for r in report.images] == ["1", "2", "3"]
    assert report.images[1]["psnr"] == pytest.approx(M.psnr(preds[1], targets[0]))
    with pytest.raises(E.EvaluateError, match="target: 2 images for 3 predictions"):
        E.score_images(preds, targets[:2], ["psnr"])
    float_batch = np.stack(preds).astype(np.float32) / 255  # ComfyUI-style floats in [0, 1]
    again = E.score_images(float_batch, targets, ["psnr"])
    assert again.images[2]["psnr"] == pytest.approx(M.psnr(preds[2], targets[2]))
    assert math.isfinite(again.mean["psnr"])


def test_benchmark_protocol_on_tiny_weights(tiny_models, sample_images, tmp_path):
    pairs = tmp_path / "pairs"
    for sub in ("reference", "target", "points"):
        (pairs / sub).mkdir(parents=True)
    for k in range(2):
        sample_images["reference"].save(pairs / "reference" / f"p{k}.png")
        sample_images["reference"].rotate(90 * k, expand=True).save(pairs / "target" / f"p{k}.png")
    (pairs / "points" / "p1.json").write_text(json.dumps({"pairs": [{"reference": [80, 50], "lineart": [40, 40]}]}))
    args = ("evaluate", "--benchmark", "--models", tiny_models, "--pairs", pairs, "--steps", 2, "--size", 128,
            "--device", "cpu", "--metrics", "psnr,ssim", "--out", tmp_path / "bench" / "report.json")
    out = run(*args)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("MangaNinja (2)") for line in out.stdout.splitlines())
    report = json.loads((tmp_path / "bench" / "report.json").read_text())
    assert [r["name"] for r in report["images"]] == ["p0", "p1"] and report["steps"] == 2
    assert report["images"][0]["point_mse"] is None and report["images"][1]["point_mse"] is not None
    preds = tmp_path / "bench" / "predictions"
    for k in range(2):
        target = Image.open(pairs / "target" / f"p{k}.png")
        assert Image.open(preds / f"p{k}.png").size == target.size  # coloured at the target's size
    # the predictions are MangaNinja's: the same as colorize with the target's extracted line art
    single = run("colorize", "--models", tiny_models, "--reference", pairs / "reference" / "p1.png", "--lineart",
                 pairs / "target" / "p1.png", "--extract", "--points", pairs / "points" / "p1.json", "--steps", 2,
                 "--size", 128, "--device", "cpu", "--out", tmp_path / "single.png")
    assert single.returncode == 0, single.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "single.png")), np.asarray(Image.open(preds / "p1.png")))

    # a second run keeps the predictions; other options are refused instead of mixing runs
    stamp = (preds / "p0.png").stat().st_mtime_ns
    assert run(*args).returncode == 0 and (preds / "p0.png").stat().st_mtime_ns == stamp
    other = run(*[a if a != 2 else 3 for a in args])
    assert other.returncode == 2 and "predictions made with other options" in other.stderr
