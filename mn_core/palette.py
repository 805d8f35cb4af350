"""Palette hints: the reference's main colours, each with reference points, so that "this line-art region gets
that colour" becomes an ordinary point pair.

The colours come from k-means (k = 12, as comic-colorization uses) in CIELAB on the reference reduced to 128 px
(OpenCV's k-means, k-means++ seeding with a fixed seed: the same image gives the same palette). Every pixel of the
reference at 512 px is then given its nearest colour; for each colour, its points are the most interior pixels of
its areas (maxima of the distance to other colours), the deepest first and spread apart, so a hint's reference
point never sits on an edge where two colours mix. A colour can be used several times: each use takes its next
point (the points JSON allows one pair per reference pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .opencv import cv2 as cv2_module
from .images import to_pil
from .points import MAX_PAIRS, Points, PointsError

DEFAULT_K = 12
SAMPLE = 128      # px: the longer side k-means runs on
LABEL = 512       # px: the longer side the colour areas are found at
POINTS_PER_COLOUR = 8


@dataclass(frozen=True)
class Swatch:
    colour: tuple[int, int, int]          # RGB, the median of the reference pixels of this colour
    share: float                          # fraction of the reference's pixels
    points: tuple[tuple[int, int], ...]   # reference pixels (x, y) inside this colour, best first

    def to_json(self) -> dict:
        return {"colour": list(self.colour), "hex": "#%02x%02x%02x" % self.colour, "share": round(self.share, 4),
                "points": [list(p) for p in self.points]}


def palette(reference, k: int = DEFAULT_K, *, points_per_colour: int = POINTS_PER_COLOUR) -> list[Swatch]:
    """The reference's ``k`` main colours, the largest share first (fewer when the image has fewer colours)."""
    cv2 = cv2_module()
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 64:
        raise ValueError(f"k must be a whole number from 1 to 64, got {k!r}")
    pil = to_pil(reference, what="reference").convert("RGB")
    w, h = pil.size

    def reduced(longest: int) -> Image.Image:
        s = min(1.0, longest / max(w, h))
        return pil.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX) if s < 1 else pil

    sample = cv2.cvtColor(np.asarray(reduced(SAMPLE)), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    k = min(k, len(np.unique(sample, axis=0)))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.2)
    _, _, centres = cv2.kmeans(sample, k, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    big = reduced(LABEL)
    scale = big.size[0] / w
    rgb = np.asarray(big)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    labels = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1).reshape(rgb.shape[:2])
    swatches = []
    for j in range(k):
        mask = labels == j
        count = int(mask.sum())
        if not count:
            continue
        colour = tuple(int(v) for v in np.median(rgb[mask], axis=0))
        swatches.append(Swatch(colour, count / mask.size, _interior_points(mask, points_per_colour, scale, (w, h))))
    return sorted(swatches, key=lambda s: -s.share)


def _interior_points(mask: np.ndarray, n: int, scale: float, size: tuple[int, int]):
    """Up to ``n`` pixels (original image coordinates) deep inside ``mask``, deepest first, spread apart."""
    cv2 = cv2_module()
    depth = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    out = []
    for _ in range(n):
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        d = float(depth[y, x])
        if d <= 0:
            break
        p = (min(size[0] - 1, int((x + 0.5) / scale)), min(size[1] - 1, int((y + 0.5) / scale)))
        if p not in out:
            out.append(p)
        r = max(2, int(d))  # the next point lies outside this one's disc
        cv2.circle(depth, (int(x), int(y)), r, 0, -1)
    return tuple(out)


def hint_points(swatches: list[Swatch], hints, *, lineart_size: tuple[int, int], reference_size: tuple[int, int],
                points: Points | None = None) -> Points:
    """``points`` (or none) plus one pair per hint ``(swatch index, (x, y) on the line art)``: the swatch's next
    unused reference point -> that line-art pixel."""
    base = points or Points((), reference_size, lineart_size)
    pairs = list(base.pairs)
    used = {(int(r[0]), int(r[1])) for r, _ in pairs}
    for k, (index, xy) in enumerate(hints, 1):
        if not isinstance(index, int) or not 0 <= index < len(swatches):
            raise PointsError(f"hint {k}: swatch {index!r} is not in the palette (0 to {len(swatches) - 1})")
        free = [p for p in swatches[index].points if p not in used]
        if not free:
            raise PointsError(f"hint {k}: every reference point of colour {swatches[index].to_json()['hex']} is "
                              f"used already; pick another colour or fewer hints")
        used.add(free[0])
        pairs.append((tuple(float(v) for v in free[0]), tuple(float(v) for v in xy)))
    if len(pairs) > MAX_PAIRS:
        raise PointsError(f"{len(pairs)} pairs with the hints; MangaNinja supports at most {MAX_PAIRS}")
    conf = tuple(base.confidences) + (1.0,) * (len(pairs) - len(base.pairs)) if base.confidences else ()
    return Points(tuple(pairs), base.reference_size or reference_size, base.lineart_size or lineart_size,
                  base.reference_indices + (0,) * (len(pairs) - len(base.pairs)) if base.reference_indices else (),
                  conf)
