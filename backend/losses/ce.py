"""L_CE, equation (1) of Gruba & Ciecholewski: pixel-wise cross-entropy.

    L_CE = -(1/N) sum_i log p(l_i, i)

over the N non-ignored pixels of the batch, l_i the true class (1 water / 0 land). With
logits this equals ``torch.nn.functional.cross_entropy(logits, target, ignore_index=255)``.
"""

from __future__ import annotations

import torch

from backend.losses.base import SegmentationLoss, check_inputs, log_probabilities, valid_mean


def ce_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    from_logits: bool = True,
    clamp_eps: float = 1e-6,
) -> torch.Tensor:
    """Mean cross-entropy over valid pixels.

    Args:
        outputs: float (B, 2, H, W) logits (or probabilities with from_logits=False, then
            clamped to >= clamp_eps before the log).
        target: int (B, H, W), 1 water / 0 land / ignore_index.

    Returns:
        scalar tensor (0 when every pixel is ignored).
    """
    labels, valid = check_inputs(outputs, target, ignore_index)
    logp = log_probabilities(outputs, from_logits, clamp_eps)
    nll = -logp.gather(1, labels.unsqueeze(1)).squeeze(1)
    return valid_mean(nll, valid)


class CELoss(SegmentationLoss):
    """Module form of :func:`ce_loss`; ``last_terms`` = {"ce", "total"}."""

    name = "ce"

    def __init__(
        self, *, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.keep_options(ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps)

    def compute(self, outputs, target, image=None):
        return {
            "ce": ce_loss(
                outputs,
                target,
                ignore_index=self.ignore_index,
                from_logits=self.from_logits,
                clamp_eps=self.clamp_eps,
            )
        }
