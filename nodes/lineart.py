"""Extract Lineart: line art for the sampler, extracted by the sk_model annotator or cleaned from a drawing."""

from __future__ import annotations

from PIL import ImageOps

from ..mn_core.images import FIT_MODES
from ..mn_core.lineart import CLEANUP_THRESHOLD
from . import comfy


class ExtractLineart:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "mode": (["extract", "drawn"], {
                    "default": "extract", "tooltip": "extract: run the sk_model annotator on a colour/grey image; "
                                                     "drawn: the image already is line art"}),
                "polarity": (["auto", "white_on_black", "black_on_white"], {
                    "default": "auto", "tooltip": "for drawn line art: how it is drawn"}),
                "binarize": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "0 = off; otherwise lines above this become 1, the rest 0"}),
                "cleanup": ("BOOLEAN", {"default": True,
                                        "tooltip": f"remove faint strokes (<= {CLEANUP_THRESHOLD}) as upstream does"}),
                "size": ("INT", {"default": 512, "min": 256, "max": 1024, "step": 64}),
                "fit": (list(FIT_MODES), {"default": "letterbox"}),
                "output": (["black_on_white", "white_on_black"], {"default": "black_on_white"}),
            },
            "optional": {"model": ("MANGANINJA_MODEL", {"tooltip": "needed for mode 'extract' (the annotator)"})},
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("lineart",)
    FUNCTION = "extract"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Line art at the input size, processed at `size` like the sampler does."

    def extract(self, image, mode, polarity, binarize, cleanup, size, fit, output, model=None):
        if mode == "extract" and model is None:
            raise ValueError("Extract Lineart: mode 'extract' needs the MangaNinja model (for its annotator); "
                             "connect Load MangaNinja, or use mode 'drawn' for existing line art")
        from ..mn_core.pipeline import MangaNinja

        threshold = binarize if binarize > 0 else None
        out = []
        for frame in comfy.image_batch(image, "image"):
            if mode == "extract":
                art = model.extract_lineart(frame, size=size, fit=fit, cleanup=cleanup, binarize=threshold)
            else:
                art = MangaNinja.lineart_from_drawing(frame, size=size, fit=fit, polarity=polarity, cleanup=cleanup,
                                                      binarize=threshold)
            picture = art.restored()
            out.append(ImageOps.invert(picture) if output == "black_on_white" else picture)
        return (comfy.to_image_tensor(out),)
