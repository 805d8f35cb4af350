"""Matched points: the JSON format shared by the CLI and the ComfyUI nodes, validation, and point maps.

A pair says "this pixel of the reference has the colour that belongs at this pixel of the line art". Coordinates
are (x, y) pixel positions in each ORIGINAL image (x = column from the left, y = row from the top; fractions are
rounded down). The canonical JSON::

    {
      "reference_size": [W, H],          # optional: the size the reference points were clicked on
      "lineart_size": [W, H],            # optional: the same for the line art
      "pairs": [ {"reference": [x, y], "lineart": [x, y]}, ... ]
    }

Also accepted: a bare list of such pair objects, or a list of ``[[x, y], [x, y]]`` (reference first).
Two KJNodes-style coordinate lists (``[{"x": .., "y": ..}, ...]``, one per image) are paired by order with
:func:`pairs_from_coordinates`.

For the model, pair k (1-based) writes the value k at [row, col] of two maps of the processing size, one per
image, after mapping each point through the same fit as its image; everything else is 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

from .images import Fit

MAX_PAIRS = 24  # the number of LightGlue matches MangaNinja was trained with at most


class PointsError(ValueError):
    """Points that cannot be used; the message says which pair and why, and how to fix it."""


@dataclass(frozen=True)
class Points:
    pairs: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = ()
    reference_size: tuple[int, int] | None = None
    lineart_size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def to_json(self) -> str:
        out: dict = {}
        if self.reference_size:
            out["reference_size"] = list(self.reference_size)
        if self.lineart_size:
            out["lineart_size"] = list(self.lineart_size)
        out["pairs"] = [{"reference": list(r), "lineart": list(l)} for r, l in self.pairs]
        return json.dumps(out)


NO_POINTS = Points()


def _xy(value, where: str) -> tuple[float, float]:
    if isinstance(value, dict) and "x" in value and "y" in value:
        value = (value["x"], value["y"])
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise PointsError(f"{where}: expected [x, y] numbers, got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointsError(f"{where}: coordinates must be finite, got {value!r}")
    return x, y


def _size(value, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise PointsError(f"{what} must be [width, height] in pixels, got {value!r}")
    return int(value[0]), int(value[1])


def parse(text_or_obj) -> Points:
    """Parse the points JSON (a string, or the already-decoded object). Empty input means no points."""
    obj = text_or_obj
    if isinstance(obj, str):
        if not obj.strip():
            return NO_POINTS
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as e:
            raise PointsError(f"points are not valid JSON: {e}") from e
    if obj is None:
        return NO_POINTS
    reference_size = lineart_size = None
    if isinstance(obj, dict):
        unknown = set(obj) - {"pairs", "reference_size", "lineart_size", "version"}
        if unknown:
            raise PointsError(f"unknown keys in the points JSON: {sorted(unknown)}")
        reference_size = _size(obj.get("reference_size"), "reference_size")
        lineart_size = _size(obj.get("lineart_size"), "lineart_size")
        obj = obj.get("pairs", [])
    if not isinstance(obj, list):
        raise PointsError(f"points must be a list of pairs, got {type(obj).__name__}")
    pairs = []
    for i, item in enumerate(obj, 1):
        if isinstance(item, dict):
            if set(item) != {"reference", "lineart"}:
                raise PointsError(f"pair {i}: expected keys 'reference' and 'lineart', got {sorted(item)}")
            ref, line = item["reference"], item["lineart"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            ref, line = item
        else:
            raise PointsError(f"pair {i}: expected {{'reference': [x, y], 'lineart': [x, y]}}, got {item!r}")
        pairs.append((_xy(ref, f"pair {i} (reference)"), _xy(line, f"pair {i} (line art)")))
    return Points(tuple(pairs), reference_size, lineart_size)


def pairs_from_coordinates(reference_coordinates, lineart_coordinates) -> Points:
    """Pair two KJNodes PointsEditor-style lists ``[{"x":..,"y":..}, ...]`` by order."""
    lists = []
    for text, what in ((reference_coordinates, "reference"), (lineart_coordinates, "line art")):
        obj = text
        if isinstance(text, str):
            if not text.strip():
                obj = []
            else:
                try:
                    obj = json.loads(text.replace("'", '"'))
                except json.JSONDecodeError as e:
                    raise PointsError(f"{what} coordinates are not valid JSON: {e}") from e
        if not isinstance(obj, list):
            raise PointsError(f"{what} coordinates must be a list of {{'x': .., 'y': ..}}, got {type(obj).__name__}")
        lists.append([_xy(p, f"{what} point {i}") for i, p in enumerate(obj, 1)])
    ref, line = lists
    if len(ref) != len(line):
        raise PointsError(f"the reference has {len(ref)} points and the line art {len(line)}; "
                          "they are paired by order, so both need the same number")
    return Points(tuple(zip(ref, line)))


def validate(points: Points, reference_size: tuple[int, int], lineart_size: tuple[int, int]) -> None:
    """Raise PointsError for too many pairs, duplicates, or points outside their image."""
    if len(points) > MAX_PAIRS:
        raise PointsError(f"{len(points)} pairs given; MangaNinja supports at most {MAX_PAIRS}. Remove some.")
    for what, declared, actual in (("reference", points.reference_size, reference_size),
                                   ("line art", points.lineart_size, lineart_size)):
        if declared is not None and tuple(declared) != tuple(actual):
            raise PointsError(f"the points were placed on a {declared[0]}x{declared[1]} {what}, but the {what} "
                              f"image is {actual[0]}x{actual[1]}; place the points again on this image")
    seen: dict[str, dict[tuple[int, int], int]] = {"reference": {}, "line art": {}}
    for i, pair in enumerate(points.pairs, 1):
        for (x, y), what, (w, h) in zip(pair, ("reference", "line art"), (reference_size, lineart_size)):
            if not (0 <= x < w and 0 <= y < h):
                raise PointsError(f"pair {i}: the {what} point (x={x:g}, y={y:g}) lies outside the {w}x{h} {what} "
                                  f"image; x must be in [0, {w}) and y in [0, {h})")
            pixel = (math.floor(x), math.floor(y))
            if pixel in seen[what]:
                raise PointsError(f"pair {i} uses the same {what} pixel {pixel} as pair {seen[what][pixel]}; "
                                  "each point may be used once")
            seen[what][pixel] = i


@dataclass
class PointMaps:
    reference: torch.Tensor  # (1, 1, N, N) float32 ids
    lineart: torch.Tensor


def point_maps(points: Points, reference_fit: Fit, lineart_fit: Fit) -> PointMaps:
    """Validate and rasterise the pairs through the two fits."""
    validate(points, reference_fit.source_size, lineart_fit.source_size)
    maps = []
    for side, fit in enumerate((reference_fit, lineart_fit)):
        m = np.zeros((fit.size, fit.size), dtype=np.uint8)
        what = ("reference", "line art")[side]
        for k, pair in enumerate(points.pairs, 1):
            row, col = fit.map_point(*pair[side])
            if m[row, col]:
                raise PointsError(f"pairs {m[row, col]} and {k} fall on the same {what} pixel after resizing to "
                                  f"{fit.size}x{fit.size}; move them further apart")
            m[row, col] = k
        maps.append(torch.from_numpy(m.astype(np.float32))[None, None])
    return PointMaps(maps[0], maps[1])


def maps_from_arrays(reference: np.ndarray, lineart: np.ndarray) -> PointMaps:
    """Point maps given directly as (N, N) integer arrays (the official ``.npy`` files)."""
    if reference.shape != lineart.shape or reference.ndim != 2:
        raise PointsError(f"point maps must be two (N, N) arrays of equal size, got {reference.shape} and "
                          f"{lineart.shape}")
    return PointMaps(torch.from_numpy(reference.astype(np.float32))[None, None],
                     torch.from_numpy(lineart.astype(np.float32))[None, None])
