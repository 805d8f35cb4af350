"""Colorize Sampler: colours every frame of a line-art batch against one encoded reference."""

from __future__ import annotations

import torch

from ..mn_core import lineart as mn_lineart
from ..mn_core.choices import FIT_MODES, POLARITIES
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
               lineart=None, prepared_lineart=None, points=None):
        prepared = frames_of(lineart, prepared_lineart, reference)
        frames = prepared if prepared is not None else bridge.image_batch(lineart, "lineart")
        progress = bridge.Progress(steps * len(frames))
        generator = torch.Generator("cpu").manual_seed(seed)  # frame i uses the i-th draw
        images, linearts = [], []
        for frame in frames:
            if prepared is None:
                frame = mn_lineart.from_drawing(frame, size=reference.size, fit=fit, polarity=lineart_polarity)
            result = model.colorize(reference, frame, points=points, steps=steps, guidance_ref=guidance_ref,
                                    guidance_point=guidance_point, generator=generator, seed=seed,
                                    observers=[progress])
            images.append(result.image)
            linearts.append(result.lineart)
        used = points.to_json() if points is not None else "null"
        return {"ui": {"mn_points": [used], "mn_seed": [seed], "mn_frames": [len(images)]},
                "result": (bridge.to_image_tensor(images), bridge.to_image_tensor(linearts))}
