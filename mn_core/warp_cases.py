"""Line drawings under known smooth warps, with ground-truth correspondences: the point-suggestion benchmark.

A case is a coloured reference (flat colours under black lines, as a coloured manga frame is) and a line art: the
same drawing's lines, warped by a known smooth map (an affine part: rotation, scale, shear, shift; plus an elastic
part: a smooth random displacement field). ``Case.truth(xy)`` gives, for a point of the line art, the reference
pixel it came from, so any suggested pair can be scored.

Drawings: :func:`draw_character` (the project's own: a character bust with hair strands, eyes, clothes and
accessories, different for every seed), and :func:`photo_drawing` (a photograph that ships with scikit-image, which
are public domain or CC0: the photo is the reference, its line drawing comes from its edges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 512
COLOURS = [(235, 120, 40), (250, 225, 200), (50, 90, 210), (60, 160, 80), (240, 210, 40), (150, 60, 160),
           (200, 40, 60), (90, 200, 210), (120, 80, 50), (250, 170, 190), (30, 40, 90), (180, 180, 190)]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # skimage.data, bundled with scikit-image


@dataclass
class Case:
    name: str
    reference: Image.Image   # RGB, unwarped
    lineart: Image.Image     # L, black lines on white, warped
    map_x: np.ndarray        # float32 (H, W): reference x of every line-art pixel
    map_y: np.ndarray

    def truth(self, xy) -> np.ndarray:
        """Reference (x, y) of line-art points ``xy`` ((N, 2) pixel positions; bilinear in the maps)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        h, w = self.map_x.shape
        x = np.clip(xy[:, 0], 0, w - 1.001)
        y = np.clip(xy[:, 1], 0, h - 1.001)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = x - x0, y - y0

        def at(m):
            return ((m[y0, x0] * (1 - fx) + m[y0, x0 + 1] * fx) * (1 - fy)
                    + (m[y0 + 1, x0] * (1 - fx) + m[y0 + 1, x0 + 1] * fx) * fy)

        return np.stack([at(self.map_x), at(self.map_y)], 1)


def _blob(rng, cx, cy, rx, ry, n=9, jitter=0.12):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 1)
    r = 1 + rng.uniform(-jitter, jitter, n)
    return [(cx + rx * r[k] * math.cos(t[k]), cy + ry * r[k] * math.sin(t[k])) for k in range(n)]


