"""Suggest Points: matched pairs found automatically (mn_core.suggest, no model weights), so a graph runs with
points and no clicking; for a batch of line-art frames, pairs suggested per frame."""

from __future__ import annotations

from ..mn_core import points as mn_points
from ..mn_core.images import to_pil
from ..mn_core.suggest import suggest_points
from . import bridge


class SuggestPoints:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": ("IMAGE", {"tooltip": "the coloured reference (one image)"}),
                "lineart": ("IMAGE", {"tooltip": "the line art; a batch gets pairs suggested for every frame"}),
                "max_pairs": ("INT", {"default": 12, "min": 1, "max": mn_points.MAX_PAIRS,
                                      "tooltip": "at most this many pairs (fewer when fewer are reliable)"}),
                "min_confidence": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                             "tooltip": "leave out pairs below this confidence (the best is 1)"}),
                "lineart_is_colour": ("BOOLEAN", {"default": False, "tooltip": "the line art input is a colour "
                                                  "image (its outlines are matched, as Extract Lineart would)"}),
            },
        }

    RETURN_TYPES = ("MANGANINJA_POINTS", "STRING")
    RETURN_NAMES = ("points", "points_json")
    FUNCTION = "run"
    CATEGORY = "MangaNinja"
    DESCRIPTION = ("Finds matching point pairs between the reference and the line art (line structure, SIFT and "
                   "geometric checks; no model weights). points_json is the Point Editor's format (a batch: "
                   '{"frames": [...]}).')

    def run(self, reference, lineart, max_pairs, min_confidence, lineart_is_colour):
        ref = to_pil(bridge.image_batch(reference, "reference")[0], what="reference")
        frames = bridge.image_batch(lineart, "lineart")
        found = [suggest_points(ref, to_pil(frame, what=f"lineart frame {k}"), max_pairs,
                                extract=lineart_is_colour, min_confidence=min_confidence)
                 for k, frame in enumerate(frames)]
        points = found[0] if len(found) == 1 else mn_points.FramePoints(tuple(found))
        return {"ui": {"mn_pairs": [len(p) for p in found]}, "result": (points, points.to_json())}
