"""Point Editor: matched points between the reference and the line art, kept in the graph as JSON.

The points live in the node's ``points`` STRING widget (the browser widget edits it), so saved workflows, copies
and headless /prompt calls all carry them. Coordinates are pixels of the ORIGINAL images. KJNodes PointsEditor-
style coordinate lists can be connected instead (one per image, paired by order).

Several references (the same order as Reference Encode: every image of the ``reference`` batch, then reference_2,
...): a pair names its reference with ``"reference_index"`` (0-based); the widget's selector sets it.
"""

from __future__ import annotations

from ..mn_core import points as mn_points
from ..mn_core.images import to_pil
from . import bridge
from .reference import MORE, reference_images


class PointEditor:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": ("IMAGE",),
                "lineart": ("IMAGE",),
                "points": ("STRING", {"default": '{"pairs": []}', "multiline": True, "dynamicPrompts": False,
                                      "tooltip": 'JSON: {"pairs": [{"reference": [x, y], "lineart": [x, y]}, ...]} '
                                                 "in pixels of the original images (edited by the widget)"}),
            },
            "optional": {
                "reference_coordinates": ("STRING", {"forceInput": True,
                                                     "tooltip": 'KJNodes-style [{"x":..,"y":..}, ...] on the '
                                                                "reference; replaces `points` when connected"}),
                "lineart_coordinates": ("STRING", {"forceInput": True}),
                **{name: ("IMAGE", {"tooltip": "one more reference, as on Reference Encode; pick it in the "
                                               "editor's selector to place its pairs"}) for name in MORE},
            },
        }

    RETURN_TYPES = ("MANGANINJA_POINTS",)
    RETURN_NAMES = ("points",)
    FUNCTION = "run"
    CATEGORY = "MangaNinja"
    DESCRIPTION = (f"Click a point on the reference, then the matching point on the line art (up to "
                   f"{mn_points.MAX_PAIRS} pairs). Drag to move, right-click to delete a pair.")

    def run(self, reference, lineart, points, reference_coordinates=None, lineart_coordinates=None,
            reference_2=None, reference_3=None, reference_4=None):
        refs = [to_pil(image, what=f"reference {k + 1}")
                for k, image in enumerate(reference_images(reference, (reference_2, reference_3, reference_4)))]
        line = to_pil(bridge.image_batch(lineart, "lineart")[0], what="lineart")
        if reference_coordinates is not None or lineart_coordinates is not None:
            parsed = mn_points.pairs_from_coordinates(reference_coordinates or "[]", lineart_coordinates or "[]")
        else:
            parsed = mn_points.parse(points)
        sizes = [r.size for r in refs]
        parsed = mn_points.Points(parsed.pairs, reference_sizes(parsed, sizes), parsed.lineart_size or line.size,
                                  parsed.reference_indices, parsed.confidences)
        try:
            mn_points.validate(parsed, sizes, line.size)
        except ValueError as e:
            source = "reference_coordinates/lineart_coordinates" if reference_coordinates is not None \
                or lineart_coordinates is not None else "points"
            raise type(e)(f"Point Editor: `{source}`: {e}") from None
        sources = [bridge.save_preview(ref, f"manganinja_ref{k + 1}") for k, ref in enumerate(refs)]
        line_source = bridge.save_preview(line, "manganinja_lineart")
        # No "images": the editor shows the images and points already, and previews would take its room.
        ui = {"mn_sources": [s for s in (sources[0], line_source) if s],
              "mn_reference_sources": [s for s in sources if s],
              "mn_points": [parsed.to_json()]}
        return {"ui": ui, "result": (parsed,)}


def reference_sizes(points: mn_points.Points, actual: list[tuple[int, int]]):
    """The sizes the points were placed on: the declared ones, the images' own where none is declared (one size
    with one reference, as before; one per reference with several)."""
    if len(actual) == 1:
        return points.declared_reference_size(0) or actual[0]
    return tuple(points.declared_reference_size(k) or size for k, size in enumerate(actual))
