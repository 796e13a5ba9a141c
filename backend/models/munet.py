"""MU-Net: a U-Net with MixFormer blocks in its deep stages and attention on its skips.

Y. Zhang, H. Lu, G. Ma, H. Zhao, D. Xie, S. Geng, W. Tian, K. L.-K. Sian, "MU-Net: Embedding
MixFormer into Unet to Extract Water Bodies from Remote Sensing Images", Remote Sensing
15(14):3559, 2023 (reference [12] of the reproduced paper). Widths from Table I of Gruba &
Ciecholewski: half [4, 32, 64, 128, 256, 512, 256, 128, 64, 32], base
[4, 64, 128, 256, 512, 1024, 512, 256, 128, 64] (the MU-Net authors' code stops at 512; the
reproduced paper used 1024 at the bottleneck of its base model).

Structure (channels c0..c4 at 1/1..1/16):

- encoder: double conv (conv3x3-BN-ReLU x2) in -> c0 at 1/1; max-pool + double conv at 1/2
  (c1) and 1/4 (c2); at 1/8 (c3) and 1/16 (c4) max-pool, conv3x3-BN-ReLU, 2 MixFormer blocks;
- AMM (:mod:`backend.models.amm`) on the skips at 1/2, 1/4, 1/8 (the 1/1 skip is plain);
- decoder: bilinear x2 upsampling, concat with the skip; at 1/8 conv3x3-BN-ReLU to c3 then 2
  MixFormer blocks; at 1/4, 1/2, 1/1 double convs to c2, c1, c0; 1x1 head(s).

Design decisions:

- ``size_multiple = 16`` (four poolings). MixFormer blocks use window 8 and 8 heads; the 1/8
  and 1/16 maps of a 256 tile (32 and 16 px) tile exactly into windows, other sizes (e.g.
  80 x 80 -> 10 and 5 px) are padded inside the block and cropped back.
- Float widths round every stage to a multiple of 8 (at least 8) so C/2 splits into heads.
- ``heads == 2`` adds a second 1x1 head on the last decoder features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.amm import AttentionMechanismModule
from backend.models.blocks import (
    ConvBNReLU,
    DoubleConv,
    OutputHeads,
    check_input_size,
    scale_channels,
)
from backend.models.mixformer import MixFormerBlock

BASE_CHANNELS = (64, 128, 256, 512, 1024)
WINDOW = 8
ATTENTION_HEADS = 8


class MixStage(nn.Sequential):
    """conv3x3-BN-ReLU Cin -> C, then ``depth`` MixFormer blocks; (B, Cin, H, W) -> (B, C, H, W)."""

    def __init__(self, in_channels: int, channels: int, depth: int = 2) -> None:
        super().__init__(
            ConvBNReLU(in_channels, channels),
            *(MixFormerBlock(channels, WINDOW, ATTENTION_HEADS) for _ in range(depth)),
        )


def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([skip, x], dim=1)


class MUNet(nn.Module):
    """MU-Net; (B, in_channels, H, W) -> logits (B, num_classes, H, W) (tuple if heads=2)."""

    size_multiple = 16

    def __init__(
        self,
        channels: tuple[int, ...] = BASE_CHANNELS,
        in_channels: int = 4,
        num_classes: int = 2,
        heads: int = 1,
    ) -> None:
        super().__init__()
        c0, c1, c2, c3, c4 = channels
        self.channels = list(channels)
        self.pool = nn.MaxPool2d(2)
        self.enc0 = DoubleConv(in_channels, c0)
        self.enc1 = DoubleConv(c0, c1)
        self.enc2 = DoubleConv(c1, c2)
        self.enc3 = MixStage(c2, c3)
        self.enc4 = MixStage(c3, c4)
        self.amm1 = AttentionMechanismModule(c1)
        self.amm2 = AttentionMechanismModule(c2)
        self.amm3 = AttentionMechanismModule(c3)
        self.dec3 = MixStage(c4 + c3, c3)
        self.dec2 = DoubleConv(c3 + c2, c2)
        self.dec1 = DoubleConv(c2 + c1, c1)
        self.dec0 = DoubleConv(c1 + c0, c0)
        self.head = OutputHeads(c0, num_classes, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input_size(x, self.size_multiple, "munet")
        s0 = self.enc0(x)
        s1 = self.enc1(self.pool(s0))
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3(self.pool(s2))
        y = self.enc4(self.pool(s3))
        y = self.dec3(_up_cat(y, self.amm3(s3)))
        y = self.dec2(_up_cat(y, self.amm2(s2)))
        y = self.dec1(_up_cat(y, self.amm1(s1)))
        y = self.dec0(_up_cat(y, s0))
        return self.head(y)


def munet(
    *, width: float = 1.0, in_channels: int = 4, num_classes: int = 2, heads: int = 1
) -> MUNet:
    """MU-Net at channel multiplier ``width`` (1.0: 64..1024, 0.5: 32..512)."""
    channels = tuple(scale_channels(c, width, minimum=8, divisor=8) for c in BASE_CHANNELS)
    return MUNet(channels, in_channels=in_channels, num_classes=num_classes, heads=heads)
