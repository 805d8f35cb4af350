"""PointNet: turns a point map into one token grid per UNet level.

A point map holds the raw pair ids (0 = no point, k = the k-th matched pair) as floats, with no normalisation.
Each stage is a stack of stride-2 3x3 convolutions followed by SiLU; every stage's output is flattened row-major
into tokens, the same order as the UNet's transformer blocks use, so stage k lines up with UNet level k.
"""

from __future__ import annotations

import re

import torch
from torch import nn


class PointNet(nn.Module):
    def __init__(self, stages: list[tuple[int, int]], in_channels: int = 1):
        """``stages``: (out_channels, number of stride-2 convolutions) per stage."""
        super().__init__()
        self.stages = [tuple(s) for s in stages]
        self.blocks = nn.ModuleList()
        channels = in_channels
        for out_channels, n_convs in stages:
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers += [nn.Conv2d(channels, out_channels, kernel_size=3, stride=2, padding=1), nn.SiLU()]
                channels = out_channels
            self.blocks.append(nn.Sequential(*layers))

    def forward(self, point_map: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, H, W) point map -> [(B, H_k*W_k, C_k) for each stage]."""
        tokens = []
        x = point_map
        for block in self.blocks:
            x = block(x)
            b, c, h, w = x.shape
            tokens.append(x.reshape(b, c, h * w).transpose(1, 2))
        return tokens

    @staticmethod
    def stages_from_shapes(shapes: dict[str, tuple[int, ...]]) -> list[tuple[int, int]]:
        """Read the stage layout from a checkpoint's key shapes (the official file has no config)."""
        convs: dict[int, dict[int, tuple[int, ...]]] = {}
        for key, shape in shapes.items():
            m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.weight", key)
            if m:
                convs.setdefault(int(m.group(1)), {})[int(m.group(2))] = shape
        if not convs or sorted(convs) != list(range(len(convs))):
            raise ValueError("no 'blocks.<stage>.<layer>.weight' convolutions found")
        stages = []
        for i in range(len(convs)):
            layer_ids = sorted(convs[i])
            if layer_ids != list(range(0, 2 * len(layer_ids), 2)):
                raise ValueError(f"stage {i} has convolutions at unexpected positions {layer_ids}")
            out = {convs[i][j][0] for j in layer_ids}
            if len(out) != 1:
                raise ValueError(f"stage {i} changes width inside the stage: {sorted(out)}")
            stages.append((out.pop(), len(layer_ids)))
        return stages
