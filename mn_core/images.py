"""Images in and out: conversion to PIL, the fit to the processing size (which also maps points), CLIP input.

Everything is converted to 8-bit PIL images first, because the official pipeline works on PIL images and its
numbers (bicubic resizes, the x/255*2-1 normalisation) are defined on them.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .choices import FIT_MODES  # noqa: F401 (re-exported)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageError(ValueError):
    """An input image cannot be used; the message says what was wrong."""


MAX_PAGE = (10_000, 14_000)            # px: the largest page accepted (either orientation)
MAX_PIXELS = MAX_PAGE[0] * MAX_PAGE[1]
log = logging.getLogger(__name__)


def open_image(source, *, what: str = "image") -> Image.Image:
    """An image file (a path, bytes or a binary file) decoded for :func:`to_pil`: its size checked from the header
    before anything is decoded (pages up to 10,000 x 14,000 px; larger ones are refused), its EXIF orientation
    applied, and for an animated file its first frame (with a warning)."""
    from PIL import ImageOps, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, with a message that says what to do
    try:
        img = Image.open(source)
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{what}: not a readable image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    w, h = img.size
    if w * h > MAX_PIXELS or max(w, h) > max(MAX_PAGE):
        raise ImageError(f"{what}: {w}x{h} px ({w * h / 1e6:.0f} MP) is larger than the largest page accepted, "
                         f"{MAX_PAGE[0]:,}x{MAX_PAGE[1]:,} px ({MAX_PIXELS / 1e6:.0f} MP); scale it down first")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        log.warning("%s: an animated image (%d frames); its first frame is used", what, frames)
        img.seek(0)
    try:
        img.load()
        oriented = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{what}: the file is damaged or truncated ({e})") from None
    return oriented if oriented is not None else img


def _to_8bit(img: Image.Image, what: str) -> Image.Image:
    """Any PIL mode -> L or RGB, 8 bits, values scaled (not clipped); transparency composited on white.

    1: black and white. I;16*: 16-bit grey (/257). I (32-bit integers): 16-bit data when its values exceed 255
    (what PNG and TIFF readers give for 16-bit grey), otherwise 8-bit values. F (floats): [0, 1] when its values
    stay within 1.5, otherwise [0, 255]. CMYK, YCbCr, LAB, HSV: PIL's conversion to RGB."""
    mode = img.mode
    if mode in ("RGB", "L"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size != arr.size:
            raise ImageError(f"{what}: contains NaN or infinite values")
        top = float(finite.max()) if finite.size else 0.0
        if mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        elif mode == "I":
            scale = 1.0 if top <= 255 else 255.0 / (65535.0 if top <= 65535 else top)
        else:
            scale = 255.0 if top <= 1.5 else 1.0
        return Image.fromarray((np.clip(arr * scale, 0, 255) + 0.5).astype(np.uint8), "L")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "P":
        palette_mode = img.palette.mode if img.palette is not None else "RGB"
        return img.convert("L" if palette_mode == "L" else "RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"{what}: images in PIL mode {mode} are not supported ({e}); save it as 8-bit RGB") from None


def to_pil(image, *, what: str = "image") -> Image.Image:
    """PIL / numpy / torch image -> 8-bit PIL image in mode RGB or L. RGBA/LA alpha is composited on white; every
    PIL mode is converted with its values scaled (16-bit, 32-bit and float grey included: :func:`_to_8bit`).

    numpy/torch: (H, W), (H, W, C) or a batch of one (1, H, W, C) with C in 1..4; uint8, or floats in [0, 1]
    (ComfyUI IMAGE tensors are float (B, H, W, C)).
    """
    if isinstance(image, Image.Image):
        img = image
    else:
        if isinstance(image, torch.Tensor):
            arr = image.detach().to("cpu")
            arr = arr.float().numpy() if arr.is_floating_point() else arr.numpy()
        elif isinstance(image, np.ndarray):
            arr = image
        else:
            raise ImageError(f"{what}: expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")
        if arr.ndim == 4:
            if arr.shape[0] != 1:
                raise ImageError(f"{what}: expected one image, got a batch of {arr.shape[0]}")
            arr = arr[0]
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
            raise ImageError(f"{what}: expected (H, W) or (H, W, C) with C in 1..4, got shape {tuple(arr.shape)}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ImageError(f"{what}: image is empty ({arr.shape[1]}x{arr.shape[0]})")
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise ImageError(f"{what}: contains NaN or infinite values")
            arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise ImageError(f"{what}: integer images must be uint8, got {arr.dtype}")
        img = Image.fromarray(np.ascontiguousarray(arr))  # L, LA, RGB or RGBA from the shape
    if img.width < 1 or img.height < 1:
        raise ImageError(f"{what}: image is empty")
    return _to_8bit(img, what)


def check_size(size: int) -> None:
    """The processing size: a square side the networks' depth can take (a multiple of 64)."""
    if not isinstance(size, int) or size < 64 or size % 64:
        raise ValueError(f"processing size must be a multiple of 64 (at least 64), got {size!r}")


@dataclass(frozen=True)
class Fit:
    """How an image of ``source_size`` (w, h) is brought to a ``size`` x ``size`` square, and back.

    ``stretch`` resizes to the square (the official behaviour); ``letterbox`` keeps the aspect ratio and pads.
    The same transform maps points, so a point on a feature of the input lands on that feature in the square.
    ``region`` (left, top, width, height) confines the image to a tile of the square (several references laid
    out in one square, see :func:`tile_regions`); by default the whole square.
    """

    mode: str
    source_size: tuple[int, int]
    size: int
    region: tuple[int, int, int, int] | None = None

    def __post_init__(self):
        if self.mode not in FIT_MODES:
            raise ValueError(f"fit must be one of {FIT_MODES}, got {self.mode!r}")

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, width, height) of the image content inside the square."""
        w, h = self.source_size
        rl, rt, rw, rh = self.region or (0, 0, self.size, self.size)
        if self.mode == "stretch":
            return rl, rt, rw, rh
        scale = min(rw / w, rh / h)
        cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
        return rl + (rw - cw) // 2, rt + (rh - ch) // 2, cw, ch

    def apply(self, image: Image.Image, fill=255) -> Image.Image:
        if image.size != self.source_size:
            raise ValueError(f"image is {image.size}, fit was made for {self.source_size}")
        left, top, cw, ch = self.box
        content = image if (cw, ch) == image.size else image.resize((cw, ch), Image.BICUBIC)
        if (cw, ch) == (self.size, self.size):
            return content.copy()
        canvas = Image.new(image.mode, (self.size, self.size), fill if image.mode == "L" else (fill,) * 3)
        canvas.paste(content, (left, top))
        return canvas

    def content_mask(self) -> torch.Tensor:
        """(1, 1, size, size) float mask: 1 on the image content, 0 on letterbox padding."""
        left, top, cw, ch = self.box
        mask = torch.zeros(1, 1, self.size, self.size)
        mask[..., top:top + ch, left:left + cw] = 1
        return mask

    def map_point(self, x: float, y: float) -> tuple[int, int]:
        """Pixel (x, y) of the source image -> (row, col) of the square. Pixel centres are mapped."""
        w, h = self.source_size
        left, top, cw, ch = self.box
        col = left + min(cw - 1, math.floor((math.floor(x) + 0.5) * cw / w))
        row = top + min(ch - 1, math.floor((math.floor(y) + 0.5) * ch / h))
        return row, col

    def restore(self, image: Image.Image) -> Image.Image:
        """The square's content, resized back to the source size."""
        left, top, cw, ch = self.box
        content = image if (cw, ch) == (self.size, self.size) else image.crop((left, top, left + cw, top + ch))
        return content if content.size == self.source_size else content.resize(self.source_size, Image.BICUBIC)


def tile_regions(count: int, size: int) -> list[tuple[int, int, int, int]]:
    """``count`` tiles of a ``size`` square, row by row in a grid of ceil(sqrt(count)) columns: (left, top, w, h)."""
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    xs = [round(i * size / cols) for i in range(cols + 1)]
    ys = [round(j * size / rows) for j in range(rows + 1)]
    return [(xs[k % cols], ys[k // cols], xs[k % cols + 1] - xs[k % cols], ys[k // cols + 1] - ys[k // cols])
            for k in range(count)]


def compose(images: list[Image.Image], fits: list[Fit], fill=255) -> Image.Image:
    """Several images, each through its own (tile) fit, in one square; one image is exactly ``fit.apply``."""
    if len(images) == 1:
        return fits[0].apply(images[0], fill=fill)
    size = fits[0].size
    canvas = Image.new("RGB", (size, size), (fill,) * 3)
    for image, fit in zip(images, fits):
        left, top, cw, ch = fit.box
        if image.size != fit.source_size:
            raise ValueError(f"image is {image.size}, fit was made for {fit.source_size}")
        canvas.paste(image if (cw, ch) == image.size else image.resize((cw, ch), Image.BICUBIC), (left, top))
    return canvas


def to_model_input(image: Image.Image) -> torch.Tensor:
    """RGB PIL -> (1, 3, H, W) float32 in [-1, 1], computed as the official code does (float64, then cast)."""
    arr = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    return torch.from_numpy(arr / 255.0 * 2.0 - 1.0).to(torch.float32)[None]


def to_uint8(decoded: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) decoded image in [-1, 1] -> uint8 (H, W, 3); truncation, as the official code does."""
    x = decoded[0].float().cpu().numpy()
    return (((x + 1.0) / 2.0) * 255).astype(np.uint8).transpose(1, 2, 0)


def clip_input(image: Image.Image, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """The default CLIPImageProcessor of transformers 4.x, done in PIL: shortest side to ``size`` (bicubic),
    centre crop, /255, normalise. (transformers 5's torchvision processor gives different numbers.)"""
    image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    image = image.crop((left, top, left + size, top + size))
    arr = np.asarray(image).astype(np.float32) / 255.0
    arr = (arr - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]
