"""U-Net on an EfficientNet-Lite0 encoder: the ImageNet-pretrained water network.

Encoder -> decoder -> head, as in segmentation-models-pytorch's ``Unet`` (P. Iakubovskii,
2019; U-Net: Ronneberger et al., MICCAI 2015): the encoder
(:class:`~backend.models.efficientnet_lite.EfficientNetLiteEncoder`) gives features at strides
2, 4, 8, 16 and 32; each decoder stage upsamples by 2 (nearest), concatenates the encoder
feature of that stride and applies two 3x3 ConvBNReLU; a last stage brings stride 2 to full
resolution without a skip; a 1x1 head gives the logits.

- ``width`` scales the decoder only: "base" is smp's (256, 128, 64, 32, 16), "half" (the
  bundled RGB model) is half of it. The encoder is always Lite0 (3.4 M parameters without its
  1280-channel head, 3.8 M with it): its shape is fixed by the ImageNet weights.
- ``size_multiple`` is 32 (five stride-2 steps).
- Weights start random; :func:`~backend.models.efficientnet_lite.load_imagenet_weights`
  (``model.encoder``) puts the ImageNet ones in, which training does (scripts/train_rgb.py).
- Inputs: 8-bit RGB scaled ``(x - 127) / 128`` for the pretrained weights (a checkpoint stores
  it as scale 1/255, mean 127/255, std 128/255).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from backend.models.blocks import ConvBNReLU, OutputHeads, check_input_size, scale_channels
from backend.models.efficientnet_lite import EfficientNetLiteEncoder

DECODER_CHANNELS = (256, 128, 64, 32, 16)


class DecoderStage(nn.Module):
    """x2 nearest upsampling, concat with the skip (if any), two 3x3 ConvBNReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Cin, H/2, W/2), skip (B, Cskip, H, W) or None -> (B, Cout, H, W)."""
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """Features at strides 2..32 (deepest last) -> (B, channels[-1], H, W)."""

    def __init__(self, encoder_channels: list[int], channels: tuple[int, ...]) -> None:
        super().__init__()
        skips = list(encoder_channels[-2::-1]) + [0]  # strides 16, 8, 4, 2, then none
        ins = [encoder_channels[-1], *channels[:-1]]
        self.stages = nn.ModuleList(
            DecoderStage(i, s, o) for i, s, o in zip(ins, skips, channels, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, skips = features[-1], features[-2::-1]
        for k, stage in enumerate(self.stages):
            x = stage(x, skips[k] if k < len(skips) else None)
        return x


class Lite0UNet(nn.Module):
    """(B, in_channels, H, W) -> logits (B, num_classes, H, W) (a tuple of two when heads=2)."""

    size_multiple = 32

    def __init__(
        self,
        decoder_channels: tuple[int, ...] = DECODER_CHANNELS,
        in_channels: int = 3,
        num_classes: int = 2,
        heads: int = 1,
    ) -> None:
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(in_channels)
        self.decoder = UNetDecoder(self.encoder.channels, decoder_channels)
        self.head = OutputHeads(decoder_channels[-1], num_classes, heads)
        self.channels = list(decoder_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_input_size(x, self.size_multiple, "lite0_unet")
        return self.head(self.decoder(self.encoder(x)))


def lite0_unet(
    *, width: float = 1.0, in_channels: int = 3, num_classes: int = 2, heads: int = 1
) -> Lite0UNet:
    """U-Net on EfficientNet-Lite0 with decoder channels (256, 128, 64, 32, 16) x ``width``."""
    channels = tuple(scale_channels(c, width) for c in DECODER_CHANNELS)
    return Lite0UNet(channels, in_channels=in_channels, num_classes=num_classes, heads=heads)
