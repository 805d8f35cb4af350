"""Reference Encode: one or several reference images encoded once (CLIP token, VAE latents, attention bank)."""

from __future__ import annotations

from ..mn_core.choices import FIT_MODES, MULTI_REFERENCE_MODES
from ..mn_core.pipeline import MangaNinja
from . import bridge

MORE = ("reference_2", "reference_3", "reference_4")


def reference_images(reference, more) -> list:
    """The references in order: every image of the ``reference`` batch, then those of reference_2, ... (inputs of
    different sizes need no resizing). Point pairs name them by this order (``reference_index``)."""
    images = list(bridge.image_batch(reference, "reference"))
    for name, batch in zip(MORE, more):
        if batch is not None:
            images.extend(bridge.image_batch(batch, name))
    return images


class ReferenceEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MANGANINJA_MODEL",),
                "reference": ("IMAGE", {"tooltip": "the coloured character(s); every image of a batch is a "
                                                   "reference (several: see `combine`)"}),
                "size": ("INT", {"default": 512, "min": 256, "max": 1024, "step": 64,
                                 "tooltip": "processing size (square); MangaNinja was trained at 512"}),
                "fit": (list(FIT_MODES), {"default": "letterbox",
                                          "tooltip": "letterbox keeps the aspect ratio; stretch is what upstream "
                                                     "does"}),
                "reference_seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                           "tooltip": "noise of the reference's VAE posterior sample (kept fixed so "
                                                      "the reference is encoded once)"}),
                "combine": (list(MULTI_REFERENCE_MODES), {
                    "default": "tile", "tooltip": "several references: tile = laid out in one square and encoded "
                                                  "as one (what the model was trained on, less detail each); bank = "
                                                  "each encoded alone, attended to side by side (more detail, "
                                                  "beyond the training distribution). One reference: no effect"}),
            },
            "optional": {name: ("IMAGE", {"tooltip": "one more reference (any size); numbered after the ones "
                                                     "before it"}) for name in MORE},
        }

    RETURN_TYPES = ("MANGANINJA_REFERENCE",)
    RETURN_NAMES = ("reference",)
    FUNCTION = "encode"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Encodes one or several references once; any number of samplers and frames can reuse them."

    def encode(self, model, reference, size, fit, reference_seed, combine="tile", reference_2=None,
               reference_3=None, reference_4=None):
        bridge.expect(model, MangaNinja, "Reference Encode", "model", "Load MangaNinja")
        images = reference_images(reference, (reference_2, reference_3, reference_4))
        encoded = model.encode_references(images, mode=combine, size=size, fit=fit, seed=reference_seed)
        return (encoded.to(bridge.intermediate_device()),)
