"""The command line: every option documented, a real colorization, one-line errors instead of tracebacks."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from support import ROOT
from mn_core.cli import build_parser


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mn_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_help_documents_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        text = sp.format_help()
        for action in sp._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            for flag in action.option_strings:
                assert flag in text
    out = run("colorize", "--help")
    assert out.returncode == 0
    for flag in ("--models", "--download", "--reference", "--lineart", "--extract", "--points", "--steps",
                 "--guidance-ref", "--guidance-point", "--seed", "--fit", "--precision", "--device", "--out"):
        assert flag in out.stdout


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_images):
    d = tmp_path_factory.mktemp("cli")
    sample_images["reference"].save(d / "ref.png")
    sample_images["black_on_white"].save(d / "line.png")
    (d / "points.json").write_text(json.dumps({"pairs": [{"reference": [80, 50], "lineart": [48, 45]}]}))
    return d


def test_colorize_writes_the_image_and_line_art(tiny_models, inputs, tmp_path):
    out = run("colorize", "--models", tiny_models, "--reference", inputs / "ref.png", "--lineart",
              inputs / "line.png", "--points", inputs / "points.json", "--steps", 2, "--size", 128, "--seed", 7,
              "--out", tmp_path / "out.png", "--lineart-out", tmp_path / "line.png")
    assert out.returncode == 0, out.stderr
    assert "seed 7" in out.stdout
    img = Image.open(tmp_path / "out.png")
    assert img.size == (96, 140) and np.asarray(img).std() > 1
    assert Image.open(tmp_path / "line.png").size == (96, 140)
    again = run("colorize", "--models", tiny_models, "--reference", inputs / "ref.png", "--lineart",
                inputs / "line.png", "--points", inputs / "points.json", "--steps", 2, "--size", 128, "--seed", 7,
                "--out", tmp_path / "again.png", "--low-memory")
    assert again.returncode == 0, again.stderr
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(Image.open(tmp_path / "again.png"), np.int16))
    assert diff.max() <= 1


def test_readme_quick_start_runs_as_written(tiny_models, tmp_path):
    """The README's one-line quick start, from `-m mn_core` on, with only the model folder swapped for the tiny
    weights (no download here; the download itself is tested against the fake hub) and the output moved to tmp:
    the sample drawings it names ship in the repository."""
    import re
    import shlex

    block = re.search(r"## Quick start.*?```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)
    args = shlex.split(block.split("-m mn_core", 1)[1])
    assert args[:4] == ["colorize", "--models", "checkpoints", "--download"], args
    for flag in ("--reference", "--lineart"):
        assert (ROOT / args[args.index(flag) + 1]).is_file(), args[args.index(flag) + 1]
    args[2:4] = [str(tiny_models)]
    args[args.index("--out") + 1] = str(tmp_path / "coloured.png")
    out = run(*args, "--steps", 1, "--size", 128)
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "coloured.png").size == Image.open(ROOT / "docs/samples/manganinja_lineart.png").size


def test_extract_mode(tiny_models, inputs, tmp_path):
    out = run("colorize", "--models", tiny_models, "--reference", inputs / "ref.png", "--lineart",
              inputs / "ref.png", "--extract", "--steps", 1, "--size", 128, "--fit", "stretch",
              "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "o.png").size == (160, 120)


@pytest.mark.parametrize("args, message", [
    (["--reference", "missing.png"], "--reference missing.png: file not found"),
    (["--lineart", "NOT_AN_IMAGE"], "not a readable image"),
    (["--points", "BAD_POINTS"], "points are not valid JSON"),
    (["--points", "FAR_POINTS"], "lies outside the 160x120 reference"),
    (["--models", "EMPTY_DIR"], "model file(s) missing"),
    (["--out", "out.txt"], "use an image extension"),
    (["--device", "tpu"], "error:"),
])
def test_bad_input_gives_one_line_errors(tiny_models, inputs, tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "far.json").write_text('{"pairs": [{"reference": [500, 5], "lineart": [1, 1]}]}')
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "empty").mkdir()
    subst = {"NOT_AN_IMAGE": tmp_path / "notimage.png", "BAD_POINTS": tmp_path / "bad.json",
             "FAR_POINTS": tmp_path / "far.json", "EMPTY_DIR": tmp_path / "empty"}
    base = {"--models": tiny_models, "--reference": inputs / "ref.png", "--lineart": inputs / "line.png",
            "--out": tmp_path / "o.png"}
    extra = []
    for flag, value in zip(args[::2], args[1::2]):
        value = subst.get(value, value)
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    cmd = ["colorize", "--steps", 1, "--size", 128, *sum(([k, v] for k, v in base.items()), []), *extra]
    out = run(*cmd)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "must be at least 1"),
    (["--size", "500"], "multiple of 64"),
    (["--guidance-ref", "nan"], "must be finite"),
    (["--fit", "crop"], "invalid choice"),
])
def test_bad_arguments_are_usage_errors(args, message, tmp_path):
    out = run("colorize", "--models", tmp_path, "--reference", "r.png", "--lineart", "l.png", "--out", "o.png",
              *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
