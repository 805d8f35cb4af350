"""MangaNinja reference-based line-art colorization: an independent implementation of the official inference.

    from mn_core import MangaNinja
    mn = MangaNinja.from_folder("checkpoints")                 # the official folder layout
    ref = mn.encode_reference("character.png", seed=0)         # once per reference
    out = mn.colorize(ref, "page.png", points=parse_points(open("points.json").read()), seed=0)
    out.image.save("coloured.png")

No ComfyUI import anywhere in this package; the ComfyUI nodes are thin adapters over it.
"""

from .images import FIT_MODES, ImageError
from .loading import CheckpointError
from .lineart import Lineart
from .lineart import from_drawing as lineart_from_drawing
from .observers import Observer
from .pipeline import ColorizeResult, MangaNinja, Reference
from .points import MAX_PAIRS, Points, PointsError, pairs_from_coordinates
from .points import parse as parse_points

__all__ = ["MangaNinja", "Reference", "Lineart", "lineart_from_drawing", "ColorizeResult", "Observer", "Points",
           "parse_points", "pairs_from_coordinates", "PointsError", "CheckpointError", "ImageError", "FIT_MODES", "MAX_PAIRS"]
