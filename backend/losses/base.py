"""Shared machinery of the segmentation losses: input checks, probabilities, heads, neighbours.

Conventions shared by every loss in this package (see docs/losses.md):

- ``outputs``: logits (B, 2, H, W) float, channel 1 = water, channel 0 = land, turned into
  probabilities by a softmax over dim 1 (``from_logits=True``, the default). With
  ``from_logits=False`` the tensor already holds probabilities (B, 2, H, W) summing to 1 over
  dim 1.
- ``target``: int (B, H, W), 1 water / 0 land / ``ignore_index`` (255). An ignored pixel adds
  nothing to any term, is not counted in N, and is not anybody's neighbour.
- Logarithms: with logits, log-probabilities come from ``log_softmax`` (exact and finite for
  any finite logit); with probabilities they are ``log(clamp(p, min=clamp_eps))``. L_Edge
  always clamps (see losses/edge.py).
- A loss with nothing to average (every pixel ignored) returns 0, still attached to the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Outputs = torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]

# the 8-neighbourhood as (dy, dx) offsets of neighbour j from pixel i
OFFSETS_8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
# one offset of each unordered neighbouring pair {i, j}
OFFSETS_HALF = ((0, 1), (1, 0), (1, 1), (1, -1))


def check_inputs(
    outputs: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one head's output and the target.

    Args:
        outputs: float (B, 2, H, W) logits or probabilities.
        target: int (B, H, W) with values in {0, 1, ignore_index}.

    Returns:
        (labels, valid): labels int64 (B, H, W) with ignored pixels set to 0 (safe to gather
        with), valid bool (B, H, W).
    """
    if outputs.ndim != 4 or outputs.shape[1] != 2:
        raise ValueError(
            f"loss expects outputs of shape (B, 2, H, W) (land, water), got {tuple(outputs.shape)}"
        )
    if not outputs.is_floating_point():
        raise ValueError(f"loss outputs must be floating point, got {outputs.dtype}")
    if target.shape != outputs.shape[:1] + outputs.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match outputs "
            f"{tuple(outputs.shape)}; expected (B, H, W)"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class ids, got {target.dtype}")
    target = target.to(device=outputs.device, dtype=torch.long)
    valid = target != ignore_index
    if bool(((target < 0) | (target > 1))[valid].any()):
        raise ValueError(
            f"target values must be 0 (land), 1 (water) or the ignore index {ignore_index}"
        )
    return torch.where(valid, target, 0), valid


def probabilities(outputs: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """Class probabilities (B, 2, H, W) of logits (softmax over dim 1) or of probabilities."""
    return outputs.softmax(dim=1) if from_logits else outputs


def log_probabilities(outputs: torch.Tensor, from_logits: bool, clamp_eps: float) -> torch.Tensor:
    """log p (B, 2, H, W): log_softmax of logits, or log(clamp(p, clamp_eps)) of probabilities."""
    if from_logits:
        return F.log_softmax(outputs, dim=1)
    return outputs.clamp_min(clamp_eps).log()


def valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the valid pixels (0 when there are none), keeping the graph."""
    total = torch.where(valid, values, values.new_zeros(()))
    return total.sum() / valid.sum().clamp_min(1)


def pair_slices(dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices of the last two dims selecting pixels i and their neighbours j = i + (dy, dx).

    Only pairs with both pixels inside the image are selected: no padding, so the image border
    has no invented neighbours. ``x[..., *si]`` and ``x[..., *sj]`` line up element-wise.
    """

    def axis(d: int) -> tuple[slice, slice]:
        if d > 0:
            return slice(0, -d), slice(d, None)
        if d < 0:
            return slice(-d, None), slice(0, d)
        return slice(None), slice(None)

    (yi, yj), (xi, xj) = axis(dy), axis(dx)
    return (yi, xi), (yj, xj)


class SegmentationLoss(nn.Module):
    """Base of every loss here: head selection, ``num_heads``, ``last_terms``, ``name``.

    Subclasses implement ``compute(outputs, target, image)`` for ONE head and return a
    dict term-name -> scalar tensor; the first entry is the loss value. ``forward`` returns
    it. ``last_terms`` holds the terms of the last call as floats (read lazily, so a loss
    that is never logged costs no device synchronisation), plus "total".
    """

    num_heads: int = 1
    name: str = ""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, torch.Tensor] = {}
        self.options: dict = {}

    def keep_options(self, **options) -> None:
        """Store keyword options as attributes and in ``self.options`` (JSON-friendly, for
        checkpoints and logs)."""
        for key, value in options.items():
            setattr(self, key, value)
        self.options = dict(options)

    @property
    def last_terms(self) -> dict[str, float]:
        """Terms of the last forward call, as Python floats (empty before the first call)."""
        return {k: float(v) for k, v in self._last.items()}

    def heads(self, outputs: Outputs) -> list[torch.Tensor]:
        """The ``num_heads`` tensors the terms apply to.

        A single tensor (or a 1-tuple) is used for every term; a tuple must have exactly
        ``num_heads`` entries (term k -> head k).
        """
        if isinstance(outputs, torch.Tensor):
            return [outputs] * self.num_heads
        outputs = list(outputs)
        if len(outputs) == 1:
            return outputs * self.num_heads
        if len(outputs) != self.num_heads:
            raise ValueError(
                f"loss {self.name!r} uses {self.num_heads} head(s) but the model returned "
                f"{len(outputs)}; create the model with heads={self.num_heads}"
            )
        return outputs

    def compute(
        self, outputs: torch.Tensor, target: torch.Tensor, image: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self, outputs: Outputs, target: torch.Tensor, image: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss value (scalar tensor).

        Args:
            outputs: logits (B, 2, H, W), or a tuple of ``num_heads`` such tensors.
            target: int (B, H, W), 1 water / 0 land / ignore_index.
            image: float (B, C, H, W) model input (used by L_Seg only).
        """
        (head,) = self.heads(outputs)
        if head.dtype in (torch.float16, torch.bfloat16):  # mixed precision: sum in float32
            head = head.float()
        terms = self.compute(head, target, image)
        value = next(iter(terms.values()))
        self._last = {k: v.detach() for k, v in terms.items()}
        self._last["total"] = value.detach()
        return value
