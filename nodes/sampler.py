"""Colorize Sampler: colours a line-art batch as a sequence of frames against one encoded reference."""

from __future__ import annotations

from ..mn_core import lineart as mn_lineart
from ..mn_core.sequence import colorize_sequence
from ..mn_core.choices import FIT_MODES, POLARITIES
from ..mn_core.pipeline import MangaNinja, Reference
from ..mn_core.points import FramePoints, Points
from . import bridge


def frames_of(lineart, prepared_lineart, reference) -> list[mn_lineart.Lineart] | None:
    """The prepared line arts to colour, or None when the sampler prepares them from the IMAGE batch itself."""
    if (lineart is None) == (prepared_lineart is None):
        raise ValueError("Colorize Sampler: connect either `lineart` (an IMAGE of line art) or `prepared_lineart` "
                         "(Extract Lineart's `prepared` output), not " + ("neither" if lineart is None else "both"))
    if prepared_lineart is None:
        return None
    for art in prepared_lineart:
        if art.size != reference.size:
            raise ValueError(f"Colorize Sampler: prepared_lineart was made at size {art.size} but the reference was "
                             f"encoded at {reference.size}; set Extract Lineart's size to {reference.size}")
    return list(prepared_lineart)


class ColorizeSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MANGANINJA_MODEL",),
                "reference": ("MANGANINJA_REFERENCE",),
                "steps": ("INT", {"default": 50, "min": 1, "max": 200}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "guidance_ref": ("FLOAT", {"default": 9.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                           "tooltip": "how strongly to follow the reference (official default 9)"}),
                "guidance_point": ("FLOAT", {"default": 15.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                             "tooltip": "how strongly to follow the matched points (default 15)"}),
                "fit": (list(FIT_MODES), {"default": "letterbox",
                                          "tooltip": "for `lineart` (prepared line art keeps its own fit)"}),
                "lineart_polarity": (list(POLARITIES), {"default": "auto", "tooltip": "for `lineart`"}),
                "previous_frame": ("BOOLEAN", {
                    "default": False, "tooltip": "a batch is a shot: colour frame i with the reference AND the "
                                                 "coloured frame i-1 (steadier colours; frames run one by one)"}),
                "same_noise": ("BOOLEAN", {"default": False, "tooltip": "the same initial noise on every frame "
                                                                       "(less flicker on still parts)"}),
                "frames_per_call": ("INT", {"default": 1, "min": 1, "max": 64,
                                            "tooltip": "independent frames sampled together (faster on a GPU, "
                                                       "more memory); not with previous_frame"}),
            },
            "optional": {
                "lineart": ("IMAGE", {"tooltip": "line art, white on black or black on white; a batch colours every "
                                                 "frame against the same reference"}),
                "prepared_lineart": ("MANGANINJA_LINEART", {
                    "tooltip": "instead of `lineart`: Extract Lineart's prepared output, used exactly as it is"}),
                "points": ("MANGANINJA_POINTS",),
            },
        }

    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("image", "lineart")
    FUNCTION = "sample"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Colours line art with the reference's colours (three-way guided DDIM), at the input size."

    def sample(self, model, reference, steps, seed, guidance_ref, guidance_point, fit, lineart_polarity,
               previous_frame=False, same_noise=False, frames_per_call=1, lineart=None, prepared_lineart=None,
               points=None):
        bridge.expect(model, MangaNinja, "Colorize Sampler", "model", "Load MangaNinja")
        bridge.expect(reference, Reference, "Colorize Sampler", "reference", "Reference Encode")
        if points is not None:
            bridge.expect(points, (Points, FramePoints), "Colorize Sampler", "points", "Point Editor or Suggest Points")
        if prepared_lineart is not None:
            bridge.expect(prepared_lineart, (list, tuple), "Colorize Sampler", "prepared_lineart",
                          "Extract Lineart's `prepared` output")
            for art in prepared_lineart:
                bridge.expect(art, mn_lineart.Lineart, "Colorize Sampler", "prepared_lineart",
                              "Extract Lineart's `prepared` output")
        prepared = frames_of(lineart, prepared_lineart, reference)
        if prepared is None:
            prepared = [mn_lineart.from_drawing(frame, size=reference.size, fit=fit, polarity=lineart_polarity)
                        for frame in bridge.image_batch(lineart, "lineart")]
        if previous_frame and frames_per_call > 1:
            raise ValueError("Colorize Sampler: previous_frame colours each frame after the one before it; set "
                             "frames_per_call to 1")
        progress = bridge.Progress(steps * len(prepared))  # one tick per step of every frame
        images, linearts = [], []
        for result in colorize_sequence(model, reference, prepared, points=points, steps=steps,
                                        guidance_ref=guidance_ref, guidance_point=guidance_point, seed=seed,
                                        same_noise=same_noise, previous_frame=previous_frame,
                                        batch=frames_per_call, observers=[progress]):
            images.append(result.image)
            linearts.append(result.lineart)
        used = points.to_json() if points is not None else "null"
        return {"ui": {"mn_points": [used], "mn_seed": [seed], "mn_frames": [len(images)]},
                "result": (bridge.to_image_tensor(images), bridge.to_image_tensor(linearts))}
