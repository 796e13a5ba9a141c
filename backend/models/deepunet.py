"""DeepUNet: a deep U-Net with residual "plus" connections inside each block.

R. Li, W. Liu, L. Yang, S. Sun, W. Hu, F. Zhang, W. Li, "DeepUNet: A Deep Fully
Convolutional Network for Pixel-Level Sea-Land Segmentation", IEEE JSTARS 11(11):3954-3962,
2018 (reference [6] of the reproduced paper). Widths from Table I of Gruba & Ciecholewski:
half [4, (16, 32)x7, (32, 16)x7, 32], base [4, (32, 64)x7, (64, 32)x7, 32].

Structure (f = 32 base, 16 half; every conv is 3x3, padding 1):

- stem: conv in_channels -> f (Table I's input "4").
- 7 DownBlocks (inputs f, 2f): conv f -> 2f, ReLU, conv 2f -> f, plus the block input, ReLU;
  the result is the skip; then 2x2 max-pool. A 256 input reaches 2 x 2.
- 7 UpBlocks (inputs 2f, f): 2x nearest upsampling u of the input, concat(skip, u) (2f),
  conv 2f -> f, ReLU, conv f -> f, plus u, ReLU.
- conv f -> 32, ReLU, then the 1x1 head(s) on 32 channels (Table I's last "32").

Design decisions:

- ``size_multiple = 128`` (seven poolings).
- BatchNorm after each conv (not in the 2018 block diagram) for stable training at the
  paper's lr 1e-4 with a 31-conv-deep network; the ReLU after the plus follows ResNet.
- The UpBlock's first conv goes 2f -> f as Table I's (2f, f) input pairs say (the DeepUNet
  paper's block keeps 2f for one more conv); the second conv is 3x3 as in the authors' code
  (the paper says 2x2).
- The final conv has 32 channels for widths >= 0.5 (Table I gives 32 for both) and
  ``32 * 2 * width`` below, so tiny test models stay tiny.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import ConvBNReLU, OutputHeads, check_input_size, scale_channels

BASE_F = 32
DEPTH = 7
FINAL_CHANNELS = 32


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class DownBlock(nn.Module):
    """(B, f, H, W) -> (skip (B, f, H, W), pooled (B, f, H/2, W/2))."""

    def __init__(self, f: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(f, 2 * f)
        self.conv2 = _conv_bn(2 * f, f)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = F.relu(self.conv2(self.conv1(x)) + x)
        return skip, self.pool(skip)


class UpBlock(nn.Module):
    """x (B, f, H/2, W/2), skip (B, f, H, W) -> (B, f, H, W)."""

    def __init__(self, f: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(2 * f, f)
        self.conv2 = _conv_bn(f, f)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        u = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.conv2(self.conv1(torch.cat([skip, u], dim=1))) + u)


class DeepUNet(nn.Module):
    """DeepUNet; (B, in_channels, H, W) -> logits (B, num_classes, H, W) (tuple if heads=2)."""

    size_multiple = 2**DEPTH

    def __init__(
        self,
        f: int = BASE_F,
        final_channels: int = FINAL_CHANNELS,
        in_channels: int = 4,
        num_classes: int = 2,
        heads: int = 1,
    ) -> None:
        super().__init__()
        self.channels = [f, 2 * f, final_channels]
        self.stem = ConvBNReLU(in_channels, f)
        self.down = nn.ModuleList(DownBlock(f) for _ in range(DEPTH))
        self.up = nn.ModuleList(UpBlock(f) for _ in range(DEPTH))
        self.final = ConvBNReLU(f, final_channels)
        self.head = OutputHeads(final_channels, num_classes, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input_size(x, self.size_multiple, "deepunet")
        x = self.stem(x)
        skips = []
        for block in self.down:
            skip, x = block(x)
            skips.append(skip)
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(self.final(x))


def deepunet(
    *, width: float = 1.0, in_channels: int = 4, num_classes: int = 2, heads: int = 1
) -> DeepUNet:
    """DeepUNet at channel multiplier ``width`` (1.0: f = 32, 0.5: f = 16)."""
    f = scale_channels(BASE_F, width)
    final = scale_channels(FINAL_CHANNELS, min(1.0, 2.0 * width))
    return DeepUNet(f, final, in_channels=in_channels, num_classes=num_classes, heads=heads)
