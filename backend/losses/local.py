"""L_Seg, equation (4) of Gruba & Ciecholewski: the local regularised loss (from SeNet).

    L_Seg = (1/N) sum_i { -log p(l_i, i)
                          + (lambda/2) sum_{j in Nb(i)} sum_c (p_c,i - p_c,j)^2 w_ij }
    w_ij  = exp(-||x_i - x_j||^2 / sigma)

- Nb(i): the 8 neighbours of i that lie inside the image and are not ignored (no padding:
  border pixels have 3 or 5 neighbours). An ignored pixel has no term and is no neighbour.
- x_i: the model input vector of pixel i (all C channels); ||.||^2 the squared Euclidean
  distance over channels. The image is detached (no gradient flows into it).
- sigma: per image, the mean of ||x_i - x_j||^2 over all neighbouring pairs of that image
  (pairs with an ignored pixel excluded). If an image has sigma = 0 (constant image) every
  pair has distance 0 and w = 1; if it has no pair at all there is nothing to weight.
- N: the non-ignored pixels of the whole batch; l_i the true class, 1 water / 0 land (the
  paper's "1 = land" is SeNet's convention; -log p of the true class is symmetric anyway).
- lambda: default 10, the low end of the paper's [10, 50] (a large lambda under-segments).

Each unordered pair {i, j} appears twice in the double sum (from i and from j), so the code
sums each unordered pair once, times lambda, over 4 shift directions: no loop over pixels.
"""

from __future__ import annotations

import torch

from backend.losses.base import (
    OFFSETS_HALF,
    SegmentationLoss,
    check_inputs,
    log_probabilities,
    pair_slices,
    probabilities,
)


def neighbour_sigma(image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared colour distance of neighbouring pairs.

    Args:
        image: float (B, C, H, W).
        valid: bool (B, H, W); pairs with an invalid pixel are skipped.

    Returns:
        float (B,); 0 for an image without any valid pair.
    """
    total = image.new_zeros(image.shape[0])
    count = image.new_zeros(image.shape[0])
    for dy, dx in OFFSETS_HALF:
        si, sj = pair_slices(dy, dx)
        pair = (valid[:, si[0], si[1]] & valid[:, sj[0], sj[1]]).to(image.dtype)
        d2 = (image[:, :, si[0], si[1]] - image[:, :, sj[0], sj[1]]).square().sum(1)
        total += (d2 * pair).sum((1, 2))
        count += pair.sum((1, 2))
    return total / count.clamp_min(1)


def local_regularised_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    image: torch.Tensor,
    *,
    lam: float = 10.0,
    ignore_index: int = 255,
    from_logits: bool = True,
    clamp_eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_Seg and its two parts.

    Args:
        outputs: float (B, 2, H, W) logits (or probabilities with from_logits=False).
        target: int (B, H, W), 1 water / 0 land / ignore_index.
        image: float (B, C, H, W), the model input.
        lam: weight lambda of the smoothness term (>= 0).

    Returns:
        (loss, nll, smooth): scalar tensors with loss = nll + smooth, nll = mean -log p of the
        true class, smooth = (lambda / 2) * (weighted sum over ordered pairs) / N.
    """
    labels, valid = check_inputs(outputs, target, ignore_index)
    if image is None:
        raise ValueError("L_Seg needs the model input image (B, C, H, W); pass image=...")
    if image.ndim != 4 or image.shape[:1] + image.shape[2:] != target.shape:
        raise ValueError(
            f"image shape {tuple(image.shape)} does not match target {tuple(target.shape)}; "
            "expected (B, C, H, W)"
        )
    x = image.detach().to(device=outputs.device, dtype=torch.float32)
    n = valid.sum().clamp_min(1)

    logp = log_probabilities(outputs, from_logits, clamp_eps)
    nll = -logp.gather(1, labels.unsqueeze(1)).squeeze(1)
    nll = torch.where(valid, nll, nll.new_zeros(())).sum() / n

    p = probabilities(outputs, from_logits)
    sigma = neighbour_sigma(x, valid)
    sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))[:, None, None]
    pairs_sum = outputs.new_zeros(())
    for dy, dx in OFFSETS_HALF:
        si, sj = pair_slices(dy, dx)
        pair = valid[:, si[0], si[1]] & valid[:, sj[0], sj[1]]
        d2 = (x[:, :, si[0], si[1]] - x[:, :, sj[0], sj[1]]).square().sum(1)
        w = torch.exp(-d2 / sigma).to(outputs.dtype)
        dp2 = (p[:, :, si[0], si[1]] - p[:, :, sj[0], sj[1]]).square().sum(1)
        pairs_sum = pairs_sum + torch.where(pair, dp2 * w, dp2.new_zeros(())).sum()
    # (lambda / 2) * (2 * sum over unordered pairs) = lambda * sum over unordered pairs
    smooth = lam * pairs_sum / n
    return nll + smooth, nll, smooth


class LocalRegularisedLoss(SegmentationLoss):
    """Module form of :func:`local_regularised_loss`.

    ``last_terms`` = {"seg", "seg_nll", "seg_smooth", "total"}.
    """

    name = "seg"

    def __init__(
        self,
        *,
        lam: float = 10.0,
        ignore_index: int = 255,
        from_logits: bool = True,
        clamp_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if not lam >= 0:
            raise ValueError(f"lam (lambda) must be >= 0, got {lam!r}")
        self.keep_options(
            lam=lam, ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps
        )

    def compute(self, outputs, target, image=None):
        loss, nll, smooth = local_regularised_loss(
            outputs,
            target,
            image,
            lam=self.lam,
            ignore_index=self.ignore_index,
            from_logits=self.from_logits,
            clamp_eps=self.clamp_eps,
        )
        return {"seg": loss, "seg_nll": nll, "seg_smooth": smooth}
