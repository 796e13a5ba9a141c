"""Building blocks shared by the model zoo: width scaling, conv units, output heads, padding.

Every model in :mod:`backend.models` is built from Table I of Gruba & Ciecholewski (the paper
this project reproduces) at ``width=1.0`` ("base"); other widths multiply every channel count
(``scale_channels``). Tensors are ``(B, C, H, W)`` float unless a docstring says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS: dict[str, float] = {"base": 1.0, "half": 0.5}
"""Named widths: "base" = Table I channels, "half" = half of them."""


def resolve_width(width: str | float) -> float:
    """ "base" | "half" | a positive number (or its string, e.g. "0.125") -> channel multiplier.

    Raises ValueError naming the valid choices otherwise.
    """
    valid = f"valid widths: {', '.join(repr(k) for k in WIDTHS)} or a positive number"
    if isinstance(width, bool):
        raise ValueError(f"unknown width {width!r}; {valid}")
    if isinstance(width, str):
        if width in WIDTHS:
            return WIDTHS[width]
        try:
            value = float(width)
        except ValueError:
            raise ValueError(f"unknown width {width!r}; {valid}") from None
    elif isinstance(width, int | float):
        value = float(width)
    else:
        raise ValueError(f"unknown width {width!r}; {valid}")
    if not (value > 0.0 and value < float("inf")):
        raise ValueError(f"width must be positive and finite, got {width!r}; {valid}")
    return value


def scale_channels(channels: int, multiplier: float, *, minimum: int = 4, divisor: int = 1) -> int:
    """Channel count of a base-width layer at ``multiplier``, rounded to a multiple of ``divisor``.

    Never below ``minimum`` (itself rounded up to ``divisor``): 64 at 0.125 -> 8; 16 at 0.125
    -> 4 (the minimum). Exact for the Table I widths (1.0 and 0.5 halve even counts).
    """
    minimum = -(-minimum // divisor) * divisor
    value = int(round(channels * multiplier / divisor)) * divisor
    return max(minimum, value)


class ConvBNReLU(nn.Sequential):
    """conv kxk (no bias, 'same' padding) -> BatchNorm -> ReLU; (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two ConvBNReLU 3x3 (the U-Net unit); (B, Cin, H, W) -> (B, Cout, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(ConvBNReLU(in_channels, mid), ConvBNReLU(mid, out_channels))


class OutputHeads(nn.Module):
    """One 1x1 conv head per loss term.

    ``heads == 1``: (B, C, H, W) -> logits (B, num_classes, H, W).
    ``heads == 2``: -> a tuple of two such tensors (head 0 = segmentation, used at inference;
    head 1 = the second loss term).
    """

    def __init__(self, in_channels: int, num_classes: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Conv2d(in_channels, num_classes, 1) for _ in range(heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(self.heads) == 1:
            return self.heads[0](x)
        return tuple(head(x) for head in self.heads)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Zero-pad (B, C, H, W) at the bottom/right to multiples of ``multiple``.

    Returns (padded tensor, pad_bottom, pad_right); crop with ``x[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x, pad_h, pad_w


def check_input_size(x: torch.Tensor, size_multiple: int, name: str) -> None:
    """Raise ValueError unless x is (B, C, H, W) with H and W multiples of ``size_multiple``."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % size_multiple or w % size_multiple:
        raise ValueError(
            f"{name} needs H and W to be multiples of {size_multiple}, got {h}x{w}; "
            "pad or tile the input to such a size"
        )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(
    model: nn.Module, height: int = 256, width: int = 256, in_channels: int = 4
) -> int:
    """FLOPs of one forward pass on a (1, in_channels, height, width) zero tensor.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls and
    attention; 1 multiply-add = 2 FLOPs; norms, activations and pooling are not counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, in_channels, height, width))
    model.train(was_training)
    return counter.get_total_flops()
