"""Finishing a page at the line art's own resolution: the 512-px colour brought up without halos, the original lines
on top, optional flat colours, CIELAB blending with the page's shading or a colour prior (after inkn'hue).

MangaNinja colours at the processing size (512 px). A page is 2,000-6,000 px. Resizing the colour up blurs the
lines and lets colour bleed across them. Here the colour is only a source of *samples*; the full-resolution line art
decides where each colour goes:

1. **Lines.** The page in grey, dark lines on light. Pixels darker than ``LINE_LEVEL`` are line pixels.
2. **Regions.** The line mask is dilated by ``ceil(close_gaps / 2)`` px, so gaps in the lines up to ``close_gaps``
   px wide are closed (the trapped-ball idea: a ball that does not fit through a gap cannot leak through it). The
   rest falls into 4-connected regions. Regions smaller than ``min_region`` px, the dilated margin and the line
   pixels take the label of the nearest remaining region (Euclidean nearest pixel, OpenCV's distance transform).
3. **Clean samples.** A colour sample (one pixel of the colour image, ``s`` page px wide) is *pure* when its centre
   lies more than ``PURITY * s`` px from any line pixel. The model draws its own, blurred lines, so samples nearer
   than that mix line and colour.
4. **Smooth colour** (the default). Where a page pixel is far enough from every line that all four bilinear
   neighbours are pure, it gets the bilinear upsampled colour. Every other pixel (the band along the lines, the
   lines themselves) copies the colour of the nearest such pixel **of its own region**, so no colour crosses a line.
   A region with no such pixel (thinner than the band) gets its region colour (5).
5. **Region colour**: the per-channel median of the samples whose centre lies in the region, the pure ones where
   there are any, otherwise the innermost half. A region no sample centre falls in gets the mean of the upsampled
   colour over its pixels.
6. **Flat colours** (``flat=True``): every region is one colour, its region colour; line pixels and tiny regions
   take their neighbours' colour, as in 2.
7. **CIELAB blending** (as inkn'hue). With a ``prior`` (a rough colour image), the colour's a*b* become
   ``(1 - prior_strength) * ab(colour) + prior_strength * ab(prior)`` (default strength 0.8, inkn'hue's value), L* is
   the colour's. With ``keep_shading`` (a grey page: screentones, shading), L* becomes the page's L*, a*b* stay the
   colour's; out-of-gamut results are clipped to sRGB. Conversions: OpenCV's float sRGB <-> CIELAB (D65, sRGB
   companding; its tabulated cube root is within 0.35 of scikit-image's exact maths, about one step of 8-bit sRGB),
   checked against scikit-image in the tests.
8. **Lines on top.** The flattened image is ``g * C' / 255`` (multiply) with ``C' = C + (255 - C) * w`` and ``w`` the
   line weight: 1 at line pixels (grey ``g < LINE_LEVEL``), falling linearly to 0 at ``SOFT_LEVEL``. So line pixels
   keep the page's grey exactly, their anti-aliased edges blend into the colour, the rest is a plain multiply.

Everything runs at the page's size in a few whole-image OpenCV passes and row strips (memory: a few bytes per page
pixel per buffer); nothing of the 512-px work is repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .choices import FINISH_GAP, POLARITIES, PRIOR_STRENGTH
from .images import ImageError, to_pil
from .opencv import cv2 as cv2_module

LINE_LEVEL = 128      # page grey below this: a line pixel (kept exactly)
SOFT_LEVEL = 192      # grey between LINE_LEVEL and this: the line's soft edge (colour fades out under it)
PURITY = 1.5          # a colour sample is clean this many samples (of its own width) away from a line
DEFAULT_GAP = FINISH_GAP  # px of the page: gaps in lines up to this wide are closed for the regions
DEFAULT_MIN_REGION = 64  # px of the page: smaller regions take their neighbours' colour
DEFAULT_PRIOR_STRENGTH = PRIOR_STRENGTH  # inkn'hue's interpolation weight
STRIP = 512           # rows per strip for the per-pixel arithmetic


@dataclass
class Finished:
    """A finished page: the flattened image and its layers, all at the line art's size."""

    image: Image.Image            # RGB, the flattened result
    colour: Image.Image           # RGB, the colour layer (continuous under the lines; flats when flat=True)
    lines: Image.Image            # L, the page's lines, dark on white
    page: Image.Image             # the original page (keep_shading page if given, else the line art)
    detail: Image.Image | None    # RGB, the smooth colour (flat=True only: the model's shading, as an alternative)
    shading: Image.Image | None   # L, the page's tones (keep_shading only)
    regions: int                  # number of regions found

    def line_alpha(self) -> Image.Image:
        """L: the lines as opacity (255 - grey): black lines with this alpha over the colour = the multiply."""
        return Image.fromarray(255 - np.asarray(self.lines))

    def layers(self) -> list[tuple[str, Image.Image, str, bool]]:
        """(name, image, blend mode, visible), bottom to top: what the PSD holds."""
        out = [("Original page", self.page.convert("RGB"), "normal", False),
               ("Flat colours" if self.detail is not None else "Colour", self.colour, "normal", True)]
        if self.detail is not None:
            out.append(("Colour with shading (model)", self.detail, "normal", False))
        if self.shading is not None:
            out.append(("Shading (page tones)", self.shading.convert("RGB"), "luminosity", True))
        out.append(("Lines", self.lines.convert("RGB"), "multiply", True))
        return out


