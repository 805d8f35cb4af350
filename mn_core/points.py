"""Matched points: the JSON format shared by the CLI and the ComfyUI nodes, validation, and point maps.

A pair says "this pixel of the reference has the colour that belongs at this pixel of the line art". Coordinates
are (x, y) pixel positions in each ORIGINAL image (x = column from the left, y = row from the top; fractions are
rounded down). The canonical JSON::

    {
      "reference_size": [W, H],          # optional: the size the reference points were clicked on
      "lineart_size": [W, H],            # optional: the same for the line art
      "pairs": [ {"reference": [x, y], "lineart": [x, y]}, ... ]
    }

A pair may carry ``"confidence"`` (0 to 1): suggested pairs do (:mod:`mn_core.suggest`); the model ignores it.

With several references, a pair may name its reference with ``"reference_index": k`` (0-based, default 0), and
``reference_size`` may be a list with one ``[W, H]`` per reference.

Also accepted: a bare list of such pair objects, or a list of ``[[x, y], [x, y]]`` (reference first).
Two KJNodes-style coordinate lists (``[{"x": .., "y": ..}, ...]``, one per image) are paired by order with
:func:`pairs_from_coordinates`.

For the model, pair k (1-based) writes the value k at [row, col] of two maps of the processing size, one per
image, after mapping each point through the same fit as its image; everything else is 0. With several encoded
reference squares (bank mode) each square has its own reference map, holding the pairs of its reference.
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


Size = tuple[int, int]


@dataclass(frozen=True)
class Points:
    pairs: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = ()
    reference_size: Size | tuple[Size | None, ...] | None = None  # one size, or one per reference
    lineart_size: Size | None = None
    reference_indices: tuple[int, ...] = ()  # per pair; empty: every pair belongs to reference 0
    confidences: tuple[float, ...] = ()  # per pair, for suggested pairs (mn_core.suggest); empty: none given

    def __len__(self) -> int:
        return len(self.pairs)

    def index(self, i: int) -> int:
        """The reference of pair ``i`` (0-based)."""
        return self.reference_indices[i] if self.reference_indices else 0

    def declared_reference_size(self, k: int) -> Size | None:
        size = self.reference_size
        if size is None or (len(size) == 2 and isinstance(size[0], int)):
            return size if k == 0 or size is None else None
        return size[k] if k < len(size) else None

    def to_json(self) -> str:
        out: dict = {}
        if self.reference_size:
            single = isinstance(self.reference_size[0], int)
            out["reference_size"] = (list(self.reference_size) if single
                                     else [list(s) if s else None for s in self.reference_size])
        if self.lineart_size:
            out["lineart_size"] = list(self.lineart_size)
        pairs = []
        for i, (r, line) in enumerate(self.pairs):
            pair = {"reference": list(r), "lineart": list(line)}
            if self.index(i):
                pair["reference_index"] = self.index(i)
            if self.confidences:
                pair["confidence"] = self.confidences[i]
            pairs.append(pair)
        out["pairs"] = pairs
        return json.dumps(out)


NO_POINTS = Points()


@dataclass(frozen=True)
class FramePoints:
    """Points per frame of a shot (suggested for every frame, :mod:`mn_core.suggest`): frame i uses ``frames[i]``.
    JSON: ``{"frames": [points, points, ...]}``, each entry the canonical object above."""

    frames: tuple[Points, ...]

    def __len__(self) -> int:
        return len(self.frames)

    def for_frame(self, index: int) -> Points:
        if not 0 <= index < len(self.frames):
            raise PointsError(f"frame {index} has no points: {len(self.frames)} frames of points were given for a "
                              f"longer shot; suggest points for every frame")
        return self.frames[index]

    def to_json(self) -> str:
        return json.dumps({"frames": [json.loads(p.to_json()) for p in self.frames]})


def for_frame(points, index: int) -> Points | None:
    """The points of frame ``index``: its own from a :class:`FramePoints`, else the shared ``points``."""
    return points.for_frame(index) if isinstance(points, FramePoints) else points


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
        given = obj.get("reference_size")
        if isinstance(given, list) and given and all(v is None or isinstance(v, list) for v in given):
            reference_size = tuple(_size(v, f"reference_size[{k}]") for k, v in enumerate(given))
        else:
            reference_size = _size(given, "reference_size")
        lineart_size = _size(obj.get("lineart_size"), "lineart_size")
        obj = obj.get("pairs", [])
    if not isinstance(obj, list):
        raise PointsError(f"points must be a list of pairs, got {type(obj).__name__}")
    pairs, indices, confidences, has_confidence = [], [], [], False
    for i, item in enumerate(obj, 1):
        index = 0
        if isinstance(item, dict):
            if not {"reference", "lineart"} <= set(item) <= {"reference", "lineart", "reference_index", "confidence"}:
                raise PointsError(f"pair {i}: expected keys 'reference' and 'lineart' (and optionally "
                                  f"'reference_index', 'confidence'), got {sorted(item)}")
            c = item.get("confidence", 1.0)
            if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 <= c <= 1:
                raise PointsError(f"pair {i}: confidence must be a number from 0 to 1, got {c!r}")
            confidences.append(float(c))
            has_confidence = has_confidence or "confidence" in item
            ref, line = item["reference"], item["lineart"]
            index = item.get("reference_index", 0)
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise PointsError(f"pair {i}: reference_index must be a whole number >= 0 (0 = the first "
                                  f"reference), got {index!r}")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            ref, line = item
            confidences.append(1.0)
        else:
            raise PointsError(f"pair {i}: expected {{'reference': [x, y], 'lineart': [x, y]}}, got {item!r}")
        pairs.append((_xy(ref, f"pair {i} (reference)"), _xy(line, f"pair {i} (line art)")))
        indices.append(index)
    return Points(tuple(pairs), reference_size, lineart_size, tuple(indices) if any(indices) else (),
                  tuple(confidences) if has_confidence else ())


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


def validate(points: Points, reference_size: Size | list[Size], lineart_size: Size) -> None:
    """Raise PointsError for too many pairs, duplicates, unknown references, or points outside their image.
    ``reference_size``: the reference's size, or a list with one size per reference."""
    sizes = [tuple(reference_size)] if isinstance(reference_size[0], int) else [tuple(s) for s in reference_size]
    if len(points) > MAX_PAIRS:
        raise PointsError(f"{len(points)} pairs given; MangaNinja supports at most {MAX_PAIRS}. Remove some.")
    for i in range(len(points)):
        if points.index(i) >= len(sizes):
            raise PointsError(f"pair {i + 1}: reference_index {points.index(i)} names a reference that is not "
                              f"there; {len(sizes)} reference(s) given, so use 0 to {len(sizes) - 1}")
    name = (lambda k: "reference") if len(sizes) == 1 else (lambda k: f"reference {k + 1} (reference_index {k})")
    checks = [(name(k), points.declared_reference_size(k), s)
              for k, s in enumerate(sizes)] + [("line art", points.lineart_size, lineart_size)]
    for what, declared, actual in checks:
        if declared is not None and tuple(declared) != tuple(actual):
            raise PointsError(f"the points were placed on a {declared[0]}x{declared[1]} {what}, but the {what} "
                              f"image is {actual[0]}x{actual[1]}; place the points again on this image")
    seen: dict[object, dict[tuple[int, int], int]] = {}
    for i, pair in enumerate(points.pairs, 1):
        k = points.index(i - 1)
        ref_what = name(k)
        for (x, y), what, (w, h), key in zip(pair, (ref_what, "line art"), (sizes[k], lineart_size), (k, "line")):
            if not (0 <= x < w and 0 <= y < h):
                raise PointsError(f"pair {i}: the {what} point (x={x:g}, y={y:g}) lies outside the {w}x{h} {what} "
                                  f"image; x must be in [0, {w}) and y in [0, {h})")
            pixel = (math.floor(x), math.floor(y))
            if pixel in seen.setdefault(key, {}):
                raise PointsError(f"pair {i} uses the same {what} pixel {pixel} as pair {seen[key][pixel]}; "
                                  "each point may be used once")
            seen[key][pixel] = i


