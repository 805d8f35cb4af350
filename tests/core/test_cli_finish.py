"""python -m mn_core colorize --full-resolution ...: the page's own size, its lines, the layers, clear errors."""

import numpy as np
import pytest
from PIL import Image

from mn_core.finish import LINE_LEVEL
from mn_core.synthetic_page import draw_page
from test_cli import run


@pytest.fixture(scope="module")
def page_files(tmp_path_factory, sample_images):
    d = tmp_path_factory.mktemp("cli-finish")
    page = draw_page(480, 640, seed=2)
    page.lines.save(d / "page.png")
    page.tones.save(d / "tones.png")
    page.colour.resize((60, 80)).save(d / "prior.png")
    sample_images["reference"].save(d / "ref.png")
    return d


def test_full_resolution_keeps_the_page_size_and_its_lines(tiny_models, page_files, tmp_path):
    out = run("colorize", "--models", tiny_models, "--reference", page_files / "ref.png", "--lineart",
              page_files / "page.png", "--size", 128, "--steps", 1, "--full-resolution", "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "(480x640" in out.stdout
    image = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    lines = np.asarray(Image.open(page_files / "page.png").convert("L"))
    assert image.shape[:2] == (640, 480)
    core = lines < LINE_LEVEL
    assert np.array_equal(image[core], np.repeat(lines[core][:, None], 3, axis=1))


def test_flat_shading_prior_and_layers(tiny_models, page_files, tmp_path):
    from psd_tools import PSDImage

    out = run("colorize", "--models", tiny_models, "--reference", page_files / "ref.png", "--lineart",
              page_files / "page.png", "--size", 128, "--steps", 1, "--flat", "--keep-shading",
              page_files / "tones.png", "--prior", page_files / "prior.png", "--prior-strength", "0.5",
              "--layers", tmp_path / "page.psd", "--png-layers", tmp_path / "layers", "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert "wrote 5 PNG layers" in out.stdout and "(5 layers)" in out.stdout
    psd = PSDImage.open(tmp_path / "page.psd")
    assert [layer.name for layer in psd] == ["Original page", "Flat colours", "Colour with shading (model)",
                                             "Shading (page tones)", "Lines"]
    flattened = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    assert np.array_equal(np.asarray(psd.topil().convert("RGB")), flattened)
    assert sorted(p.name for p in (tmp_path / "layers").iterdir()) == [
        "o_detail.png", "o_flats.png", "o_lines.png", "o_page.png", "o_shading.png"]


def test_extract_with_full_resolution(tiny_models, page_files, tmp_path):
    out = run("colorize", "--models", tiny_models, "--reference", page_files / "ref.png", "--lineart",
              page_files / "tones.png", "--extract", "--size", 128, "--steps", 1, "--layers", tmp_path / "p.psd",
              "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "o.png").size == (480, 640) and (tmp_path / "p.psd").is_file()


@pytest.mark.parametrize("args, message", [
    (["--keep-shading", "SMALL"], "--keep-shading SMALL_PATH: the page is 48x64 but --lineart is 480x640"),
    (["--keep-shading", "MISSING"], "file not found"),
    (["--prior", "MISSING"], "--prior MISSING_PATH: file not found"),
    (["--layers", "OUT_PNG"], "--layers OUT_PNG_PATH: use the extension .psd"),
])
def test_finishing_inputs_are_checked_before_the_models_run(page_files, tmp_path, args, message):
    """An empty --models folder: the finishing input's error comes first, before anything is loaded."""
    Image.new("L", (48, 64), 200).save(tmp_path / "small.png")
    subst = {"SMALL": tmp_path / "small.png", "MISSING": tmp_path / "nope.png", "OUT_PNG": tmp_path / "o.png"}
    args = [str(subst.get(a, a)) for a in args]
    message = message.replace("SMALL_PATH", str(tmp_path / "small.png")).replace(
        "MISSING_PATH", str(tmp_path / "nope.png")).replace("OUT_PNG_PATH", str(tmp_path / "o.png"))
    (tmp_path / "empty").mkdir()
    out = run("colorize", "--models", tmp_path / "empty", "--reference", page_files / "ref.png", "--lineart",
              page_files / "page.png", *args, "--out", tmp_path / "out.png")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--prior-strength", "2"], "must be between 0 and 1"),
    (["--prior-strength", "nan"], "must be finite"),
    (["--close-gaps", "-1"], "must be 0 or more"),
])
def test_bad_finishing_arguments_are_usage_errors(args, message, tmp_path):
    out = run("colorize", "--models", tmp_path, "--reference", "r.png", "--lineart", "l.png", "--out", "o.png",
              *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
