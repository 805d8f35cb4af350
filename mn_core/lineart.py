"""Line art: the informative-drawings extractor (``sk_model.pth``) and the ControlNet condition.

MangaNinja's ControlNet reads white lines on black in [-1, 1]: background -1, lines towards +1. Line art is
produced either by the extractor (``1 - G(image)``) or taken from a drawing, then faint strokes (values <= 0.24)
are removed, as the official code does before conditioning.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

CLEANUP_THRESHOLD = 0.24


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class LineartGenerator(nn.Module):
    """The informative-drawings generator: 7x7 stem, two stride-2 downsamplings, residual blocks, two
    transposed-conv upsamplings, 7x7 head with a sigmoid. Instance norms have no parameters."""

    def __init__(self, in_channels=3, out_channels=1, widths=(64, 128, 256), n_residual_blocks=3):
        super().__init__()
        w0, w1, w2 = widths
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, w0, 7), nn.InstanceNorm2d(w0),
                                    nn.ReLU(inplace=True))
        self.model1 = nn.Sequential(nn.Conv2d(w0, w1, 3, stride=2, padding=1), nn.InstanceNorm2d(w1),
                                    nn.ReLU(inplace=True),
                                    nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.InstanceNorm2d(w2),
                                    nn.ReLU(inplace=True))
        self.model2 = nn.Sequential(*[_ResidualBlock(w2) for _ in range(n_residual_blocks)])
        self.model3 = nn.Sequential(nn.ConvTranspose2d(w2, w1, 3, stride=2, padding=1, output_padding=1),
                                    nn.InstanceNorm2d(w1), nn.ReLU(inplace=True),
                                    nn.ConvTranspose2d(w1, w0, 3, stride=2, padding=1, output_padding=1),
                                    nn.InstanceNorm2d(w0), nn.ReLU(inplace=True))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w0, out_channels, 7), nn.Sigmoid())

    def forward(self, x):
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))

    @staticmethod
    def config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict:
        try:
            stem = shapes["model0.1.weight"]
            down1 = shapes["model1.0.weight"]
            down2 = shapes["model1.3.weight"]
            head = shapes["model4.1.weight"]
        except KeyError as e:
            raise ValueError(f"not an informative-drawings generator: key {e} is missing") from None
        blocks = {int(m.group(1)) for k in shapes if (m := re.fullmatch(r"model2\.(\d+)\.conv_block\.1\.weight", k))}
        return dict(in_channels=stem[1], out_channels=head[0], widths=(stem[0], down1[0], down2[0]),
                    n_residual_blocks=len(blocks))


def extract(generator: LineartGenerator, image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) image in [-1, 1] -> (B, 1, H, W) line art, lines ~1 on background ~0 (before cleanup).

    Computed in float32 whatever the pipeline precision: the 0.24 cleanup threshold is sensitive to small errors.
    """
    p = next(generator.parameters())
    x = image.to(device=p.device, dtype=torch.float32)
    x = (x - (-1.0)) / 2.0
    return 1.0 - generator(x.to(p.dtype)).float()


def cleanup(lineart: torch.Tensor, threshold: float = CLEANUP_THRESHOLD) -> torch.Tensor:
    """Remove faint strokes: values <= threshold become 0; others are kept as they are."""
    return torch.where(lineart <= threshold, torch.zeros_like(lineart), lineart)


def binarize(lineart: torch.Tensor, threshold: float) -> torch.Tensor:
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
