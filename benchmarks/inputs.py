"""The benchmark's inputs: a deterministic reference and line-art frames, and the random full-size weights."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARKER = ".complete.json"


def prefault(mn) -> int:
    """Read every weight once, so that memory-mapped (lazily read) weights are resident; returns bytes touched."""
    total = 0
    with torch.inference_mode():
        for module in mn.modules.modules.values():
            for t in module.state_dict().values():
                if t.device.type == "cpu" and t.numel():
                    t.reshape(-1)[:: max(1, 4096 // t.element_size())].sum()  # one element per page
                total += t.numel() * t.element_size()
    return total


# --------------------------------------------------------------------------------------------------------------
# Inputs


def make_reference(size: int) -> Image.Image:
    """A coloured 'character' on white (deterministic), slightly non-square."""
    w, h = size + size // 4, size
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    s = size / 128
    d.ellipse((40 * s, 8 * s, 112 * s, 76 * s), fill=(236, 196, 160), outline=(20, 20, 20), width=max(1, int(2 * s)))
    d.pieslice((36 * s, 2 * s, 116 * s, 60 * s), 180, 360, fill=(60, 40, 120), outline=(20, 20, 20))
    d.rectangle((52 * s, 74 * s, 100 * s, 124 * s), fill=(200, 40, 50), outline=(20, 20, 20), width=max(1, int(2 * s)))
    d.ellipse((60 * s, 34 * s, 68 * s, 42 * s), fill=(30, 120, 200))
    d.ellipse((84 * s, 34 * s, 92 * s, 42 * s), fill=(30, 120, 200))
    return img


def make_frame(size: int, index: int, extract: bool) -> Image.Image:
    """Frame ``index`` of the line-art batch: the character shifted a little; black lines on white (or a colour
    image with outlines, for the annotator)."""
    w, h = size, size + size // 8
    s = size / 128
    dx = (index % 5 - 2) * 3 * s
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    width = max(1, int(1.5 * s))
    fill = (lambda c: c) if extract else (lambda c: None)
    d.ellipse((30 * s + dx, 12 * s, 98 * s + dx, 80 * s), fill=fill((230, 190, 150)), outline=(0, 0, 0), width=width)
    d.arc((26 * s + dx, 6 * s, 102 * s + dx, 62 * s), 180, 360, fill=(0, 0, 0), width=width)
    d.rectangle((40 * s + dx, 78 * s, 88 * s + dx, 136 * s), fill=fill((180, 60, 60)), outline=(0, 0, 0), width=width)
    d.line((44 * s + dx, 100 * s, 84 * s + dx, 100 * s), fill=(0, 0, 0), width=width)
    return img if extract else img.convert("L")


# --------------------------------------------------------------------------------------------------------------
# Weights


def ensure_random_models(cache: Path, seed: int) -> tuple[Path, float | None]:
    """The random SD1.5-shaped folder in ``cache``, written first if absent; returns (folder, seconds written)."""
    marker = cache / MARKER
    want = {"preset": "SD15", "seed": seed}
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want:
            return cache, None
        print(f"{cache} holds other random weights ({have}); rewriting", file=sys.stderr)
        marker.unlink()
    print(f"writing random SD1.5-shaped weights (seed {seed}, ~15 GB) to {cache}; this takes a few minutes, "
          "once", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # In a child process, so that its memory does not count towards (or linger in) this process's RSS.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mn_core import synthetic; "
            "synthetic.write_layout(sys.argv[2], synthetic.SD15, seed=int(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(cache), str(seed)], check=True)
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({**want, "seconds": round(seconds, 1)}))
    return cache, seconds