def draw_character(seed: int = 0, size: int = SIZE) -> tuple[Image.Image, Image.Image]:
    """A character bust: (reference RGB with flat colours and black lines, lines L black on white)."""
    rng = np.random.default_rng(seed)
    ss = 2
    S = size * ss
    lw = 3 * ss
    colour = Image.new("RGB", (S, S), tuple(int(v) for v in rng.integers(200, 250, 3)))
    lines = Image.new("L", (S, S), 255)
    dc, dl = ImageDraw.Draw(colour), ImageDraw.Draw(lines)
    pick = rng.permutation(len(COLOURS))
    skin, hair, cloth, eye, extra = (COLOURS[1], COLOURS[pick[0]], COLOURS[pick[1]], COLOURS[pick[2]],
                                     COLOURS[pick[3]])

    def shape(points, fill, *, closed=True):
        if closed:
            dc.polygon(points, fill=fill)
            dl.polygon(points, fill=255, outline=0)
            dl.line(points + points[:1], fill=0, width=lw, joint="curve")
        else:
            dl.line(points, fill=0, width=lw, joint="curve")

    def ellipse(box, fill):
        dc.ellipse(box, fill=fill)
        dl.ellipse(box, fill=255, outline=0, width=lw)

    cx = S * rng.uniform(0.42, 0.58)
    hy = S * rng.uniform(0.33, 0.40)
    hr = S * rng.uniform(0.17, 0.21)
    # body: shoulders and a collar
    body = [(cx - hr * 2.2, S), (cx - hr * 1.9, hy + hr * 1.7), (cx - hr * 0.5, hy + hr * 1.35),
            (cx + hr * 0.5, hy + hr * 1.35), (cx + hr * 1.9, hy + hr * 1.7), (cx + hr * 2.2, S)]
    shape(body, cloth)
    shape([(cx - hr * 0.5, hy + hr * 1.35), (cx, hy + hr * 2.1), (cx + hr * 0.5, hy + hr * 1.35)], extra)
    for k in range(int(rng.integers(2, 5))):  # buttons
        by = hy + hr * (2.4 + 0.45 * k)
        ellipse((cx - hr * 0.09, by - hr * 0.09, cx + hr * 0.09, by + hr * 0.09), COLOURS[pick[4]])
    # neck and face
    shape([(cx - hr * 0.3, hy + hr * 0.8), (cx - hr * 0.3, hy + hr * 1.4), (cx + hr * 0.3, hy + hr * 1.4),
           (cx + hr * 0.3, hy + hr * 0.8)], skin)
    shape(_blob(rng, cx, hy, hr * 0.92, hr * 1.05, 14, 0.04), skin)
    # hair: a cap and strands falling over the forehead and the sides
    cap = [(cx + hr * 1.12 * math.cos(t), hy - hr * 0.25 + hr * 1.05 * math.sin(t))
           for t in np.linspace(math.pi * 0.98, math.pi * 2.02, 16)]
    strands = int(rng.integers(4, 8))
    fringe = []
    for k in range(strands + 1):
        x = cx + hr * 1.1 * (2 * k / strands - 1)
        fringe.append((x, hy - hr * 0.2))
        if k < strands:
            fringe.append((x + hr * 1.1 / strands, hy + hr * rng.uniform(0.05, 0.45)))
    shape(cap + fringe[::-1], hair)
    for side in (-1, 1):  # side locks
        x0 = cx + side * hr * 0.95
        lock = [(x0, hy - hr * 0.3), (x0 + side * hr * 0.35, hy + hr * rng.uniform(0.6, 1.4)),
                (x0 - side * hr * 0.05, hy + hr * rng.uniform(0.5, 0.9))]
        shape(lock, hair)
    # eyes, brows, nose, mouth
    ey = hy + hr * 0.3
    for side in (-1, 1):
        ex = cx + side * hr * 0.4
        ellipse((ex - hr * 0.2, ey - hr * 0.16, ex + hr * 0.2, ey + hr * 0.16), (255, 255, 255))
        ellipse((ex - hr * 0.1, ey - hr * 0.13, ex + hr * 0.1, ey + hr * 0.13), eye)
        dl.line([(ex - hr * 0.25, ey - hr * 0.3), (ex + hr * 0.2, ey - hr * 0.34)], fill=0, width=lw)
    dl.line([(cx, ey + hr * 0.2), (cx - hr * 0.06, ey + hr * 0.35)], fill=0, width=lw)
    dl.arc((cx - hr * 0.2, ey + hr * 0.35, cx + hr * 0.2, ey + hr * 0.6), 20, 160, fill=0, width=lw)
    # an accessory: a ribbon or a star in the hair
    ax, ay = cx + hr * rng.choice([-0.8, 0.8]), hy - hr * 0.85
    if rng.random() < 0.5:
        star = [(ax + hr * (0.3 if k % 2 == 0 else 0.13) * math.cos(k * math.pi / 5 - math.pi / 2),
                 ay + hr * (0.3 if k % 2 == 0 else 0.13) * math.sin(k * math.pi / 5 - math.pi / 2))
                for k in range(10)]
        shape(star, COLOURS[pick[5]])
    else:
        shape([(ax, ay), (ax - hr * 0.35, ay - hr * 0.2), (ax - hr * 0.35, ay + hr * 0.2)], COLOURS[pick[5]])
        shape([(ax, ay), (ax + hr * 0.35, ay - hr * 0.2), (ax + hr * 0.35, ay + hr * 0.2)], COLOURS[pick[5]])
    # background: a few shapes behind nothing (drawn last, kept out of the figure)
    for _ in range(3):
        bx = S * rng.choice([rng.uniform(0.04, 0.2), rng.uniform(0.8, 0.96)])
        by = S * rng.uniform(0.05, 0.6)
        r = S * rng.uniform(0.03, 0.06)
        ellipse((bx - r, by - r, bx + r, by + r), COLOURS[pick[6 + _]])
    lines_small = lines.resize((size, size), Image.BOX)
    ref = np.asarray(colour.resize((size, size), Image.BOX)).astype(np.float32)
    ink = np.asarray(lines_small, np.float32)[..., None] / 255.0
    ref = Image.fromarray((ref * ink).round().astype(np.uint8))
    return ref, lines_small


