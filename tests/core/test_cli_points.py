"""`python -m mn_core points` (no model weights) and `colorize --auto-points N`."""

import json
import subprocess
import sys

import pytest

from support import ROOT
from mn_core import points as P
from mn_core.palette import palette
from mn_core.suggest import suggest_points
from mn_core.warp_cases import make_case


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mn_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("points-cli")
    c = make_case("character", 1)
    c.reference.save(d / "ref.png")
    c.lineart.save(d / "line.png")
    return d, c


def test_points_writes_the_suggested_pairs_and_palette(case, tmp_path):
    d, c = case
    out = run("points", "--reference", d / "ref.png", "--lineart", d / "line.png", "--max-pairs", 10,
              "--palette", tmp_path / "palette.json", "--out", tmp_path / "points.json")
    assert out.returncode == 0, out.stderr
    written = P.parse((tmp_path / "points.json").read_text())
    assert written == suggest_points(c.reference, c.lineart, 10)
    assert 8 <= len(written) <= 10 and len(written.confidences) == len(written)
    assert f"wrote {len(written)} pairs to" in out.stdout
    pal = json.loads((tmp_path / "palette.json").read_text())
    assert pal["palette"] == [s.to_json() for s in palette(c.reference)] and pal["reference_size"] == [512, 512]


@pytest.mark.parametrize("args, message", [
    (["--max-pairs", "0"], "expected 1 to 24 pairs"),
    (["--max-pairs", "x"], "expected a whole number"),
    (["--min-confidence", "nan"], "--min-confidence"),
])
def test_bad_options_are_usage_errors(case, tmp_path, args, message):
    d, _ = case
    out = run("points", "--reference", d / "ref.png", "--lineart", d / "line.png", *args,
              "--out", tmp_path / "p.json")
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("which, message", [
    ("missing", "--lineart {d}/nope.png: file not found"),
    ("not_json", "--out {t}/p.txt: the points are written as JSON"),
    ("not_image", "--reference {d}/line.txt: not a readable image"),
])
def test_bad_files_are_one_line_errors(case, tmp_path, which, message):
    d, _ = case
    (d / "line.txt").write_text("no image")
    ref, line, out_file = d / "ref.png", d / "line.png", tmp_path / "p.json"
    if which == "missing":
        line = d / "nope.png"
    elif which == "not_json":
        out_file = tmp_path / "p.txt"
    else:
        ref = d / "line.txt"
    out = run("points", "--reference", ref, "--lineart", line, "--out", out_file)
    errors = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert errors[0].startswith(f"error: {message.format(d=d, t=tmp_path)}"), errors
    assert not out_file.exists()


def test_colorize_auto_points_equals_colorize_with_those_points(case, tiny_models, tmp_path):
    d, _ = case
    common = ["--models", tiny_models, "--reference", d / "ref.png", "--lineart", d / "line.png", "--steps", 2,
              "--size", 128, "--device", "cpu", "--precision", "fp32"]
    auto = run("colorize", *common, "--auto-points", 8, "--out", tmp_path / "auto.png")
    assert auto.returncode == 0, auto.stderr
    assert "suggested 8 pairs (asked for up to 8)" in auto.stderr
    assert run("points", "--reference", d / "ref.png", "--lineart", d / "line.png", "--max-pairs", 8,
               "--out", tmp_path / "p.json").returncode == 0
    hand = run("colorize", *common, "--points", tmp_path / "p.json", "--out", tmp_path / "hand.png")
    assert hand.returncode == 0, hand.stderr
    assert (tmp_path / "auto.png").read_bytes() == (tmp_path / "hand.png").read_bytes()
    assert run("colorize", *common, "--out", tmp_path / "none.png").returncode == 0
    assert (tmp_path / "none.png").read_bytes() != (tmp_path / "auto.png").read_bytes()  # the points did something
    both = run("colorize", *common, "--points", tmp_path / "p.json", "--auto-points", 4, "--out", tmp_path / "x.png")
    assert both.returncode == 2 and "give --points FILE or --auto-points N, not both" in both.stderr
