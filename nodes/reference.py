"""Reference Encode: the reference image encoded once (CLIP token, VAE latents, attention bank)."""

from __future__ import annotations

from ..mn_core.choices import FIT_MODES
from . import bridge


class ReferenceEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MANGANINJA_MODEL",),
            "reference": ("IMAGE", {"tooltip": "the coloured character; only the first image of a batch is used"}),
            "size": ("INT", {"default": 512, "min": 256, "max": 1024, "step": 64,
                             "tooltip": "processing size (square); MangaNinja was trained at 512"}),
            "fit": (list(FIT_MODES), {"default": "letterbox",
                                      "tooltip": "letterbox keeps the aspect ratio; stretch is what upstream does"}),
            "reference_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                       "tooltip": "noise of the reference's VAE posterior sample (kept fixed so the "
                                                  "reference is encoded once)"}),
        }}

    RETURN_TYPES = ("MANGANINJA_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Encodes a reference once; any number of samplers and frames can reuse it."

    def encode(self, model, reference, size, fit, reference_seed):
        images = bridge.image_batch(reference, "reference")
        encoded = model.encode_reference(images[0], size=size, fit=fit, seed=reference_seed)
        return (encoded.to(bridge.intermediate_device()),)