def page_grey(lineart, polarity: str = "auto", what: str = "line art") -> np.ndarray:
    """The page as uint8 (H, W) grey, dark lines on light (white-on-black line art is inverted)."""
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be {', '.join(POLARITIES)}, got {polarity!r}")
    grey = np.asarray(to_pil(lineart, what=what).convert("L"))
    invert = polarity == "white_on_black" or (polarity == "auto" and float(np.median(grey)) <= 127.5)
    return 255 - grey if invert else grey


def find_regions(line: np.ndarray, close_gaps: int = DEFAULT_GAP,
                 min_region: int = DEFAULT_MIN_REGION) -> tuple[np.ndarray, int]:
    """Region labels (int32 (H, W), 1..n, every pixel labelled) of a bool line mask; see the module doc, step 2."""
    cv2 = cv2_module()
    if close_gaps < 0 or min_region < 0:
        raise ValueError(f"close_gaps and min_region must be >= 0, got {close_gaps} and {min_region}")
    barrier = line.astype(np.uint8)
    r = math.ceil(close_gaps / 2)
    if r:
        barrier = cv2.dilate(barrier, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    n, cc, stats, _ = cv2.connectedComponentsWithStats(1 - barrier, connectivity=4, ltype=cv2.CV_32S)
    del barrier
    keep = stats[:, cv2.CC_STAT_AREA] >= max(1, min_region)
    keep[0] = False  # the barrier itself
    if not keep.any():  # nothing but lines (or all tiny): the page is one region
        return np.ones(line.shape, np.int32), 1
    lut = np.zeros(n, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    seeds = lut[cc]
    del cc
    return _fill_from_nearest(seeds, seeds != 0), int(keep.sum())


def _nearest_index(known: np.ndarray) -> np.ndarray:
    """For every pixel, the flat index of the nearest ``known`` pixel (known pixels: themselves)."""
    cv2 = cv2_module()
    _, idx = cv2.distanceTransformWithLabels((~known).astype(np.uint8), cv2.DIST_L2, 3,
                                             labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(known).astype(np.int32 if known.size < 2**31 else np.int64)
    idx = idx.ravel()
    idx -= 1  # labels of the zero (known) pixels are 1..N in raster order
    return positions[idx]


def _fill_from_nearest(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` with every unknown pixel replaced by the value of the nearest known pixel."""
    if known.all():
        return values
    return values.ravel()[_nearest_index(known)].reshape(values.shape)


def _samples(colour: np.ndarray, shape: tuple[int, int]):
    """Page coordinates (rows, cols, int) of the colour samples' centres, and the scale s (page px per sample)."""
    h, w = colour.shape[:2]
    H, W = shape
    rows = np.clip(np.floor((np.arange(h) + 0.5) * H / h), 0, H - 1).astype(np.intp)
    cols = np.clip(np.floor((np.arange(w) + 0.5) * W / w), 0, W - 1).astype(np.intp)
    return rows, cols, max(H / h, W / w)


def _median_by_label(labels: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label lower median of ``values`` (k, 3); returns (medians (n + 1, 3), has (n + 1,) bool)."""
    out = np.zeros((n + 1, 3), np.float64)
    has = np.zeros(n + 1, bool)
    if labels.size == 0:
        return out, has
    ids, start, count = np.unique(np.sort(labels), return_index=True, return_counts=True)
    for c in range(3):
        order = np.lexsort((values[:, c], labels))
        out[ids, c] = values[order, c][start + (count - 1) // 2]
    has[ids] = True
    return out, has


def region_colours(regions: np.ndarray, n: int, colour: np.ndarray, dist: np.ndarray, up: np.ndarray,
                   s: float) -> np.ndarray:
    """(n + 1, 3) uint8: the robust colour of every region (module doc, step 5)."""
    rows, cols, _ = _samples(colour, regions.shape)
    lab = regions[rows[:, None], cols[None, :]].ravel()
    d = dist[rows[:, None], cols[None, :]].ravel()
    vals = colour.reshape(-1, 3)
    inside = d > 0  # centre not on a line pixel
    lab, d, vals = lab[inside], d[inside], vals[inside]
    # the innermost samples of each region: the pure ones where it has any, else its innermost half
    deepest = np.zeros(n + 1, np.float32)
    np.maximum.at(deepest, lab, d)
    take = d >= np.minimum(PURITY * s, 0.5 * deepest[lab])
    palette, has = _median_by_label(lab[take], vals[take].astype(np.float64), n)
    missing = ~has
    missing[0] = False
    if missing.any():
        sel = missing[regions]
        which = regions[sel]
        count = np.bincount(which, minlength=n + 1)
        for c in range(3):
            total = np.bincount(which, weights=up[..., c][sel], minlength=n + 1)
            palette[missing, c] = total[missing] / np.maximum(count[missing], 1)
    return np.clip(np.rint(palette), 0, 255).astype(np.uint8)


def interior_weighted(colour: np.ndarray, sample_dist: np.ndarray) -> np.ndarray:
    """The colour samples averaged over 3x3 with weights (distance of the sample's centre to a line)^2: samples the
    model drew lines into count little. Used where no clean pixel of the region is near."""
    cv2 = cv2_module()
    wt = sample_dist.astype(np.float32) ** 2
    num = cv2.blur(colour.astype(np.float32) * wt[..., None], (3, 3), borderType=cv2.BORDER_REPLICATE)
    den = cv2.blur(wt, (3, 3), borderType=cv2.BORDER_REPLICATE)[..., None]
    out = np.where(den > 0, num / np.maximum(den, 1e-12), colour)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def smooth_colour(colour: np.ndarray, up: np.ndarray, regions: np.ndarray, dist: np.ndarray, palette: np.ndarray,
                  s: float) -> np.ndarray:
    """(H, W, 3) uint8: the colour at the page's size (module doc, step 4). ``up``: the colour resized bilinearly
    to the page; ``palette``: the region colours."""
    cv2 = cv2_module()
    H, W = regions.shape
    band = (PURITY + 1.5) * s
    valid = dist > band
    if valid.all():
        return up
    if not valid.any():
        return palette[regions]
    flat_regions = regions.ravel()
    has_clean = np.zeros(len(palette), bool)
    has_clean[flat_regions[valid.ravel()]] = True
    near_dist, idx = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 3,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
    positions = np.flatnonzero(valid).astype(np.int32 if valid.size < 2**31 else np.int64)
    todo = np.flatnonzero(~valid.ravel())  # the band along the lines, and the lines
    del valid
    nearest = positions[idx.ravel()[todo] - 1]  # labels of the known pixels are 1..N in raster order
    del positions, idx
    region = flat_regions[todo]
    same = (flat_regions[nearest] == region) & (near_dist.ravel()[todo] <= 2 * band)
    out = up.copy()
    flat_out, flat_up = out.reshape(-1, 3), up.reshape(-1, 3)
    flat_out[todo[same]] = flat_up[nearest[same]]
    del nearest
    rest, region = todo[~same], region[~same]
    clean = has_clean[region]
    flat_out[rest[~clean]] = palette[region[~clean]]  # thin regions: their region colour
    if clean.any():  # regions with clean pixels, but none near: the local, interior-weighted colour
        rows, cols, _ = _samples(colour, (H, W))
        weighted = interior_weighted(colour, dist[rows[:, None], cols[None, :]])
        flat_out[rest[clean]] = cv2.resize(weighted, (W, H), interpolation=cv2.INTER_LINEAR).reshape(-1, 3)[
            rest[clean]]
    return out


def _lab(rgb: np.ndarray) -> np.ndarray:
    """uint8/float RGB (..., 3) -> float32 CIELAB (D65): L* in [0, 100]."""
    cv2 = cv2_module()
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
    return cv2.cvtColor(x, cv2.COLOR_RGB2Lab)


def _rgb(lab: np.ndarray) -> np.ndarray:
    """float32 CIELAB -> uint8 sRGB (clipped, rounded)."""
    cv2 = cv2_module()
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def grey_lightness(grey: np.ndarray) -> np.ndarray:
    """uint8 grey -> float32 L* of that neutral grey (through a 256-entry table of the same conversion)."""
    table = _lab(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)[None])[0, :, 0]
    return table[grey]


def blend_lab(colour: np.ndarray, *, shading: np.ndarray | None = None, prior: np.ndarray | None = None,
              prior_strength: float = DEFAULT_PRIOR_STRENGTH) -> tuple[np.ndarray, np.ndarray]:
    """The CIELAB blending of the module doc, step 7, on uint8 arrays of one size (shading: (H, W) grey).

    Returns (the colour with the prior blended in, that with the page's L* as well), in one pass over the page."""
    if shading is None and prior is None:
        return colour, colour
    coloured = np.empty_like(colour) if prior is not None else colour
    shaded = np.empty_like(colour) if shading is not None else coloured
    for top in range(0, colour.shape[0], STRIP):
        rows = slice(top, top + STRIP)
        lab = _lab(colour[rows])
        if prior is not None:
            lab[..., 1:] = (1.0 - prior_strength) * lab[..., 1:] + prior_strength * _lab(prior[rows])[..., 1:]
            coloured[rows] = _rgb(lab)
        if shading is not None:
            lab[..., 0] = grey_lightness(shading[rows])
            shaded[rows] = _rgb(lab)
    return coloured, shaded


def line_weight(grey: np.ndarray) -> np.ndarray:
    """float32 weight of the line at each pixel: 1 below LINE_LEVEL, 0 from SOFT_LEVEL up, linear between."""
    return np.clip((SOFT_LEVEL - grey.astype(np.float32)) / (SOFT_LEVEL - LINE_LEVEL), 0.0, 1.0)


def composite_lines(colour: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """The lines on top (module doc, step 8): uint8 (H, W, 3)."""
    out = np.empty_like(colour)
    for top in range(0, colour.shape[0], STRIP):
        rows = slice(top, top + STRIP)
        g = grey[rows].astype(np.float32)[..., None]
        c = colour[rows].astype(np.float32)
        c += (255.0 - c) * line_weight(grey[rows])[..., None]
        out[rows] = np.clip(np.rint(c * g / 255.0), 0, 255).astype(np.uint8)
    return out


def _rgb_array(image, what: str) -> np.ndarray:
    return np.asarray(to_pil(image, what=what).convert("RGB"))


def _colour_samples(colour, size: int | None) -> np.ndarray:
    """The colour as uint8 samples, area-reduced to at most ``size`` px on its long side (its real resolution)."""
    pil = to_pil(colour, what="colour").convert("RGB")
    if size is not None:
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"colour_size must be a whole number >= 8, got {size!r}")
        if max(pil.size) > size:
            scale = size / max(pil.size)
            pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BOX)
    return np.asarray(pil)


def finish_page(colour, lineart, *, polarity: str = "auto", flat: bool = False, close_gaps: int = DEFAULT_GAP,
                min_region: int = DEFAULT_MIN_REGION, colour_size: int | None = None, keep_shading=None,
                prior=None, prior_strength: float = DEFAULT_PRIOR_STRENGTH) -> Finished:
    """Finish a page at the line art's resolution (see the module doc).

    ``colour``: the coloured result covering the same picture as ``lineart`` (any size; the processing-size output
    is best: its pixels are the samples). ``colour_size``: the resolution it was made at (the processing size) when
    it was resized up since (e.g. a ComfyUI IMAGE at the page's size); None: as given. ``lineart``: the page's
    line art at full resolution (dark on light or light on dark, see ``polarity``). ``keep_shading``: a grey page
    of the same size whose L* is kept. ``prior``: a colour image (any size; resized to the page) blended in a*b*.
    """
    cv2 = cv2_module()
    if not isinstance(prior_strength, (int, float)) or not 0.0 <= float(prior_strength) <= 1.0:
        raise ValueError(f"prior_strength must be between 0 and 1, got {prior_strength!r}")
    if not isinstance(close_gaps, int) or not isinstance(min_region, int):
        raise ValueError(f"close_gaps and min_region must be whole numbers, got {close_gaps!r}, {min_region!r}")
    grey = page_grey(lineart, polarity)
    H, W = grey.shape
    page_image = None
    shade = None
    if keep_shading is not None:
        page_image = to_pil(keep_shading, what="keep_shading page")
        if page_image.size != (W, H):
            raise ImageError(f"keep_shading page is {page_image.width}x{page_image.height} but the line art is "
                             f"{W}x{H}: give the grey page the line art belongs to, at the same size")
        shade = np.asarray(page_image.convert("L"))
    prior_arr = None
    if prior is not None:
        prior_arr = _rgb_array(prior, "prior")
        if prior_arr.shape[:2] != (H, W):
            prior_arr = cv2.resize(prior_arr, (W, H), interpolation=cv2.INTER_LINEAR)
    samples = _colour_samples(colour, colour_size)
    if samples.shape[0] > H or samples.shape[1] > W:  # more samples than page pixels: one per pixel is enough
        samples = cv2.resize(samples, (W, H), interpolation=cv2.INTER_AREA)

    line = grey < LINE_LEVEL
    regions, n = find_regions(line, close_gaps, min_region)
    dist = cv2.distanceTransform((~line).astype(np.uint8), cv2.DIST_L2, 3)
    _, _, s = _samples(samples, (H, W))
    up = cv2.resize(samples, (W, H), interpolation=cv2.INTER_LINEAR)
    palette = region_colours(regions, n, samples, dist, up, s)
    smooth = smooth_colour(samples, up, regions, dist, palette, s)
    del dist, up
    if flat:
        colour_layer = palette[regions]
        detail = smooth
    else:
        colour_layer, detail = smooth, None
    del regions
    # the colour layer carries the prior; the page's shading is a layer of its own (and in the flattened image)
    colour_layer, shaded = blend_lab(colour_layer, shading=shade, prior=prior_arr,
                                     prior_strength=float(prior_strength))
    if detail is not None and prior_arr is not None:
        detail = blend_lab(detail, prior=prior_arr, prior_strength=float(prior_strength))[0]
    flattened = composite_lines(shaded, grey)
    page = page_image if page_image is not None else to_pil(lineart, what="line art")
    return Finished(image=Image.fromarray(flattened), colour=Image.fromarray(colour_layer),
                    lines=Image.fromarray(grey), page=page,
                    detail=Image.fromarray(detail) if detail is not None else None,
                    shading=Image.fromarray(shade) if shade is not None else None, regions=n)