@dataclass
class PointMaps:
    reference: torch.Tensor  # (S, 1, N, N) float32 ids: one map per encoded reference square
    lineart: torch.Tensor    # (1, 1, N, N)


def point_maps(points: Points, reference_fit: Fit | list[tuple[int, Fit]], lineart_fit: Fit,
               squares: int = 1) -> PointMaps:
    """Validate and rasterise the pairs through the fits.

    ``reference_fit``: the reference's fit, or per reference (square index, its fit into that square), for
    references combined into ``squares`` encoded squares (see :class:`mn_core.pipeline.Reference`)."""
    sources = [(0, reference_fit)] if isinstance(reference_fit, Fit) else list(reference_fit)
    validate(points, [fit.source_size for _, fit in sources], lineart_fit.source_size)
    n = lineart_fit.size
    ref_maps = np.zeros((squares, n, n), dtype=np.uint8)
    line_map = np.zeros((n, n), dtype=np.uint8)
    for k, pair in enumerate(points.pairs, 1):
        square, fit = sources[points.index(k - 1)]
        for m, (row, col), what in ((ref_maps[square], fit.map_point(*pair[0]), "reference"),
                                    (line_map, lineart_fit.map_point(*pair[1]), "line art")):
            if m[row, col]:
                raise PointsError(f"pairs {m[row, col]} and {k} fall on the same {what} pixel after resizing to "
                                  f"{n}x{n}; move them further apart")
            m[row, col] = k
    return PointMaps(torch.from_numpy(ref_maps.astype(np.float32))[:, None],
                     torch.from_numpy(line_map.astype(np.float32))[None, None])


def maps_from_arrays(reference: np.ndarray, lineart: np.ndarray) -> PointMaps:
    """Point maps given directly as (N, N) integer arrays (the official ``.npy`` files)."""
    if reference.shape != lineart.shape or reference.ndim != 2:
        raise PointsError(f"point maps must be two (N, N) arrays of equal size, got {reference.shape} and "
                          f"{lineart.shape}")
    return PointMaps(torch.from_numpy(reference.astype(np.float32))[None, None],
                     torch.from_numpy(lineart.astype(np.float32))[None, None])
