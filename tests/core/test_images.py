"""Images in and out, and the geometry of the fit: a point on a feature lands on that feature after processing."""

import numpy as np
import pytest
import torch
from PIL import Image

from mn_core.images import Fit, ImageError, clip_input, to_model_input, to_pil, to_uint8


def dot_image(size, xy, radius):
    """White image with a black disc centred on pixel xy."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w), 255, np.uint8)
    img[(xx - xy[0]) ** 2 + (yy - xy[1]) ** 2 <= radius**2] = 0
    return Image.fromarray(img).convert("RGB")


def centroid(img: Image.Image):
    a = 255 - np.asarray(img.convert("L")).astype(np.float64)
    a[a < 64] = 0
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return (xx * a).sum() / a.sum(), (yy * a).sum() / a.sum()


CASES = [((512, 512), 512), ((300, 200), 512), ((200, 300), 256), ((2000, 1500), 512), ((4000, 600), 512),
         ((97, 131), 128)]


@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("source_size, n", CASES)
def test_point_lands_on_its_feature(mode, source_size, n):
    w, h = source_size
    fit = Fit(mode, source_size, n)
    left, top, cw, ch = fit.box
    rng = np.random.RandomState(w * h)
    for _ in range(5):
        # Radius such that the disc stays several pixels wide after the fit.
        radius = max(3, int(4 * max(w / cw, h / ch)))
        x, y = rng.randint(radius, w - radius), rng.randint(radius, h - radius)
        processed = fit.apply(dot_image(source_size, (x, y), radius))
        assert processed.size == (n, n)
        row, col = fit.map_point(x, y)
        cx, cy = centroid(processed)
        # The mapped pixel's centre is within a pixel of the feature's centre in the square.
        assert abs(col + 0.5 - (cx + 0.5)) <= 1.0 and abs(row + 0.5 - (cy + 0.5)) <= 1.0, (x, y, row, col, cx, cy)
        # ... and restoring the square brings the feature back to where it was.
        back = fit.restore(processed)
        assert back.size == source_size
        bx, by = centroid(back)
        assert abs(bx - x) <= max(1.0, w / cw) and abs(by - y) <= max(1.0, h / ch)


def test_letterbox_keeps_aspect_and_pads():
    fit = Fit("letterbox", (300, 150), 512)
    assert fit.box == (0, 128, 512, 256)
    img = fit.apply(Image.new("RGB", (300, 150), (10, 20, 30)), fill=255)
    a = np.asarray(img)
    assert (a[:128] == 255).all() and (a[384:] == 255).all() and (a[200, 256] == (10, 20, 30)).all()
    mask = fit.content_mask()[0, 0]
    assert mask[:128].sum() == 0 and mask[128:384].all()


def test_same_size_is_untouched():
    img = Image.fromarray(np.random.RandomState(0).randint(0, 256, (128, 128, 3), np.uint8))
    for mode in ("letterbox", "stretch"):
        fit = Fit(mode, (128, 128), 128)
        assert np.array_equal(np.asarray(fit.apply(img)), np.asarray(img))
        assert fit.map_point(17, 99) == (99, 17)


def test_to_pil_accepts_every_input_kind():
    rgb = np.random.RandomState(1).randint(0, 256, (20, 30, 3), np.uint8)
    expect = np.asarray(Image.fromarray(rgb))
    for value in (Image.fromarray(rgb), rgb, torch.from_numpy(rgb.astype(np.float32) / 255)[None],
                  rgb.astype(np.float32) / 255):
        assert np.array_equal(np.asarray(to_pil(value)), expect)
    assert to_pil(rgb[..., 0]).mode == "L"
    assert to_pil(rgb[..., :1]).mode == "L"


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom transparent
    out = np.asarray(to_pil(rgba))
    assert (out[:2] == (200, 0, 0)).all() and (out[2:] == 255).all()
    half = np.zeros((1, 1, 4), np.uint8)
    half[..., 3] = 128
    assert np.asarray(to_pil(half))[0, 0, 0] == 127


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 3, 5), np.uint8), "C in 1..4"),
    (np.zeros((2, 3, 4, 3), np.uint8), "batch of 2"),
    (np.zeros((0, 3), np.uint8), "empty"),
    (np.full((2, 2), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2), np.int32), "uint8"),
    ("image.png", "expected a PIL image"),
])
def test_bad_images_say_what_is_wrong(bad, message):
    if isinstance(bad, np.ndarray) and bad.ndim == 4:
        bad = bad.transpose(0, 1, 2, 3)
    with pytest.raises(ImageError, match=message):
        to_pil(bad)


def test_normalisation_and_truncation_match_upstream():
    img = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).convert("RGB")
    x = to_model_input(img)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 16, 16)
    assert torch.equal(x, torch.from_numpy(np.asarray(img).transpose(2, 0, 1) / 255.0 * 2.0 - 1.0).float()[None])
    # 8-bit output truncates ((x+1)/2*255), it does not round
    assert to_uint8(torch.full((1, 3, 1, 1), 2 * (200.9 / 255) - 1))[0, 0, 0] == 200


def test_clip_input_shape_and_crop():
    img = Image.new("RGB", (300, 150), (255, 0, 0))
    x = clip_input(img)
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, 0], torch.full((224, 224), (1 - 0.48145466) / 0.26862954))
