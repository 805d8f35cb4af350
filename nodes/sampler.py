"""Colorize Sampler: colours every frame of a line-art batch against one encoded reference."""

from __future__ import annotations

import torch

from ..mn_core.images import FIT_MODES
from . import comfy

POLARITIES = ("auto", "white_on_black", "black_on_white")


class ColorizeSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MANGANINJA_MODEL",),
                "reference": ("MANGANINJA_REFERENCE",),
                "lineart": ("IMAGE", {"tooltip": "line art, white on black or black on white; a batch colours every "
                                                 "frame against the same reference"}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 200}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "guidance_ref": ("FLOAT", {"default": 9.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                           "tooltip": "how strongly to follow the reference (official default 9)"}),
                "guidance_point": ("FLOAT", {"default": 15.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                             "tooltip": "how strongly to follow the matched points (default 15)"}),
                "fit": (list(FIT_MODES), {"default": "letterbox"}),
                "lineart_polarity": (list(POLARITIES), {"default": "auto"}),
            },
            "optional": {"points": ("MANGANINJA_POINTS",)},
        }

    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("image", "lineart")
    FUNCTION = "sample"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Colours line art with the reference's colours (three-way guided DDIM), at the input size."

    def sample(self, model, reference, lineart, steps, seed, guidance_ref, guidance_point, fit, lineart_polarity,
               points=None):
        frames = comfy.image_batch(lineart, "lineart")
        progress = comfy.Progress(steps * frames.shape[0])
        generator = torch.Generator("cpu").manual_seed(seed)  # frame i uses the i-th draw
        images, linearts = [], []
        for frame in frames:
            prepared = model.lineart_from_drawing(frame, size=reference.size, fit=fit, polarity=lineart_polarity)
            result = model.colorize(reference, prepared, points=points, steps=steps, guidance_ref=guidance_ref,
                                    guidance_point=guidance_point, generator=generator, seed=seed,
                                    callback=lambda i, n: progress.update(1))
            images.append(result.image)
            linearts.append(result.lineart)
        used = points.to_json() if points is not None else "null"
        return {"ui": {"mn_points": [used], "mn_seed": [seed], "mn_frames": [len(images)]},
                "result": (comfy.to_image_tensor(images), comfy.to_image_tensor(linearts))}
