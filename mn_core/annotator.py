"""The line-art annotator: the informative-drawings generator (``sk_model.pth``) that MangaNinja uses to extract
line art from a colour or grey image (``1 - G(image)``: lines towards 1 on a background near 0)."""

from __future__ import annotations

import re

import torch
from torch import nn


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
