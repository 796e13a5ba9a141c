"""Plain U-Net: the baseline the paper's models must beat.

O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015, pp. 234-241 (reference [14] of the reproduced paper). Scarpetta et
al. (Sensors 24(17):5827, 2024) reached IoU 96.7 % on SNOWED with a U-Net.

Design decisions:

- Channels [64, 128, 256, 512, 1024] at 1/1 .. 1/16 (base), [32, ..., 512] (half); four 2x2
  max-pools, so ``size_multiple = 16``.
- Each conv is 3x3 with padding 1 followed by BatchNorm and ReLU (the 2015 paper used
  unpadded convs and cropping; padding keeps output size = input size, and BN was not yet
  common in 2015).
- Upsampling is a learnt 2x2 transposed conv that halves the channels, as in the original
  ("up-conv 2x2"), then concatenation with the skip and a double conv.
"""

from __future__ import annotations

import torch
from torch import nn

from backend.models.blocks import DoubleConv, OutputHeads, check_input_size, scale_channels

BASE_CHANNELS = (64, 128, 256, 512, 1024)


class UpStage(nn.Module):
    """Transposed conv 2x2 (Cin -> Cskip), concat with the skip, double conv -> Cskip."""

    def __init__(self, in_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * skip_channels, skip_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, Cin, H/2, W/2), skip (B, Cskip, H, W) -> (B, Cskip, H, W)."""
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net with 4 poolings; (B, in_channels, H, W) -> logits (B, num_classes, H, W).

    Returns a tuple of ``heads`` logits tensors when ``heads == 2``.
    """

    size_multiple = 16

    def __init__(
        self,
        channels: tuple[int, ...] = BASE_CHANNELS,
        in_channels: int = 4,
        num_classes: int = 2,
        heads: int = 1,
    ) -> None:
        super().__init__()
        self.channels = list(channels)
        self.stem = DoubleConv(in_channels, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out))
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )
        self.up = nn.ModuleList(
            UpStage(c_in, c_skip)
            for c_in, c_skip in zip(channels[:0:-1], channels[-2::-1], strict=True)
        )
        self.head = OutputHeads(channels[0], num_classes, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input_size(x, self.size_multiple, "unet")
        x = self.stem(x)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for stage in self.up:
            x = stage(x, skips.pop())
        return self.head(x)


def unet(*, width: float = 1.0, in_channels: int = 4, num_classes: int = 2, heads: int = 1) -> UNet:
    """U-Net at channel multiplier ``width`` (1.0: 64..1024, 0.5: 32..512)."""
    channels = tuple(scale_channels(c, width) for c in BASE_CHANNELS)
    return UNet(channels, in_channels=in_channels, num_classes=num_classes, heads=heads)
