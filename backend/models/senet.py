"""SeNet: structured edge network for sea-land segmentation.

D. Cheng, G. Meng, S. Xiang, C. Pan, "SeNet: Structured Edge Network for Sea-Land
Segmentation", IEEE Geoscience and Remote Sensing Letters 14(2):247-251, 2017 (reference [5]
of the reproduced paper). No public code exists; this is a reconstruction from the paper's
description (a small encoder-decoder with a shared trunk, a segmentation head and a structured
edge head) and Table I of Gruba & Ciecholewski, whose half/base channel lists of successive
layer inputs are [4, 16, 32x2, 64x7, 32x2, 16x2] / [4, 32, 64x2, 128x7, 64x2, 32x2].

Layout at half width (base doubles every count); each layer is listed with its Table I
input width:

- 1/1: c1 conv 4 -> 16 (input 4) -> skip s1; max-pool
- 1/2: c2 conv 16 -> 32 (16), c3 conv 32 -> 32 (32) -> skip s2; max-pool
- 1/4: c4 conv 32 -> 64 (32), c5 conv 64 -> 64 (64) -> skip s4; max-pool
- 1/8: c6, c7, c8 conv 64 -> 64 (64 x 3)
- 1/4: upsample + s4; c9, c10 conv 64 -> 64, c11 conv 64 -> 32 (64 x 3; c5..c11 = 64 x 7)
- 1/2: upsample + s2; c12 conv 32 -> 32, c13 conv 32 -> 16 (32 x 2)
- 1/1: upsample + s1; c14 conv 16 -> 16 (16), segmentation head 1x1 16 -> 2 (16)

Design decisions:

- Three 2x2 max-pools (1/1, 1/2, 1/4, 1/8), so ``size_multiple = 8``.
- Every conv is 3x3, padding 1, BatchNorm, ReLU.
- Upsampling is bilinear (parameter-free, so no layers beyond Table I's list) and skips are
  *added* (not concatenated) to keep each layer's input width exactly as in Table I.
- The segmentation head is a 1x1 conv on c14 (Table I's last "16").
- ``heads == 2`` adds the structured edge branch (SeNet's second head): the c13 features
  (1/2, upsampled) and c14 features (1/1) are concatenated, fused by a 3x3 ConvBNReLU and
  classified by a 1x1 conv into ``num_classes`` edge-aware logits; the second loss term (e.g.
  L_Edge) is applied to it. With ``heads == 1`` the branch is not built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import ConvBNReLU, check_input_size, scale_channels

BASE_CHANNELS = (32, 64, 128)
"""SeNet base widths at 1/1, 1/2 and 1/4-1/8 (half: 16, 32, 64)."""


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class EdgeBranch(nn.Module):
    """Structured edge head: [up(f_half) ; f_full] -> ConvBNReLU 3x3 -> 1x1 -> logits.

    f_half (B, C, H/2, W/2), f_full (B, C, H, W) -> (B, num_classes, H, W).
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(2 * channels, channels)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, f_half: torch.Tensor, f_full: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fuse(torch.cat([_up(f_half, f_full), f_full], dim=1)))


class SeNet(nn.Module):
    """SeNet trunk + segmentation head (+ edge branch when ``heads == 2``).

    (B, in_channels, H, W) -> logits (B, num_classes, H, W), or the tuple
    (segmentation logits, edge logits) when ``heads == 2``.
    """

    size_multiple = 8

    def __init__(
        self,
        channels: tuple[int, int, int] = BASE_CHANNELS,
        in_channels: int = 4,
        num_classes: int = 2,
        heads: int = 1,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.channels = list(channels)
        self.pool = nn.MaxPool2d(2)
        self.enc1 = ConvBNReLU(in_channels, c1)  # 1/1
        self.enc2 = nn.Sequential(ConvBNReLU(c1, c2), ConvBNReLU(c2, c2))  # 1/2
        self.enc4 = nn.Sequential(ConvBNReLU(c2, c3), ConvBNReLU(c3, c3))  # 1/4
        self.bottom = nn.Sequential(*(ConvBNReLU(c3, c3) for _ in range(3)))  # 1/8
        self.dec4 = nn.Sequential(ConvBNReLU(c3, c3), ConvBNReLU(c3, c3), ConvBNReLU(c3, c2))
        self.dec2 = nn.Sequential(ConvBNReLU(c2, c2), ConvBNReLU(c2, c1))
        self.dec1 = ConvBNReLU(c1, c1)
        self.seg_head = nn.Conv2d(c1, num_classes, 1)
        self.edge_head = EdgeBranch(c1, num_classes) if heads == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        check_input_size(x, self.size_multiple, "senet")
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        s4 = self.enc4(self.pool(s2))
        y = self.bottom(self.pool(s4))
        y = self.dec4(_up(y, s4) + s4)
        f_half = self.dec2(_up(y, s2) + s2)
        f_full = self.dec1(_up(f_half, s1) + s1)
        seg = self.seg_head(f_full)
        if self.edge_head is None:
            return seg
        return seg, self.edge_head(f_half, f_full)


def senet(
    *, width: float = 1.0, in_channels: int = 4, num_classes: int = 2, heads: int = 1
) -> SeNet:
    """SeNet at channel multiplier ``width`` (1.0: 32/64/128, 0.5: 16/32/64 as in Table I)."""
    c1, c2, c3 = (scale_channels(c, width) for c in BASE_CHANNELS)
    return SeNet((c1, c2, c3), in_channels=in_channels, num_classes=num_classes, heads=heads)