def photo_drawing(name: str, size: int = SIZE) -> tuple[Image.Image, Image.Image]:
    """A scikit-image photo as (reference RGB, line drawing L): its edges (difference of Gaussians), thickened."""
    import cv2
    from skimage import data

    rgb = getattr(data, name)()
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, -1)
    h, w = rgb.shape[:2]
    s = min(h, w)
    rgb = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    ref = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.LANCZOS)
    grey = np.asarray(ref.convert("L"), np.float32)
    dog = cv2.GaussianBlur(grey, (0, 0), 1.2) - cv2.GaussianBlur(grey, (0, 0), 2.4)
    line = (dog < -2.5).astype(np.uint8)
    n, cc, stats, _ = cv2.connectedComponentsWithStats(line, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= 30
    keep[0] = False
    line = keep[cc].astype(np.uint8)
    return ref, Image.fromarray((255 - 255 * line).astype(np.uint8))


def random_warp(seed: int, size: int = SIZE, *, rotate: float = 8.0, scale: float = 0.08, shear: float = 0.05,
                shift: float = 0.04, elastic: float = 10.0, smooth: float = 0.12) -> tuple[np.ndarray, np.ndarray]:
    """A smooth backward map (map_x, map_y): the reference position of every line-art pixel. Affine part within
    ``rotate`` degrees, ``scale`` and ``shear`` (fractions), ``shift`` (of the size); elastic part: a random
    displacement of up to about ``elastic`` px, smooth over ``smooth`` of the size."""
    import cv2

    rng = np.random.default_rng(seed)
    a = math.radians(rng.uniform(-rotate, rotate))
    s = 1 + rng.uniform(-scale, scale)
    sh = rng.uniform(-shear, shear)
    m = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ np.array([[1, sh], [0, 1]])
    c = (size - 1) / 2
    t = rng.uniform(-shift, shift, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    px, py = xx - c, yy - c
    mx = m[0, 0] * px + m[0, 1] * py + c + t[0]
    my = m[1, 0] * px + m[1, 1] * py + c + t[1]
    sigma = smooth * size
    for out in (mx, my):
        field = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma)
        field *= elastic / max(1e-6, float(np.abs(field).max()))
        out += field
    return mx.astype(np.float32), my.astype(np.float32)


def make_case(kind: str, seed: int, size: int = SIZE, **warp) -> Case:
    """``kind``: "character" (seed picks the drawing) or a name from :data:`PHOTOS`."""
    import cv2

    ref, lines = draw_character(seed, size) if kind == "character" else photo_drawing(kind, size)
    mx, my = random_warp(seed + 1000, size, **warp)
    warped = cv2.remap(np.asarray(lines), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255)
    return Case(f"{kind}-{seed}", ref, Image.fromarray(warped), mx, my)


def benchmark_cases(characters: int = 8, photos=PHOTOS, size: int = SIZE) -> list[Case]:
    cases = [make_case("character", k, size) for k in range(characters)]
    return cases + [make_case(name, k, size) for k, name in enumerate(photos)]
