"""A drawn page at any resolution, with its true colours: input for the finishing tests, benchmark and figures.

``draw_page(width, height)`` draws panels of simple shapes (heads, hair strands, clothes, specks, a line with a
gap) in black anti-aliased lines on white, and separately the true flat colour of every shape (colour continues
under the lines) and a grey "manga" version with screentone dots. Line width scales with the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

PALETTE = [(235, 120, 40), (250, 225, 200), (50, 90, 210), (60, 160, 80), (240, 210, 40), (150, 60, 160),
           (200, 40, 60), (90, 200, 210)]


@dataclass
class Page:
    lines: Image.Image    # L, black lines on white (anti-aliased)
    colour: Image.Image   # RGB, the true flat colours (no lines)
    tones: Image.Image    # L, the grey page: lines over screentone shading
    gap: int              # width in px of the gap left in one line (the test of gap closing)
    line_width: int


def draw_page(width: int = 2000, height: int = 3000, *, seed: int = 0, gap: int | None = None) -> Page:
    rng = np.random.default_rng(seed)
    ss = 2  # drawn at twice the size, then reduced: anti-aliased lines
    W, H = width * ss, height * ss
    lw = max(2, round(min(width, height) / 500)) * ss
    lines = Image.new("L", (W, H), 255)
    colour = Image.new("RGB", (W, H), (255, 255, 255))
    shade = Image.new("L", (W, H), 255)
    dl, dc, ds = ImageDraw.Draw(lines), ImageDraw.Draw(colour), ImageDraw.Draw(shade)
    cols, rows = 2, 3
    pw, ph = W // cols, H // rows
    m = lw * 4
    k = 0
    for j in range(rows):
        for i in range(cols):
            x0, y0 = i * pw + m, j * ph + m
            x1, y1 = (i + 1) * pw - m, (j + 1) * ph - m
            dl.rectangle((x0, y0, x1, y1), outline=0, width=lw)  # panel border
            bw, bh = x1 - x0, y1 - y0
            for _ in range(3):
                c = PALETTE[k % len(PALETTE)]
                k += 1
                cx, cy = x0 + bw * rng.uniform(0.3, 0.7), y0 + bh * rng.uniform(0.3, 0.7)
                rx, ry = bw * rng.uniform(0.12, 0.28), bh * rng.uniform(0.12, 0.28)
                box = (cx - rx, cy - ry, cx + rx, cy + ry)
                if rng.random() < 0.5:
                    dc.ellipse(box, fill=c)
                    ds.ellipse(box, fill=int(255 - 0.35 * (255 - sum(c) / 3)))
                    dl.ellipse(box, fill=255, outline=0, width=lw)  # occludes what is behind
                else:
                    pts = [(cx + rx * np.cos(t), cy + ry * np.sin(t))
                           for t in np.linspace(0, 2 * np.pi, int(rng.integers(3, 7)), endpoint=False) + rng.random()]
                    dc.polygon(pts, fill=c)
                    ds.polygon(pts, fill=int(255 - 0.35 * (255 - sum(c) / 3)))
                    dl.polygon(pts, fill=255, outline=0, width=lw)
            # hair strands: thin regions between close parallel lines
            c = PALETTE[k % len(PALETTE)]
            k += 1
            sx, sy = x0 + bw * 0.08, y0 + bh * 0.08
            for s in range(4):
                top = sy + s * lw * 9
                dc.rectangle((sx, top, sx + bw * 0.3, top + lw * 9), fill=c if s % 2 else PALETTE[(k + 3) % 8])
                dl.line((sx, top, sx + bw * 0.3, top), fill=0, width=lw)
            dl.line((sx, sy + 4 * lw * 9, sx + bw * 0.3, sy + 4 * lw * 9), fill=0, width=lw)
            dl.line((sx, sy, sx, sy + 4 * lw * 9), fill=0, width=lw)  # closed at the ends
            dl.line((sx + bw * 0.3, sy, sx + bw * 0.3, sy + 4 * lw * 9), fill=0, width=lw)
            # specks: dots far smaller than a colour sample
            for _ in range(6):
                px, py = x0 + bw * rng.uniform(0.05, 0.95), y0 + bh * rng.uniform(0.85, 0.95)
                dl.ellipse((px - lw, py - lw, px + lw, py + lw), fill=0)
    # one region split by a line with a gap (left: colour A, right: colour B)
    g = (gap if gap is not None else max(2, lw // ss)) * ss
    gx0, gy0, gx1, gy1 = pw + m * 3, 2 * ph + ph // 2, 2 * pw - m * 3, 3 * ph - m * 3
    mid = (gx0 + gx1) // 2
    dc.rectangle((gx0, gy0, mid, gy1), fill=PALETTE[6])
    dc.rectangle((mid, gy0, gx1, gy1), fill=PALETTE[7])
    ds.rectangle((gx0, gy0, gx1, gy1), fill=255)
    dl.rectangle((gx0, gy0, gx1, gy1), fill=255, outline=0, width=lw)
    dl.line((mid, gy0, mid, (gy0 + gy1) // 2 - g // 2), fill=0, width=lw)
    dl.line((mid, (gy0 + gy1) // 2 + g // 2, mid, gy1), fill=0, width=lw)
    # screentone dots on the shaded page
    yy, xx = np.ogrid[0:H, 0:W]
    period = max(6, lw * 2)
    dots = (((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2) < (period / 4) ** 2
    tone = np.asarray(shade).copy()
    toned = tone < 250
    tone[toned & dots] = np.minimum(tone[toned & dots], 120)
    shade_img = Image.fromarray(np.minimum(tone, np.asarray(lines)))
    size = (width, height)
    return Page(lines=lines.resize(size, Image.BOX), colour=colour.resize(size, Image.NEAREST),
                tones=shade_img.resize(size, Image.BOX), gap=g // ss, line_width=lw // ss)
