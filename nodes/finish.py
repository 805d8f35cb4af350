"""Finish Page (full resolution) and Save Layers (PSD): the colour recomposed at the line art's own size, and the
layers written into ComfyUI's output folder. Each is one call into mn_core.finish / mn_core.layers."""

from __future__ import annotations

import os

from ..mn_core import finish as mn_finish
from ..mn_core import layers as mn_layers
from ..mn_core.choices import POLARITIES
from ..mn_core.finish import Finished
from . import bridge

try:
    import folder_paths
except ImportError:  # outside ComfyUI (the core tests import the pack's modules directly)
    folder_paths = None


def _frame(batch, k: int, frames: int, what: str):
    """Image k of an IMAGE batch holding one image (used for every frame) or one per frame."""
    images = bridge.image_batch(batch, what)
    if images.shape[0] not in (1, frames):
        raise ValueError(f"Finish Page: {what} has {images.shape[0]} images for {frames} coloured frames; give one "
                         f"image or one per frame")
    return images[min(k, images.shape[0] - 1)]


class FinishPage:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the coloured result (Colorize Sampler's image)"}),
                "lineart": ("IMAGE", {"tooltip": "the page's line art at FULL resolution (the output has its size)"}),
                "lineart_polarity": (list(POLARITIES), {"default": "auto"}),
                "flat": ("BOOLEAN", {"default": False,
                                     "tooltip": "flat colours: one colour per closed region of the line art"}),
                "close_gaps": ("INT", {"default": mn_finish.DEFAULT_GAP, "min": 0, "max": 256,
                                       "tooltip": "gaps in the lines up to this many page pixels are closed"}),
                "colour_size": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 64,
                                        "tooltip": "the processing size the colour was made at (its real "
                                                   "resolution; Reference Encode's size)"}),
                "prior_strength": ("FLOAT", {"default": mn_finish.DEFAULT_PRIOR_STRENGTH, "min": 0.0, "max": 1.0,
                                             "step": 0.05, "tooltip": "weight of the prior's a*b* (CIELAB)"}),
            },
            "optional": {
                "page": ("IMAGE", {"tooltip": "a grey page of the line art's size: its shading (L*) is kept"}),
                "prior": ("IMAGE", {"tooltip": "a rough colour image blended into the colour's a*b*"}),
            },
        }

    RETURN_TYPES = ("IMAGE", "IMAGE", "IMAGE", "MASK", "MANGANINJA_LAYERS")
    RETURN_NAMES = ("image", "colour", "lines", "line_alpha", "layers")
    OUTPUT_TOOLTIPS = ("the finished page at the line art's size", "the colour layer (flats when flat)",
                       "the page's lines, dark on white", "the lines' opacity", "all layers, for Save Layers (PSD)")
    FUNCTION = "finish"
    CATEGORY = "MangaNinja"
    DESCRIPTION = ("Recomposes the colour at the line art's own resolution: no colour across lines, original line "
                   "pixels kept, optional flat colours, CIELAB shading and colour prior, layers.")

    def finish(self, image, lineart, lineart_polarity, flat, close_gaps, colour_size, prior_strength, page=None,
               prior=None):
        import torch

        colours = bridge.image_batch(image, "image")
        n = colours.shape[0]
        if n == 0:
            raise ValueError("Finish Page: image is an empty batch; connect the coloured result (Colorize Sampler's "
                             "image)")
        progress = bridge.Progress(colours.shape[0])
        results = []
        for k in range(colours.shape[0]):
            results.append(mn_finish.finish_page(
                colours[k], _frame(lineart, k, n, "lineart"), polarity=lineart_polarity, flat=flat,
                close_gaps=close_gaps, colour_size=colour_size, prior_strength=prior_strength,
                keep_shading=_frame(page, k, n, "page") if page is not None else None,
                prior=_frame(prior, k, n, "prior") if prior is not None else None))
            progress.update(1)
        sizes = {r.image.size for r in results}
        if len(sizes) > 1:
            raise ValueError(f"Finish Page: the line arts differ in size ({sorted(sizes)}); an IMAGE batch needs "
                             f"one size")
        alpha = torch.stack([bridge.to_image_tensor([r.line_alpha()])[0, ..., 0] for r in results])
        return (bridge.to_image_tensor([r.image for r in results]),
                bridge.to_image_tensor([r.colour for r in results]),
                bridge.to_image_tensor([r.lines for r in results]), alpha, results)


class SaveLayers:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "layers": ("MANGANINJA_LAYERS",),
                "filename_prefix": ("STRING", {"default": "manganinja_page"}),
                "png_layers": ("BOOLEAN", {"default": True, "tooltip": "also save every layer as a PNG (lines "
                                                                       "with alpha)"}),
            },
        }

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "MangaNinja"
    DESCRIPTION = ("Saves a layered PSD (lines multiply over colour, page shading, the original page hidden) into "
                   "ComfyUI's output folder; opens in Photoshop, Krita, GIMP, Clip Studio. Needs psd-tools.")

    def save(self, layers, filename_prefix, png_layers):
        source = "Finish Page's `layers` output"
        for page in bridge.expect(layers, (list, tuple), "Save Layers (PSD)", "layers", source):
            bridge.expect(page, Finished, "Save Layers (PSD)", "layers", source)
        if not layers:
            raise ValueError(f"Save Layers (PSD): `layers` holds no page; connect {source}")
        mn_layers._psd_tools()  # one clear line when psd-tools is missing, before anything is written
        first = layers[0].image
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), first.width, first.height)
        shown, written = [], []
        for finished in layers:
            stem = f"{name}_{counter:05}_"
            written.append(mn_layers.write_psd(finished, os.path.join(folder, stem + ".psd")))
            if png_layers:
                written += mn_layers.write_png_layers(finished, folder, stem)
            finished.image.save(os.path.join(folder, stem + ".png"), compress_level=4)
            shown.append({"filename": stem + ".png", "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": shown, "text": [", ".join(os.path.basename(str(p)) for p in written)]}}
