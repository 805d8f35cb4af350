"""Point Editor: matched points between the reference and the line art, kept in the graph as JSON.

The points live in the node's ``points`` STRING widget (the browser widget edits it), so saved workflows, copies
and headless /prompt calls all carry them. Coordinates are pixels of the ORIGINAL images. KJNodes PointsEditor-
style coordinate lists can be connected instead (one per image, paired by order).

Several references (the same order as Reference Encode: every image of the ``reference`` batch, then reference_2,
...): a pair names its reference with ``"reference_index"`` (0-based); the widget's selector sets it.
"""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from ..mn_core import points as mn_points
from ..mn_core.images import to_pil
from . import bridge
from .reference import MORE, reference_images

# Pair colours; js/point_editor.js uses the same list so previews and the editor agree.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075",
           "#a9a9a9", "#ffe119", "#ff6f61", "#2f4f4f", "#7fffd4", "#ff1493")


def draw_points(image: Image.Image, xy: list[tuple[float, float]], numbers: list[int] | None = None) -> Image.Image:
    """The image with each point drawn as a numbered disc in its pair's colour (pair numbers 1, 2, ... unless
    ``numbers`` gives them)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    radius = max(4, round(max(out.size) / 80))
    try:
        font = ImageFont.load_default(size=max(10, radius * 2))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for k, (x, y) in zip(numbers or range(1, len(xy) + 1), xy):
        colour = PALETTE[(k - 1) % len(PALETTE)]
        cx, cy = int(x) + 0.5, int(y) + 0.5
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour, outline="white", width=2)
        label = str(k)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font, stroke_width=2)
        tx = cx + radius + 2 if cx + radius + 2 + right <= out.width else cx - radius - 2 - right
        ty = min(max(0, cy - radius - 2), out.height - bottom)
        draw.text((tx, ty), label, fill=colour, font=font, stroke_width=2, stroke_fill="black")
    return out


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
        parsed = mn_points.Points(parsed.pairs, reference_sizes(parsed, [r.size for r in refs]),
                                  parsed.lineart_size or line.size, parsed.reference_indices)
        mn_points.validate(parsed, [r.size for r in refs], line.size)
        previews = []
        for k, ref in enumerate(refs):
            mine = [i for i in range(len(parsed)) if parsed.index(i) == k]
            previews.append(bridge.save_preview(draw_points(ref, [parsed.pairs[i][0] for i in mine],
                                                            [i + 1 for i in mine]), f"manganinja_points_ref{k + 1}"))
        previews.append(bridge.save_preview(draw_points(line, [p[1] for p in parsed.pairs]),
                                            "manganinja_points_lineart"))
        sources = [bridge.save_preview(ref, f"manganinja_ref{k + 1}") for k, ref in enumerate(refs)]
        line_source = bridge.save_preview(line, "manganinja_lineart")
        ui = {"images": [p for p in previews if p],
              "mn_sources": [s for s in (sources[0], line_source) if s],
              "mn_reference_sources": [s for s in sources if s],
              "mn_points": [parsed.to_json()]}
        return {"ui": ui, "result": (parsed,)}


def reference_sizes(points: mn_points.Points, actual: list[tuple[int, int]]):
    """The sizes the points were placed on: the declared ones, the images' own where none is declared (one size
    with one reference, as before; one per reference with several)."""
    if len(actual) == 1:
        return points.declared_reference_size(0) or actual[0]
    return tuple(points.declared_reference_size(k) or size for k, size in enumerate(actual))
