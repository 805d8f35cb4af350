"""Extract Lineart: line art for the sampler, extracted by the sk_model annotator or cleaned from a drawing.

It outputs the prepared line art itself (``MANGANINJA_LINEART``: at the processing size, fitted and cleaned once),
which the Colorize Sampler uses as it is, plus an IMAGE of it at the input's size to look at or save.
"""

from __future__ import annotations

from PIL import ImageOps

from ..mn_core import lineart as mn_lineart
from ..mn_core.choices import FIT_MODES, POLARITIES
from ..mn_core.pipeline import MangaNinja
from . import bridge

OUTPUTS = ("black_on_white", "white_on_black")


class ExtractLineart:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "mode": (["extract", "drawn"], {
                    "default": "extract", "tooltip": "extract: run the sk_model annotator on a colour/grey image; "
                                                     "drawn: the image already is line art"}),
                "polarity": (list(POLARITIES), {
                    "default": "auto", "tooltip": "for drawn line art: how it is drawn"}),
                "binarize": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "0 = off; otherwise lines above this become 1, the rest 0"}),
                "cleanup": ("BOOLEAN", {"default": True, "tooltip": f"remove faint strokes "
                                                                    f"(<= {mn_lineart.CLEANUP_THRESHOLD}) as "
                                                                    "upstream does"}),
                "size": ("INT", {"default": 512, "min": 256, "max": 1024, "step": 64,
                                 "tooltip": "processing size: must equal the Reference Encode size when the "
                                            "prepared output feeds a sampler"}),
                "fit": (list(FIT_MODES), {"default": "letterbox"}),
                "output": (list(OUTPUTS), {"default": "black_on_white", "tooltip": "how the IMAGE output looks"}),
            },
            "optional": {"model": ("MANGANINJA_MODEL", {"tooltip": "needed for mode 'extract' (the annotator)"})},
        }

    RETURN_TYPES = ("IMAGE", "MANGANINJA_LINEART")
    RETURN_NAMES = ("lineart", "prepared")
    OUTPUT_TOOLTIPS = ("the line art at the input's size (to look at or save)",
                       "the line art prepared at the processing size: connect it to the Colorize Sampler's "
                       "prepared_lineart, so it is used exactly as extracted")
    FUNCTION = "extract"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Line art processed at `size` exactly as the sampler uses it, and a picture of it at the input size."

    def extract(self, image, mode, polarity, binarize, cleanup, size, fit, output, model=None):
        if mode == "extract" and model is None:
            raise ValueError("Extract Lineart: mode 'extract' needs the MangaNinja model (for its annotator); "
                             "connect Load MangaNinja, or use mode 'drawn' for existing line art")
        if model is not None:
            bridge.expect(model, MangaNinja, "Extract Lineart", "model", "Load MangaNinja")
        threshold = binarize if binarize > 0 else None
        prepared, pictures = [], []
        for frame in bridge.image_batch(image, "image"):
            if mode == "extract":
                art = model.extract_lineart(frame, size=size, fit=fit, cleanup=cleanup, binarize=threshold)
            else:
                art = mn_lineart.from_drawing(frame, size=size, fit=fit, polarity=polarity, cleanup=cleanup,
                                              binarize=threshold)
            prepared.append(art)
            picture = art.restored()
            pictures.append(ImageOps.invert(picture) if output == "black_on_white" else picture)
        return (bridge.to_image_tensor(pictures), prepared)
