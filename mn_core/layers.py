"""A finished page as layers: a layered PSD (psd-tools, the optional extra ``psd``) and PNG layers with alpha.

PSD, bottom to top (see :meth:`mn_core.finish.Finished.layers`): "Original page" (hidden), "Colour" or "Flat
colours", "Colour with shading (model)" (flat pages only, hidden), "Shading (page tones)" (luminosity; with
keep_shading), "Lines" (multiply). The file's merged image is the flattened result. GIMP and Krita open the layers.

PNG layers, next to each other as ``<stem>_<layer>.png``: ``lines`` (black, alpha = the line's darkness: over the
colour it gives the same multiply), ``colour``/``flats``, ``detail``, ``shading``, ``page``.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .finish import Finished

PNG_NAMES = {"Original page": "page", "Colour": "colour", "Flat colours": "flats",
             "Colour with shading (model)": "detail", "Shading (page tones)": "shading", "Lines": "lines"}


def _psd_tools():
    try:
        import psd_tools
        from psd_tools.constants import BlendMode
    except ImportError:
        raise ImportError("writing a layered PSD needs psd-tools: pip install psd-tools "
                          "(or pip install \"comfyui-manganinja[psd]\")") from None
    return psd_tools.PSDImage, BlendMode


def _replace(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def write_psd(finished: Finished, path: str | Path) -> Path:
    """Write the layered PSD (atomically: a temporary file renamed into place)."""
    PSDImage, BlendMode = _psd_tools()
    modes = {"normal": BlendMode.NORMAL, "multiply": BlendMode.MULTIPLY, "luminosity": BlendMode.LUMINOSITY}
    path = Path(path)
    if path.suffix.lower() != ".psd":
        raise ValueError(f"layers file {path}: use the extension .psd")
    psd = PSDImage.frompil(finished.image.convert("RGB"))  # the merged image: what a viewer shows
    for name, image, mode, visible in finished.layers():
        layer = psd.create_pixel_layer(image.convert("RGB"), name=name, blend_mode=modes[mode])
        layer.visible = visible
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as f:
            # the document as built, its merged image our flattened result: PSDImage.save() would first re-render
            # the merged image from the layers in Python (about 10 s and several GB for a 4000x6000 page)
            psd._record.write(f)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _replace(tmp, path)


def write_png_layers(finished: Finished, folder: str | Path, stem: str) -> list[Path]:
    """Write every layer as ``folder/<stem>_<name>.png``; the lines as black with alpha."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image, _mode, _visible in finished.layers():
        short = PNG_NAMES[name]
        if short == "lines":
            black = Image.new("L", finished.lines.size, 0)
            image = Image.merge("LA", (black, finished.line_alpha()))
        elif short == "shading":
            image = finished.shading
        path = folder / f"{stem}_{short}.png"
        tmp = path.with_name(path.name + ".partial.png")
        image.save(tmp)
        written.append(_replace(tmp, path))
    return written
