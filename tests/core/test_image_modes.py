"""Every image mode PIL opens becomes the same 8-bit drawing (scaled, never clipped; alpha on white), read from a
real file; EXIF orientation is honoured; an animation gives its first frame with a warning; pages up to
10,000 x 14,000 px are accepted from their header and larger ones refused before anything is decoded."""

from __future__ import annotations

import io
import logging

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from mn_core.images import MAX_PAGE, ImageError, open_image, to_pil


def drawing() -> Image.Image:
    """An 8-bit grey line drawing with mid-grey strokes (16-bit data that is clipped turns these white)."""
    img = Image.new("L", (120, 90), 255)
    d = ImageDraw.Draw(img)
    d.ellipse((10, 10, 70, 70), outline=0, width=3)
    d.line((60, 80, 110, 20), fill=128, width=4)
    d.rectangle((80, 50, 110, 85), outline=64, width=2)
    return img


def saved(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def grey16_png(g8: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", g8.astype(np.uint16) * 257)
    assert ok
    return data.tobytes()


def rgb16_png(rgb8: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", (rgb8[..., ::-1].astype(np.uint16) * 257))  # OpenCV writes BGR
    assert ok
    return data.tobytes()


def variants():
    g = drawing()
    a = np.asarray(g)
    rgb = Image.merge("RGB", [g] * 3)
    alpha = Image.fromarray(np.where(a < 250, 255, 0).astype(np.uint8))  # strokes opaque, paper transparent
    black = Image.new("L", g.size, 0)
    la = Image.merge("LA", [Image.fromarray(np.where(a < 250, a, 0).astype(np.uint8)), alpha])
    rgba = Image.merge("RGBA", [Image.fromarray(np.where(a < 250, a, 0).astype(np.uint8))] * 3 + [alpha])
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=8)
    pal_t = pal.copy()
    pal_t.info["transparency"] = pal_t.getpixel((0, 0))  # the paper's index is transparent
    cmyk = rgb.convert("CMYK")
    i32 = Image.fromarray(a.astype(np.int32) * 257, "I")
    f32 = Image.fromarray(a.astype(np.float32) / 255.0, "F")
    del black
    return {
        "1": (saved(g.point(lambda v: 255 if v > 200 else 0).convert("1")), 0),  # compared with its own threshold
        "L": (saved(g), 0),
        "LA": (saved(la), 1),
        "P": (saved(pal), 1),
        "P+transparency": (saved(pal_t), 1),
        "RGB": (saved(rgb), 0),
        "RGBA": (saved(rgba), 1),
        "CMYK": (saved(cmyk, "TIFF"), 1),
        "I;16": (grey16_png(a), 0),
        "I": (saved(i32, "TIFF"), 0),
        "F": (saved(f32, "TIFF"), 1),
        "RGB 16-bit": (rgb16_png(np.asarray(rgb)), 0),
    }


@pytest.mark.parametrize("mode", list(variants()))
def test_every_mode_is_the_8bit_drawing(mode):
    data, tolerance = variants()[mode]
    img = open_image(data, what=mode)
    out = np.asarray(to_pil(img, what=mode).convert("L"), np.int16)
    want = np.asarray(drawing(), np.int16)
    if mode == "1":
        want = np.where(want > 200, 255, 0)
    assert out.shape == want.shape
    assert np.abs(out - want).max() <= tolerance, (mode, img.mode, np.abs(out - want).max())


def test_sixteen_bit_grey_is_scaled_not_clipped():
    """What many scanners and Krita write: grey lines must stay grey (clipping made every value above 255 white)."""
    img = open_image(grey16_png(np.asarray(drawing())))
    assert img.mode.startswith("I")
    out = np.asarray(to_pil(img))
    assert out[np.asarray(drawing()) == 128].mean() == pytest.approx(128, abs=1)


def test_float_tiff_in_unit_range_is_not_black():
    img = open_image(saved(Image.fromarray(np.asarray(drawing(), np.float32) / 255.0, "F"), "TIFF"))
    out = np.asarray(to_pil(img))
    assert out.mean() > 200  # mostly white paper, as drawn


def test_exif_orientation_is_honoured():
    g = Image.merge("RGB", [drawing()] * 3)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = open_image(saved(g, "JPEG", exif=exif.tobytes(), quality=95))
    assert img.size == (90, 120)  # shown upright, as every viewer shows it
    want = np.asarray(g.transpose(Image.ROTATE_270).convert("L"), np.int16)
    assert np.abs(np.asarray(to_pil(img).convert("L"), np.int16) - want).mean() < 3


def test_animated_files_give_their_first_frame_with_a_warning(caplog):
    first = Image.merge("RGB", [drawing()] * 3)
    second = Image.new("RGB", first.size, (255, 0, 0))
    data = saved(first, "GIF", save_all=True, append_images=[second], duration=100)
    with caplog.at_level(logging.WARNING):
        img = open_image(data, what="--lineart anim.gif")
    assert "--lineart anim.gif: an animated image (2 frames); its first frame is used" in caplog.text
    assert np.abs(np.asarray(to_pil(img).convert("L"), np.int16) - np.asarray(drawing(), np.int16)).max() <= 2


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (its pixel data is not there: decoding is never reached)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + body)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_pages_up_to_the_limit_pass_the_size_check_larger_are_refused():
    with pytest.raises(ImageError, match=r"20000x20000 px \(400 MP\) is larger than the largest page accepted, "
                                         r"10,000x14,000 px \(140 MP\); scale it down first"):
        open_image(png_header(20_000, 20_000), what="--lineart big.png")
    # at the limit the size check passes (then this header-only file is found truncated, as it is)
    for w, h in (MAX_PAGE, MAX_PAGE[::-1]):
        with pytest.raises(ImageError, match="damaged or truncated"):
            open_image(png_header(w, h), what="page")


def test_broken_files_are_clear_errors():
    with pytest.raises(ImageError, match="x.png: not a readable image"):
        open_image(b"not an image at all", what="x.png")
    good = saved(drawing())
    with pytest.raises(ImageError, match="y.png: the file is damaged or truncated"):
        open_image(good[: len(good) // 2], what="y.png")


def test_a_processing_size_the_checkpoints_cannot_take_is_named(tiny, sample_images):
    """64 px with the tiny configs used to end in torch's GroupNorm message; the smallest size comes from the
    checkpoint's UNet config (SD1.5's 1,280 channels in 32 groups take 64 px)."""
    from mn_core.assembly import unet_levels

    assert tiny.min_size() == 128
    for call in (lambda: tiny.encode_reference(sample_images["reference"], size=64),
                 lambda: tiny.extract_lineart(sample_images["reference"], size=64)):
        with pytest.raises(ValueError, match=r"processing size 64 is too small for these checkpoints .*use 128 or "
                                             r"more \(a multiple of 64\)"):
            call()
    assert unet_levels((320, 640, 1280, 1280), 32) == (4, 1280, 32)
    assert unet_levels((32, 32, 32, 64), 32) == (4, 32, 32)  # the deepest level reads 32 channels at 1x1
