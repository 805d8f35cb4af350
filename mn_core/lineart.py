"""Line art: preparing it for the ControlNet, with no network involved.

MangaNinja's ControlNet reads white lines on black in [-1, 1]: background -1, lines towards +1. Line art comes
either from the annotator (:mod:`mn_core.annotator`, run by :meth:`MangaNinja.extract_lineart`) or from a drawing
(:func:`from_drawing`); both are fitted to the processing square once, and faint strokes (values <= 0.24) are
removed, as the official code does before conditioning. The result, a :class:`Lineart`, goes to the sampler as it
is: nothing resamples or cleans it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .choices import POLARITIES
from .images import Fit, check_size, to_pil

CLEANUP_THRESHOLD = 0.24


@dataclass
class Lineart:
    """Line art at the processing size: lines ~1 on 0, after the 0.24 cleanup."""

    values: torch.Tensor  # (1, 1, N, N) float32
    fit: Fit

    @property
    def size(self) -> int:
        return self.fit.size

    def image(self) -> Image.Image:
        """White-on-black 8-bit image at the processing size (as the official code saves it)."""
        return Image.fromarray(to_uint8_image(self.values))

    def restored(self) -> Image.Image:
        """The same, brought back to the source image's size."""
        return self.fit.restore(self.image())


@torch.inference_mode()
def from_drawing(image, *, size: int = 512, fit: str = "letterbox", polarity: str = "auto", cleanup: bool = True,
                 binarize: float | None = None) -> Lineart:
    """Line art from a drawing: white on black is used as is (as upstream), black on white is inverted.

    ``polarity``: "auto" (dark background -> white on black), "white_on_black" or "black_on_white".
    """
    check_size(size)
    pil = to_pil(image, what="line art")
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    if polarity == "auto":
        invert = is_dark_on_light(np.asarray(pil.convert("L")))
    elif polarity in POLARITIES:
        invert = polarity == "black_on_white"
    else:
        raise ValueError(f"polarity must be {', '.join(POLARITIES)}, got {polarity!r}")
    fitting = Fit(fit, pil.size, size)
    gray = np.asarray(fitting.apply(pil, fill=255 if invert else 0).convert("L"))
    return finish(from_gray(gray, invert), fitting, cleanup=cleanup, binarize=binarize)


def finish(values: torch.Tensor, fitting: Fit, *, cleanup: bool = True, binarize: float | None = None) -> Lineart:
    """Fitted raw line art -> :class:`Lineart`: letterbox bars blanked, optional binarisation, the 0.24 cleanup."""
    values = values.float() * fitting.content_mask() if fitting.mode == "letterbox" else values.float()
    if binarize is not None:
        values = binarize_values(values, binarize)
    if cleanup:
        values = remove_faint(values)
    return Lineart(values=values, fit=fitting)


def remove_faint(lineart: torch.Tensor, threshold: float = CLEANUP_THRESHOLD) -> torch.Tensor:
    """Remove faint strokes: values <= threshold become 0; others are kept as they are."""
    return torch.where(lineart <= threshold, torch.zeros_like(lineart), lineart)


def binarize_values(lineart: torch.Tensor, threshold: float) -> torch.Tensor:
    return (lineart > threshold).to(lineart.dtype)


def to_condition(lineart: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) line art in [0, 1] -> (B, 3, H, W) ControlNet condition in [-1, 1]."""
    return lineart.repeat(1, 3, 1, 1) * 2 - 1.0


def is_dark_on_light(gray: np.ndarray) -> bool:
    """Whether a line drawing is dark lines on a light background (most of the page is background)."""
    return float(np.median(gray)) > 127.5


def from_gray(gray: np.ndarray, invert: bool) -> torch.Tensor:
    """uint8 (H, W) luma -> (1, 1, H, W) float32 line art in [0, 1], lines high.

    White-on-black input is used as it is (exactly as the official ``is_lineart`` path computes it).
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError("expected a uint8 (H, W) grey image")
    if invert:
        gray = 255 - gray
    return torch.from_numpy((gray / 255.0).astype(np.float32))[None, None]


def to_uint8_image(lineart: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W) or (H, W) line art in [0, 1] -> uint8 (H, W), truncated as the official code saves it."""
    cond = lineart.reshape(lineart.shape[-2:]).float().cpu().numpy() * 2 - 1.0
    return ((cond + 1.0) / 2 * 255).astype(np.uint8)
