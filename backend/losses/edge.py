"""L_Edge, equation (5) of Gruba & Ciecholewski: the structured edge loss (from SeNet).

Translated to this project's convention (class 1 = water; SeNet's equation has 1 = land):

- Pixel i (not ignored) is an EDGE pixel when at least one of its neighbours j has the other
  true class; SN_i(j) = 1 for exactly those neighbours.
- Edge pixel:     e_i = log p(l_i, i) + mean_{j: SN_i(j)=1} log(1 - p(l_i, j))
  i.e. "i is its own class, and its other-class neighbours are not". For a water pixel this
  is log p1_i + mean log(1 - p1_j) (the paper's E(S) line with 1 = water); for a land pixel
  log(1 - p1_i) + mean log p1_j.
- Other pixels:   e_i = log(1 - mean_{j in Nb(i)} |p1_i - p1_j|)
  ("neighbours agree"). The paper divides by 8; here the mean runs over the neighbours that
  exist, so border pixels (3 or 5 neighbours) are not favoured. A pixel without any neighbour
  has e_i = 0.
- L_Edge = -(1/N) sum_i e_i over the N non-ignored pixels of the batch.

Neighbours: the 8-neighbourhood inside the image, ignored pixels excluded. Outside pixels do
not exist (masked, not zero-padded), so the image border makes no false edge.

Clamping: probabilities are clamped to >= clamp_eps (default 1e-6) before every log, so one
confidently wrong pixel adds at most -log(1e-6) = 13.8 per log (SeNet's practice); the clamp
is applied as log_softmax(logits).clamp_min(log eps), the same value as log(clamp(p, eps)) but
exact above eps. In the non-edge term the argument 1 - mean|dp| is clamped to >= clamp_eps.
Gradients stay finite when probabilities are exactly 0 or 1 (they are 0 where clamped).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backend.losses.base import (
    OFFSETS_8,
    SegmentationLoss,
    check_inputs,
    log_probabilities,
    probabilities,
)


def _shifted(padded: torch.Tensor, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """Neighbour (dy, dx) of every pixel, from a tensor padded by 1 on the last two dims."""
    return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def edge_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    from_logits: bool = True,
    clamp_eps: float = 1e-6,
) -> torch.Tensor:
    """Structured edge loss.

    Args:
        outputs: float (B, 2, H, W) logits (or probabilities with from_logits=False).
        target: int (B, H, W), 1 water / 0 land / ignore_index.
        clamp_eps: lower clamp of probabilities (and of 1 - mean|dp|) before the log.

    Returns:
        scalar tensor >= 0.
    """
    labels, valid = check_inputs(outputs, target, ignore_index)
    h, w = labels.shape[-2:]
    p1 = probabilities(outputs, from_logits)[:, 1]
    logp = log_probabilities(outputs, from_logits, clamp_eps).clamp_min(math.log(clamp_eps))
    own_logp = logp.gather(1, labels.unsqueeze(1)).squeeze(1)  # log p(l_i, i)

    pad = (1, 1, 1, 1)
    valid_pad = F.pad(valid, pad, value=False)
    labels_pad = F.pad(labels, pad)
    p1_pad = F.pad(p1, pad)
    own_logp_pad = F.pad(own_logp, pad)

    zero = p1.new_zeros(())
    n_nb = torch.zeros_like(p1)  # existing neighbours
    n_sn = torch.zeros_like(p1)  # other-class neighbours
    abs_dp = torch.zeros_like(p1)
    sn_logp = torch.zeros_like(p1)
    for dy, dx in OFFSETS_8:
        exists = valid & _shifted(valid_pad, dy, dx, h, w)
        other = exists & (_shifted(labels_pad, dy, dx, h, w) != labels)
        n_nb = n_nb + exists
        n_sn = n_sn + other
        abs_dp = abs_dp + torch.where(exists, (p1 - _shifted(p1_pad, dy, dx, h, w)).abs(), zero)
        # j has the other class, so 1 - p(l_i, j) = p(l_j, j): j's own-class probability
        sn_logp = sn_logp + torch.where(other, _shifted(own_logp_pad, dy, dx, h, w), zero)

    is_edge = n_sn > 0
    edge_term = own_logp + sn_logp / n_sn.clamp_min(1)
    agree = (1 - abs_dp / n_nb.clamp_min(1)).clamp_min(clamp_eps)
    smooth_term = agree.log()
    per_pixel = torch.where(is_edge, edge_term, smooth_term)
    return -torch.where(valid, per_pixel, zero).sum() / valid.sum().clamp_min(1)


class EdgeLoss(SegmentationLoss):
    """Module form of :func:`edge_loss`; ``last_terms`` = {"edge", "total"}."""

    name = "edge"

    def __init__(
        self, *, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6
    ) -> None:
        super().__init__()
        if not 0 < clamp_eps < 1:
            raise ValueError(f"clamp_eps must be in (0, 1), got {clamp_eps!r}")
        self.keep_options(ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps)

    def compute(self, outputs, target, image=None):
        return {
            "edge": edge_loss(
                outputs,
                target,
                ignore_index=self.ignore_index,
                from_logits=self.from_logits,
                clamp_eps=self.clamp_eps,
            )
        }
