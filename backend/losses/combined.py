"""Sums of two loss terms: L_CE+SD (3) and L_Seg+Edge (6) of Gruba & Ciecholewski.

"Add an additional output layer, or two if the sum of two loss functions is used": a sum
loss has ``num_heads = 2`` and applies term k to head k of the model's outputs tuple (term 1
-> head 0, the segmentation head used at inference; term 2 -> head 1, e.g. SeNet's edge
branch). Given a single tensor (a one-head model) it applies both terms to that tensor.
"""

from __future__ import annotations

import torch

from backend.losses.base import Outputs, SegmentationLoss


class SumLoss(SegmentationLoss):
    """weight_1 * term_1(head 0) + weight_2 * term_2(head 1).

    ``last_terms`` holds every (unweighted) entry of both terms' ``last_terms`` (e.g. "ce"
    and "sd") plus "total", the weighted sum.
    """

    num_heads = 2

    def __init__(
        self,
        name: str,
        first: SegmentationLoss,
        second: SegmentationLoss,
        weights: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        super().__init__()
        self.name = name
        self.first, self.second = first, second
        self.weights = (float(weights[0]), float(weights[1]))
        self.options = {
            "weights": list(self.weights),
            first.name: dict(first.options),
            second.name: dict(second.options),
        }

    def forward(
        self, outputs: Outputs, target: torch.Tensor, image: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Weighted sum (scalar tensor); see :meth:`SegmentationLoss.forward` for arguments."""
        head0, head1 = self.heads(outputs)
        value = self.weights[0] * self.first(head0, target, image) + self.weights[1] * self.second(
            head1, target, image
        )
        self._last = {}
        for term in (self.first, self.second):
            self._last.update({k: v for k, v in term._last.items() if k != "total"})
        self._last["total"] = value.detach()
        return value
