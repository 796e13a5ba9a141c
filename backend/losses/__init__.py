"""Loss functions of Gruba & Ciecholewski, Section II-C, equations (1)-(6).

    >>> loss_fn = create_loss("seg+edge", lam=10.0)
    >>> loss = loss_fn(model(x), target, image=x)   # model with heads == loss_fn.num_heads
    >>> loss_fn.last_terms                          # {"seg": ..., "edge": ..., "total": ...}

| name       | equation | terms (head)                          | num_heads |
|------------|----------|---------------------------------------|-----------|
| "ce"       | (1)      | L_CE                                  | 1         |
| "sd"       | (2)      | L_SD (V-Net form, factor 2)           | 1         |
| "ce+sd"    | (3)      | alpha L_CE (0) + beta L_SD (1)        | 2         |
| "seg"      | (4)      | L_Seg                                 | 1         |
| "edge"     | (5)      | L_Edge                                | 1         |
| "seg+edge" | (6)      | L_Seg (0) + L_Edge (1)                | 2         |

Every loss is called as ``loss(outputs, target, image=None)``: outputs = logits (B, 2, H, W)
or a tuple of ``num_heads`` of them, target int (B, H, W) 1 water / 0 land / 255 ignore,
image the float model input (B, C, H, W) (needed by "seg" and "seg+edge"). Options
(keyword arguments of create_loss):

- all: ``ignore_index`` (255), ``from_logits`` (True: softmax over dim 1; False: outputs are
  probabilities).
- "ce", "seg", "edge" and sums containing them: ``clamp_eps`` (1e-6), the lower clamp of
  probabilities before a log (always used by L_Edge; by L_CE/L_Seg only with
  from_logits=False, since log_softmax is exact).
- "sd", "ce+sd": ``eps`` (1e-5), ``per_image`` (False: one Dice over the whole batch).
- "ce+sd": ``alpha`` (1.0), ``beta`` (0.7).
- "seg", "seg+edge": ``lam`` (10.0, lambda; the paper uses [10, 50]).

See docs/losses.md for the formulas as implemented.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from backend.losses.base import SegmentationLoss
from backend.losses.ce import CELoss, ce_loss
from backend.losses.combined import SumLoss
from backend.losses.dice import DiceLoss, dice_loss
from backend.losses.edge import EdgeLoss, edge_loss
from backend.losses.local import LocalRegularisedLoss, local_regularised_loss

__all__ = [
    "LOSSES",
    "CELoss",
    "DiceLoss",
    "EdgeLoss",
    "LocalRegularisedLoss",
    "SegmentationLoss",
    "SumLoss",
    "ce_loss",
    "create_loss",
    "dice_loss",
    "edge_loss",
    "list_losses",
    "local_regularised_loss",
]


def _ce(*, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6):
    return CELoss(ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps)


def _sd(
    *,
    eps: float = 1e-5,
    per_image: bool = False,
    ignore_index: int = 255,
    from_logits: bool = True,
):
    return DiceLoss(
        eps=eps, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits
    )


def _ce_sd(
    *,
    alpha: float = 1.0,
    beta: float = 0.7,
    eps: float = 1e-5,
    per_image: bool = False,
    ignore_index: int = 255,
    from_logits: bool = True,
    clamp_eps: float = 1e-6,
):
    ce = _ce(ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps)
    sd = _sd(eps=eps, per_image=per_image, ignore_index=ignore_index, from_logits=from_logits)
    return SumLoss("ce+sd", ce, sd, (alpha, beta))


def _seg(
    *, lam: float = 10.0, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6
):
    return LocalRegularisedLoss(
        lam=lam, ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps
    )


def _edge(*, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6):
    return EdgeLoss(ignore_index=ignore_index, from_logits=from_logits, clamp_eps=clamp_eps)


def _seg_edge(
    *, lam: float = 10.0, ignore_index: int = 255, from_logits: bool = True, clamp_eps: float = 1e-6
):
    common = {"ignore_index": ignore_index, "from_logits": from_logits, "clamp_eps": clamp_eps}
    return SumLoss("seg+edge", _seg(lam=lam, **common), _edge(**common), (1.0, 1.0))


LOSSES: dict[str, Callable[..., SegmentationLoss]] = {
    "ce": _ce,
    "sd": _sd,
    "ce+sd": _ce_sd,
    "seg": _seg,
    "edge": _edge,
    "seg+edge": _seg_edge,
}


def list_losses() -> list[str]:
    """Registered loss names in the paper's order."""
    return list(LOSSES)


def create_loss(name: str, **kwargs) -> SegmentationLoss:
    """Build a loss module by name (see the module docstring for names and options).

    Raises:
        ValueError: unknown name (lists the valid names) or an option the loss does not take
            (lists the valid options), or an out-of-range option.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    factory = LOSSES[name]
    valid = list(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"loss {name!r} has no option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}"
        )
    loss = factory(**kwargs)
    loss.name = name
    return loss
