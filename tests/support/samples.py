"""Test images drawn in code."""

from __future__ import annotations


def draw_samples():
    """A reference (160x120), and line art of the same character (96x140) in both polarities."""
    import numpy as np
    from PIL import Image, ImageDraw

    ref = Image.new("RGB", (160, 120), "white")
    d = ImageDraw.Draw(ref)
    d.ellipse((40, 10, 120, 90), fill=(230, 90, 60), outline=(20, 20, 20), width=3)
    d.rectangle((60, 80, 100, 118), fill=(40, 80, 200), outline=(20, 20, 20), width=3)
    line = Image.new("L", (96, 140), 255)
    d = ImageDraw.Draw(line)
    d.ellipse((10, 10, 86, 80), outline=0, width=3)
    d.rectangle((28, 78, 68, 136), outline=0, width=3)
    return {"reference": ref, "black_on_white": line, "white_on_black": Image.fromarray(255 - np.asarray(line))}
