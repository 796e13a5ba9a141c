"""Seed ensembles: K independently trained copies of one architecture, logits averaged.

    >>> model = create_model("unet", width=0.0625, spectral={"mode": "residual"}, members=3)
    >>> logits = model(torch.zeros(1, 4, 64, 64))        # (1, 2, 64, 64): mean of 3 members

``create_model(..., members=K)`` with K > 1 returns a :class:`Ensemble` of K freshly
initialised copies (weights under ``members.<i>.``); K = 1 returns the plain model, so
existing checkpoints keep their state-dict keys. ``members`` is an architecture keyword, so
a checkpoint's ``arch.kwargs`` rebuilds the ensemble
(``backend.models.loading.model_from_checkpoint``).

**What is averaged: logits.** The output is the arithmetic mean of the members' logits, per
head (a tuple of head means for heads = 2). It is still a logits tensor: softmax of it is the
normalised geometric mean of the members' class probabilities (for two classes: the water
logit difference is the members' mean logit difference). Averaging logits rather than
probabilities keeps the output a plain logits tensor for every consumer (losses, the
segment command's softmax, temperature scaling: dividing every member's last layer by T
divides the mean by T exactly) and keeps ``fuse_for_inference`` applicable, since members are
ordinary models. Members are meant to be trained separately (different seeds) and merged
with :func:`ensemble_checkpoint`; training an Ensemble jointly is possible but not the intent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["Ensemble", "ensemble_checkpoint", "ensemble_state_dict"]


class Ensemble(nn.Module):
    """Mean of the logits of K member models with the same input and output layout.

    Forward: float (B, C, H, W) -> logits (B, num_classes, H, W), or a tuple of such tensors
    (one per head) when the members return tuples. ``size_multiple`` is the least common
    multiple of the members' (all equal when they share an architecture).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        multiple = 1
        for m in self.members:
            step = int(getattr(m, "size_multiple", 1))
            multiple = multiple * step // _gcd(multiple, step)
        self.size_multiple = multiple

    def forward(self, x: torch.Tensor):
        outs = [m(x) for m in self.members]
        if isinstance(outs[0], tuple | list):
            return tuple(torch.stack(heads).mean(0) for heads in zip(*outs, strict=True))
        return torch.stack(outs).mean(0)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def ensemble_state_dict(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Merge K member state dicts into an Ensemble's: key ``k`` of member i -> ``members.i.k``.

    All members must have the same keys (same architecture); raises ValueError otherwise.
    """
    if not states:
        raise ValueError("no member state dicts given")
    keys = list(states[0])
    merged: dict[str, torch.Tensor] = {}
    for i, state in enumerate(states):
        if list(state) != keys:
            raise ValueError(f"member {i} has different state-dict keys than member 0")
        merged.update({f"members.{i}.{k}": v for k, v in state.items()})
    return merged


def ensemble_checkpoint(ckpts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Checkpoint dict of the ensemble of K single-model checkpoint dicts of one architecture.

    Metadata (bands, scaling, tile size, config...) is taken from the first checkpoint;
    ``arch.kwargs.members`` is set to K; training state (optimizer, scheduler, scaler, rng,
    best) is dropped; ``ensemble_members`` records each member's config seed and epoch.
    Raises ValueError when the architectures (name and kwargs) differ or a checkpoint is
    itself an ensemble.
    """
    if not ckpts:
        raise ValueError("no member checkpoints given")
    arch = ckpts[0]["arch"]
    for i, ckpt in enumerate(ckpts):
        if ckpt["arch"] != arch:
            raise ValueError(f"member {i} architecture {ckpt['arch']!r} differs from {arch!r}")
    if int(arch.get("kwargs", {}).get("members", 1)) != 1:
        raise ValueError("member checkpoints must be single models, not ensembles")
    out = {
        k: v
        for k, v in ckpts[0].items()
        if k not in ("state_dict", "optimizer", "scheduler", "scaler", "rng", "best")
    }
    out["arch"] = {
        "name": arch["name"],
        "kwargs": {**arch.get("kwargs", {}), "members": len(ckpts)},
    }
    out["state_dict"] = ensemble_state_dict([c["state_dict"] for c in ckpts])
    out["ensemble_members"] = [
        {"seed": (c.get("config") or {}).get("seed"), "epoch": c.get("epoch")} for c in ckpts
    ]
    return out
