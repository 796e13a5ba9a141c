"""Attention Mechanism Module (AMM) of MU-Net, applied to the encoder skips.

Y. Zhang, H. Lu, G. Ma, H. Zhao, D. Xie, S. Geng, W. Tian, K. L.-K. Sian, "MU-Net: Embedding
MixFormer into Unet to Extract Water Bodies from Remote Sensing Images", Remote Sensing
15(14):3559, 2023.

AMM(x) = spatial(x) * x + channel(x) * x, where

- spatial: depthwise 3x3 -> 1x1 to C/16 -> BN-ReLU -> 1x1 to 1 -> sigmoid (one weight per
  pixel);
- channel: global average pool -> 1x1 to C/16 -> ReLU -> 1x1 to C -> sigmoid (one weight per
  channel, squeeze-and-excitation style).

C/16 is at least 1 so tiny widths work.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionMechanismModule(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): the sum of the spatially and channel-reweighted input."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
            nn.Sigmoid(),
        )
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.spatial(x) + x * self.channel(x)
