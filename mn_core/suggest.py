"""Suggested point pairs between a coloured reference and a line art, with no model weights.

How (all classical, OpenCV):

1. **Line structure.** Both images become maps of their dark thin strokes: the morphological black-hat of the grey
   image (closing minus image, a 9 px disc at the working size of 512 px), lightly blurred. A coloured reference
   then shows its outlines and a line art its lines, whatever the fill colours; a colour image given as line art
   (``extract``) is read the same way.
2. **Features.** SIFT keypoints and descriptors on both maps, matched by nearest neighbour with Lowe's ratio test.
3. **Geometric verification, globally then locally.** A RANSAC affine model with a loose threshold (6 % of the
   size) removes matches that no overall placement explains; then every remaining match is predicted from an
   affine fitted to its nearest neighbouring matches (leave-one-out) and dropped if it misses by more than 1.5 %
   of the size (a smooth warp is locally affine: rotations, scale, shear and elastic bending pass, outliers do
   not). This is repeated until nothing more is dropped.
4. **Points inside regions.** A keypoint sits on or beside lines; a colour hint should not (the line's colour is
   black). Each verified match moves to the most interior line-art pixel within 12 px (distance to the lines,
   capped) and its reference point follows through the local affine, unless that lands on a reference line.
5. **Spread and order.** The confidence of a pair is ``(1 - ratio) * exp(-(residual / 4 px)^2)`` scaled to [0, 1]
   by the best; pairs are picked best first, each at least a minimum distance from those already picked on the
   line art (12 % of the size, halved while fewer than ``max_pairs`` are found, down to 3 %).

Coordinates come back as pixels of the ORIGINAL images, as the points JSON has them (:mod:`mn_core.points`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from .opencv import cv2 as cv2_module
from .images import to_pil
from .points import MAX_PAIRS, Points

WORK = 512            # px: the longer side both images are matched at
BLACKHAT = 9          # px at WORK: the disc of the line-structure filter
RATIO = 0.85          # Lowe's ratio test
GLOBAL_TOL = 0.06     # of WORK: the loose affine RANSAC threshold
LOCAL_TOL = 0.015     # of WORK: the leave-one-out local affine threshold
NEIGHBOURS = 10       # matches in each local affine
INTERIOR_RADIUS = 12  # px at WORK: how far a point may move into its region
INTERIOR_DEPTH = 6    # px at WORK: deeper than this counts the same
SPREAD = (0.12, 0.06, 0.03)  # of WORK: minimum distances between picked pairs, tried in turn
MAX_FEATURES = 4000


class SuggestError(ValueError):
    """The images cannot be matched; the message names the input."""


def _working(image, what: str, polarity: str = "auto") -> tuple[np.ndarray, float]:
    """Grey uint8 at the working size (longer side WORK), dark lines on light; and the scale to it."""
    pil = to_pil(image, what=what)
    grey = np.asarray(pil.convert("L"))
    if polarity == "white_on_black" or (polarity == "auto" and float(np.median(grey)) <= 127.5):
        grey = 255 - grey  # white lines on black: the line art convention of the ControlNet
    h, w = grey.shape
    if min(h, w) < 16:
        raise SuggestError(f"{what}: {w}x{h} is too small to find points in (16 px at least)")
    scale = WORK / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = np.asarray(Image.fromarray(grey).resize(size, Image.BILINEAR if scale > 1 else Image.BOX))
    return grey, scale


def line_structure(grey: np.ndarray) -> np.ndarray:
    """uint8 map of the dark thin strokes of a grey image (see the module doc, step 1)."""
    cv2 = cv2_module()
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (BLACKHAT, BLACKHAT))
    hat = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, disc).astype(np.float32)
    hat = cv2.GaussianBlur(hat, (0, 0), 1.0)
    top = float(np.percentile(hat, 99.5))
    return np.clip(hat * (255.0 / max(top, 1.0)), 0, 255).astype(np.uint8)


def _matches(a: np.ndarray, b: np.ndarray):
    """SIFT matches from structure map ``a`` (reference) to ``b`` (line art): points (N, 2) each, ratios (N,)."""
    cv2 = cv2_module()
    sift = cv2.SIFT_create(nfeatures=MAX_FEATURES, contrastThreshold=0.02)
    ka, da = sift.detectAndCompute(a, None)
    kb, db = sift.detectAndCompute(b, None)
    empty = np.zeros((0, 2), np.float64)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return empty, empty, np.zeros(0)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [(m.queryIdx, m.trainIdx, m.distance / max(n.distance, 1e-6))
            for m, n in (p for p in pairs if len(p) == 2) if m.distance < RATIO * n.distance]
    if not good:
        return empty, empty, np.zeros(0)
    ref = np.array([ka[i].pt for i, _, _ in good], np.float64)
    line = np.array([kb[j].pt for _, j, _ in good], np.float64)
    return ref, line, np.array([r for _, _, r in good])


def _local_affines(line: np.ndarray, ref: np.ndarray, keep: np.ndarray):
    """For every match: the affine (3, 2) fitted to its nearest kept neighbours (itself left out), and its
    residual against that fit."""
    idx = np.flatnonzero(keep)
    k = min(NEIGHBOURS, len(idx) - 1)
    fits = np.zeros((len(line), 3, 2))
    residual = np.full(len(line), np.inf)
    if k < 3:
        return fits, residual
    d = np.linalg.norm(line[:, None] - line[idx][None], axis=2)
    for t in range(len(line)):
        dt = np.where(idx == t, np.inf, d[t])
        nb = idx[np.argsort(dt, kind="stable")[:k]]
        a = np.c_[line[nb], np.ones(len(nb))]
        fits[t] = np.linalg.lstsq(a, ref[nb], rcond=None)[0]
        residual[t] = float(np.linalg.norm(np.r_[line[t], 1.0] @ fits[t] - ref[t]))
    return fits, residual


def _verify(ref: np.ndarray, line: np.ndarray):
    """Kept mask, local affines and residuals (module doc, step 3)."""
    cv2 = cv2_module()
    n = len(ref)
    if n < 6:
        return np.zeros(n, bool), np.zeros((n, 3, 2)), np.full(n, np.inf)
    cv2.setRNGSeed(0)  # OpenCV's RANSAC seeds its own generator today; this keeps it repeatable if that changes
    model, inliers = cv2.estimateAffine2D(line.astype(np.float32), ref.astype(np.float32), method=cv2.RANSAC,
                                          ransacReprojThreshold=GLOBAL_TOL * WORK, maxIters=4000, confidence=0.999,
                                          refineIters=0)
    if model is None:
        return np.zeros(n, bool), np.zeros((n, 3, 2)), np.full(n, np.inf)
    keep = inliers.ravel().astype(bool)
    for _ in range(6):
        if keep.sum() < 6:
            return np.zeros(n, bool), np.zeros((n, 3, 2)), np.full(n, np.inf)
        fits, residual = _local_affines(line, ref, keep)
        bad = keep & (residual > LOCAL_TOL * WORK)
        if not bad.any():
            break
        keep &= ~bad
    fits, residual = _local_affines(line, ref, keep)
    return keep & (residual <= LOCAL_TOL * WORK), fits, residual


def _interior(line_grey: np.ndarray, ref_struct: np.ndarray, line_xy: np.ndarray, fits: np.ndarray,
              ref_xy: np.ndarray):
    """Move each pair into its line-art region (module doc, step 4)."""
    cv2 = cv2_module()
    lines = (line_grey < 160).astype(np.uint8)
    depth = np.minimum(cv2.distanceTransform(1 - lines, cv2.DIST_L2, 3), INTERIOR_DEPTH)
    h, w = depth.shape
    rh, rw = ref_struct.shape
    r = INTERIOR_RADIUS
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (xx ** 2 + yy ** 2) <= r * r
    out_line, out_ref = line_xy.copy(), ref_xy.copy()
    for t, (x, y) in enumerate(line_xy):
        cx, cy = int(round(x)), int(round(y))
        x0, x1, y0, y1 = max(0, cx - r), min(w, cx + r + 1), max(0, cy - r), min(h, cy + r + 1)
        patch = depth[y0:y1, x0:x1] * disc[y0 - cy + r:y1 - cy + r, x0 - cx + r:x1 - cx + r]
        if patch.size == 0 or patch.max() <= 1:
            continue
        # the deepest pixels, the nearest of them
        iy, ix = np.nonzero(patch >= patch.max() - 0.5)
        k = int(np.argmin((ix + x0 - x) ** 2 + (iy + y0 - y) ** 2))
        nx, ny = float(ix[k] + x0), float(iy[k] + y0)
        moved = ref_xy[t] + np.array([nx - x, ny - y]) @ fits[t][:2]
        rx, ry = moved
        if 0 <= rx < rw and 0 <= ry < rh and ref_struct[int(ry), int(rx)] < 64:
            out_line[t] = (nx, ny)
            out_ref[t] = moved
    return out_line, out_ref


def _spread(line_xy: np.ndarray, confidence: np.ndarray, max_pairs: int) -> list[int]:
    """Best first, at least a minimum distance apart on the line art (module doc, step 5)."""
    order = list(np.argsort(-confidence, kind="stable"))
    picked: list[int] = []
    for frac in SPREAD:
        for t in order:
            if len(picked) >= max_pairs:
                break
            if t in picked:
                continue
            if all(np.hypot(*(line_xy[t] - line_xy[p])) >= frac * WORK for p in picked):
                picked.append(t)
        if len(picked) >= max_pairs:
            break
    return sorted(picked, key=lambda t: -confidence[t])


class _Working:
    """Both images at the working size and their line structure (module doc, steps 1-2)."""

    def __init__(self, ref_pil, line_pil, polarity: str, extract: bool):
        self.ref_grey, self.ref_scale = _working(ref_pil, "reference", polarity="black_on_white")
        self.line_grey, self.line_scale = _working(line_pil, "line art",
                                                   polarity="black_on_white" if extract else polarity)
        self.ref_struct, self.line_struct = line_structure(self.ref_grey), line_structure(self.line_grey)


def candidate_matches(reference, lineart, *, polarity: str = "auto", extract: bool = False):
    """The raw SIFT matches before any verification (steps 1-2), at the working size: ``(ref_xy, line_xy, ratio)``
    arrays, for measuring how much verification keeps (benchmarks/points_bench.py)."""
    work = _Working(to_pil(reference, what="reference"), to_pil(lineart, what="line art"), polarity, extract)
    return _matches(work.ref_struct, work.line_struct)


def suggest_points(reference, lineart, max_pairs: int = 12, *, polarity: str = "auto", extract: bool = False,
                   min_confidence: float = 0.0) -> Points:
    """Suggested pairs, best first, with a confidence each (in [0, 1], the best pair 1), in pixels of the original
    images. ``lineart``: a line drawing (``polarity`` as elsewhere), or with ``extract`` a colour image whose own
    outlines are used. Fewer pairs (or none) come back when fewer are reliable."""
    if not isinstance(max_pairs, int) or isinstance(max_pairs, bool) or not 1 <= max_pairs <= MAX_PAIRS:
        raise SuggestError(f"max_pairs must be a whole number from 1 to {MAX_PAIRS}, got {max_pairs!r}")
    if not (isinstance(min_confidence, (int, float)) and 0 <= min_confidence <= 1):
        raise SuggestError(f"min_confidence must be a number from 0 to 1, got {min_confidence!r}")
    ref_pil = to_pil(reference, what="reference")
    line_pil = to_pil(lineart, what="line art")
    work = _Working(ref_pil, line_pil, polarity, extract)
    ref_xy, line_xy, ratio = _matches(work.ref_struct, work.line_struct)
    ref_scale, line_scale, line_grey, ref_struct = work.ref_scale, work.line_scale, work.line_grey, work.ref_struct
    keep, fits, residual = _verify(ref_xy, line_xy)
    if not keep.any():
        return Points((), ref_pil.size, line_pil.size)
    idx = np.flatnonzero(keep)
    line_xy, ref_xy = _interior(line_grey, ref_struct, line_xy[idx], fits[idx], ref_xy[idx])
    score = (1 - ratio[idx]) * np.exp(-(residual[idx] / 4.0) ** 2)
    confidence = score / max(float(score.max()), 1e-9)
    chosen = [t for t in _spread(line_xy, confidence, max_pairs) if confidence[t] >= min_confidence]
    pairs, conf, used = [], [], (set(), set())
    for t in chosen:
        r = _original(ref_xy[t], ref_scale, ref_pil.size)
        q = _original(line_xy[t], line_scale, line_pil.size)
        if r in used[0] or q in used[1]:
            continue
        used[0].add(r)
        used[1].add(q)
        pairs.append((r, q))
        conf.append(round(float(confidence[t]), 3))
    return Points(tuple(pairs), ref_pil.size, line_pil.size, confidences=tuple(conf))


def _original(xy, scale: float, size: tuple[int, int]) -> tuple[int, int]:
    """A working-size position -> the original image's pixel (integers, inside the image)."""
    x = min(size[0] - 1, max(0, math.floor((xy[0] + 0.5) / scale)))
    y = min(size[1] - 1, max(0, math.floor((xy[1] + 0.5) / scale)))
    return int(x), int(y)
