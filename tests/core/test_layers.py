"""Layers of a finished page: the PSD read back with psd-tools and opened by a real program (GIMP, in batch mode),
the PNG layers, atomic writes, and psd-tools' absence as one line."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from support import ROOT
from mn_core import finish as F
from mn_core import layers as L
from mn_core.synthetic_page import draw_page

EXPECTED = [("Original page", "normal", False), ("Flat colours", "normal", True),
            ("Colour with shading (model)", "normal", False), ("Shading (page tones)", "luminosity", True),
            ("Lines", "multiply", True)]


@pytest.fixture(scope="module")
def finished():
    page = draw_page(480, 640, seed=5)
    g = np.asarray(page.lines).astype(np.float32)[..., None] / 255
    colour = Image.fromarray((np.asarray(page.colour) * g).astype(np.uint8)).resize((192, 256), Image.BICUBIC)
    return F.finish_page(colour, page.lines, flat=True, keep_shading=page.tones)


def rgb(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_psd_reads_back_layer_by_layer(finished, tmp_path):
    from psd_tools import PSDImage

    path = L.write_psd(finished, tmp_path / "page.psd")
    assert not list(tmp_path.glob("*.partial"))
    psd = PSDImage.open(path)
    assert psd.size == finished.image.size
    got = [(layer.name, layer.blend_mode.name.lower(), layer.visible) for layer in psd]
    assert got == EXPECTED
    for layer, (_name, image, _mode, _visible) in zip(psd, finished.layers()):
        assert layer.size == finished.image.size and layer.offset == (0, 0)
        assert np.array_equal(rgb(layer.topil()), rgb(image)), layer.name
    assert np.array_equal(rgb(psd.topil()), rgb(finished.image))  # the merged image: the flattened result


GIMP_SCRIPT = """
(let* ((image (car (gimp-file-load RUN-NONINTERACTIVE "{psd}" "{psd}")))
       (layers (vector->list (cadr (gimp-image-get-layers image))))
       (k 0))
  (gimp-message (string-append "MODES|" (number->string LAYER-MODE-NORMAL) "|" (number->string LAYER-MODE-MULTIPLY)
                               "|" (number->string LAYER-MODE-LCH-LIGHTNESS)))
  (for-each (lambda (l)
              (gimp-message (string-append "LAYER|" (car (gimp-item-get-name l)) "|"
                                           (number->string (car (gimp-layer-get-mode l))) "|"
                                           (number->string (car (gimp-item-get-visible l))) "|"
                                           (number->string (car (gimp-drawable-width l))) "|"
                                           (number->string (car (gimp-drawable-height l)))))
              (file-png-save-defaults RUN-NONINTERACTIVE image l
                                      (string-append "{out}/layer" (number->string k) ".png") "layer.png")
              (set! k (+ k 1)))
            layers))
"""


def gimp() -> str | None:
    found = shutil.which("gimp-console-2.10") or shutil.which("gimp-console")
    if found is None and os.environ.get("MN_REQUIRE_GIMP") == "1":  # .ci/run installs it: CI must not skip
        pytest.fail("GIMP (gimp-console) is not installed; .ci/run installs the Debian package gimp")
    return found


def test_gimp_opens_the_psd_with_its_layers(finished, tmp_path):
    exe = gimp()
    if exe is None:
        pytest.skip("GIMP is not installed here (CI installs it; psd-tools read-back is tested above)")
    path = L.write_psd(finished, tmp_path / "page.psd")
    script = GIMP_SCRIPT.format(psd=path, out=tmp_path)
    env = {**os.environ, "HOME": str(tmp_path)}  # GIMP's profile goes into the test's folder
    out = subprocess.run([exe, "-i", "-d", "-f", "--batch-interpreter", "plug-in-script-fu-eval", "-b", script,
                          "-b", "(gimp-quit 0)"], capture_output=True, text=True, timeout=180, env=env)
    lines = [line.split("|", 1)[1] for line in (out.stdout + out.stderr).splitlines() if "LAYER|" in line
             or "MODES|" in line]
    assert lines, out.stdout + out.stderr
    normal, multiply, lightness = lines[0].split("|")
    modes = {"normal": normal, "multiply": multiply, "luminosity": lightness}  # GIMP's name for luminosity
    layers = [line.split("|") for line in lines[1:]]
    expected = [[name, modes[mode], "1" if visible else "0", str(finished.image.width), str(finished.image.height)]
                for name, mode, visible in reversed(EXPECTED)]  # GIMP lists the top layer first
    assert layers == expected
    for k, (_name, image, _mode, _visible) in enumerate(reversed(finished.layers())):
        assert np.array_equal(rgb(Image.open(tmp_path / f"layer{k}.png")), rgb(image)), k


def test_png_layers_lines_with_alpha_give_the_multiply(finished, tmp_path):
    paths = L.write_png_layers(finished, tmp_path, "page")
    assert [p.name for p in paths] == ["page_page.png", "page_flats.png", "page_detail.png", "page_shading.png",
                                       "page_lines.png"]
    lines = Image.open(tmp_path / "page_lines.png")
    assert lines.mode == "LA"
    over = Image.alpha_composite(finished.colour.convert("RGBA"), lines.convert("RGBA"))
    g = np.asarray(finished.lines).astype(np.float64)[..., None]
    multiply = np.asarray(finished.colour).astype(np.float64) * g / 255
    assert np.abs(rgb(over).astype(int) - multiply).max() <= 1.5
    assert np.array_equal(rgb(Image.open(tmp_path / "page_flats.png")), rgb(finished.colour))


def test_a_failed_write_leaves_no_file(finished, tmp_path, monkeypatch):
    import psd_tools.psd

    def full_disk(self, fp, *args, **kwargs):
        fp.write(b"8BPS partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(psd_tools.psd.PSD, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        L.write_psd(finished, tmp_path / "page.psd")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="use the extension .psd"):
        L.write_psd(finished, tmp_path / "page.png")


def test_without_psd_tools_one_line():
    code = ("import sys; sys.modules['psd_tools'] = None\n"
            "from mn_core import layers\n"
            "try:\n    layers._psd_tools()\nexcept ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == ('ERR writing a layered PSD needs psd-tools: pip install psd-tools (or pip install '
                                  '"comfyui-manganinja[psd]")'), out.stdout + out.stderr
