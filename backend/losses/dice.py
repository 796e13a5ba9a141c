"""L_SD, equation (2) of Gruba & Ciecholewski: Sorensen-Dice loss on the water probability.

Implemented in the V-Net form, with the factor 2 the printed equation lacks (with it a perfect
prediction gives 0, without it 0.5):

    L_SD = 1 - (2 sum_i y_i p_i + eps) / (sum_i y_i + sum_i p_i + eps),   eps = 1e-5

y_i = 1 for water, p_i = p(water, i); sums over the non-ignored pixels.

Reduction (decided here): ``per_image=False`` (default) takes the sums over the whole batch,
as the paper's "t = total number of pixels" reads, so pure-land or pure-water tiles (common in
SNOWED) add to the batch sums instead of each scoring ~1 on their own. ``per_image=True``
computes the loss per image and averages the images; a pure-land image then scores
1 - eps / (sum p + eps), i.e. ~1 unless it predicts almost exactly no water.
"""

from __future__ import annotations

import torch

from backend.losses.base import SegmentationLoss, check_inputs, probabilities


def dice_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float = 1e-5,
    per_image: bool = False,
    ignore_index: int = 255,
    from_logits: bool = True,
) -> torch.Tensor:
    """Sorensen-Dice loss of the water class.

    Args:
        outputs: float (B, 2, H, W) logits (or probabilities with from_logits=False).
        target: int (B, H, W), 1 water / 0 land / ignore_index.
        eps: smoothing added to numerator and denominator (> 0).
        per_image: mean of per-image losses instead of one loss over the batch.

    Returns:
        scalar tensor in [0, 1].
    """
    labels, valid = check_inputs(outputs, target, ignore_index)
    m = valid.to(outputs.dtype)
    p = probabilities(outputs, from_logits)[:, 1] * m
    y = labels.to(outputs.dtype) * m
    dims = (1, 2) if per_image else (0, 1, 2)
    intersection = (y * p).sum(dims)
    total = y.sum(dims) + p.sum(dims)
    return (1 - (2 * intersection + eps) / (total + eps)).mean()


class DiceLoss(SegmentationLoss):
    """Module form of :func:`dice_loss`; ``last_terms`` = {"sd", "total"}."""

    name = "sd"

    def __init__(
        self,
        *,
        eps: float = 1e-5,
        per_image: bool = False,
        ignore_index: int = 255,
        from_logits: bool = True,
    ) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.keep_options(
            eps=eps, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits
        )

    def compute(self, outputs, target, image=None):
        return {
            "sd": dice_loss(
                outputs,
                target,
                eps=self.eps,
                per_image=self.per_image,
                ignore_index=self.ignore_index,
                from_logits=self.from_logits,
            )
        }
