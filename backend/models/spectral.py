"""Fixed (non-learned) spectral-index input layer for any model of the zoo.

Water is a spectral *shape* (green and blue above NIR), not a brightness: the normalised
difference ``(a - b) / (a + b)`` of two bands is unchanged when the whole pixel gets brighter
or darker (haze, illumination, thin shadow, sensor gain). A convolutional network can learn
such ratios only approximately from a few training tiles, so :class:`SpectralIndices` computes
them exactly and appends them to the input channels; the network then sees both the raw bands
and brightness-invariant features such as NDWI = (B3 - B8) / (B3 + B8) (McFeeters 1996),
which is the pair (1, 3) of the default band order B2, B3, B4, B8.

    >>> layer = SpectralIndices(4)                    # all 6 pairs of 4 bands
    >>> layer(torch.rand(2, 4, 64, 64)).shape
    torch.Size([2, 10, 64, 64])

``create_model(name, spectral=SpectralOptions())`` (or ``SpectralOptions("only")``: the
indices replace the bands; the other modes are listed in :class:`SpectralOptions`)
(backend/models/__init__.py) wraps any registered model as :class:`WithSpectralIndices`; the
options are an architecture keyword, so they are stored in a checkpoint's ``arch.kwargs``
(``SpectralOptions.to_dict``) and ``model_from_checkpoint`` rebuilds the model.

Robustness: the input is reflectance (scale 1e-4, no mean/std), but may hold NaN/inf, zeros
(nodata fill) or small negatives (L2A offset, noise). Before the index, values are made finite
(NaN -> 0, +-inf -> 0) and clamped to ``>= 0``; ``eps`` in the denominator keeps every index in
[-1, 1] and finite, and sends pixels that are dark in both bands (|a| + |b| << eps) towards 0
(undecided) instead of +-1. The raw channels are passed through unchanged.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from itertools import combinations
from typing import Any

import torch
from torch import nn

DEFAULT_EPS = 1e-3  # reflectance units: 0.1 % reflectance
NDWI_PAIR = (
    1,
    3,
)  # (B3, B8) in the default band order B2, B3, B4, B8: NDWI = (B3 - B8) / (B3 + B8)
DEFAULT_INIT_GAIN = 10.0  # logit(water) - logit(land) = 10 * NDWI at the start: p = 0.88 at 0.2
DEFAULT_ANCHOR_BOUND = 1.5  # "ndwi-anchored": the net moves each logit by at most 1.5
ANCHOR_PIXELS = 2_000_000  # the most pixels the anchor's logistic regression is fitted on
SPECTRAL_MODES = ("all", "only", "residual", "ndwi-init", "ndwi-anchored", "anchored")


@dataclass(frozen=True)
class SpectralOptions:
    """How :func:`backend.models.create_model` puts the index layer in front of a model.

    Args:
        mode: "all" (default): append the normalised difference of every band pair (or of
            ``pairs``) to the input bands; "only": feed the model those indices instead of the
            bands; "residual": append them and add a learned per-pixel linear map of them to
            the segmentation logits; "ndwi-init": "residual" started from the index of
            ``index_pair`` (:func:`init_from_index`: the untrained model predicts water exactly
            where that index > 0, logit scale ``index_gain``; head 0's own conv zeroed);
            "ndwi-anchored": the fixed decision ``index_gain`` x index(``index_pair``) plus the
            net's correction bounded by ``anchor_bound`` per logit (nothing about the index is
            learned, so wherever it is clear the model agrees with it); "anchored": the same
            with a linear decision on all the indices, fitted by logistic regression on the
            training tiles before the net trains (:func:`fit_anchor`).
        pairs: band index pairs (i, j) of the indices; None (default): every pair i < j.
        index_pair: with "ndwi-init" and "ndwi-anchored", the band indices (a, b) of the index
            (x[a] - x[b]) / (x[a] + x[b]); default (1, 3) = (B3, B8), NDWI of B2, B3, B4, B8.
        index_gain: with "ndwi-init", logit(water) - logit(land) = gain x index at the start;
            with "ndwi-anchored", the fixed gain of the index.
        anchor_bound: with "ndwi-anchored" and "anchored", the most the net may move each logit.

    Raises:
        ValueError: an unknown mode (the message lists the valid ones), a pair that is not two
            different band indices, or a gain or bound that is not positive.
    """

    mode: str = "all"
    pairs: tuple[tuple[int, int], ...] | None = None
    index_pair: tuple[int, int] = NDWI_PAIR
    index_gain: float = DEFAULT_INIT_GAIN
    anchor_bound: float = DEFAULT_ANCHOR_BOUND

    def __post_init__(self) -> None:
        if self.mode not in SPECTRAL_MODES:
            raise ValueError(
                f"spectral mode {self.mode!r}: use one of {', '.join(map(repr, SPECTRAL_MODES))}"
            )
        if self.pairs is not None:
            object.__setattr__(self, "pairs", tuple(_band_pair(p, "pair") for p in self.pairs))
        object.__setattr__(self, "index_pair", _band_pair(self.index_pair, "index_pair"))
        for name in ("index_gain", "anchor_bound"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"spectral {name} must be positive, got {value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def parse(cls, value: SpectralOptions | dict[str, Any] | None) -> SpectralOptions | None:
        """None, the options, or their dict (as :meth:`to_dict` writes it; fields left out take
        their defaults) -> the options or None.

        Raises:
            ValueError: a key that is not a field (the message lists the fields), or a bad value.
        """
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"spectral must be SpectralOptions, a dict or None, got {value!r}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"unknown spectral option(s) {unknown}; valid: {', '.join(names)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings, for a checkpoint's ``arch.kwargs`` (every field,
        so the model is rebuilt the same even if a default changes)."""
        out = asdict(self)
        out["pairs"] = None if self.pairs is None else [list(p) for p in self.pairs]
        out["index_pair"] = list(self.index_pair)
        return out


def _band_pair(pair: Sequence[int], what: str) -> tuple[int, int]:
    """(a, b) as a tuple of two different ints; ValueError naming ``what`` otherwise."""
    try:
        a, b = (operator.index(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"spectral {what} {pair!r} must be two band indices (a, b)") from None
    if a == b:
        raise ValueError(f"spectral {what} {pair!r} must be two different band indices")
    return a, b


def all_pairs(in_channels: int) -> list[tuple[int, int]]:
    """Every band pair (i, j) with i < j: C (C - 1) / 2 pairs, e.g. 6 for 4 bands."""
    return list(combinations(range(in_channels), 2))


def resolve_pairs(in_channels: int, pairs: bool | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``True`` -> :func:`all_pairs`; a sequence of (i, j) -> checked list of int tuples.

    Raises:
        ValueError: an index outside [0, in_channels), i == j, a pair not of length 2, or no
            pairs at all.
    """
    if pairs is True:
        resolved = all_pairs(in_channels)
    else:
        resolved = []
        for pair in pairs:
            if isinstance(pair, str | bytes) or len(pair) != 2:
                raise ValueError(f"spectral index pair {pair!r} must be two band indices (i, j)")
            i, j = (int(v) for v in pair)
            if not (0 <= i < in_channels and 0 <= j < in_channels) or i == j:
                raise ValueError(
                    f"spectral index pair {pair!r}: need two different band indices in "
                    f"0..{in_channels - 1}"
                )
            resolved.append((i, j))
    if not resolved:
        raise ValueError(f"no spectral index pairs for {in_channels} input band(s)")
    return resolved


class SpectralIndices(nn.Module):
    """(B, C, H, W) reflectance -> (B, C + P, H, W): the input, then P normalised differences
    (or only the P differences, (B, P, H, W), when ``keep_input`` is False).

    Channel C + k is ``(x[a_k] - x[b_k]) / (x[a_k] + x[b_k] + eps)`` of pair k = (a_k, b_k),
    computed on the input made finite and clamped to >= 0, so it lies in [-1, 1]. No learnable
    parameters and no state in the ``state_dict`` (the pairs are fixed by the constructor).

    Args:
        in_channels: C.
        pairs: band index pairs (a, b), default all pairs a < b.
        eps: added to the denominator (reflectance units).
        keep_input: pass the C input bands through before the indices (default); False gives
            a fully brightness-invariant input (up to ``eps``) of the P indices only.
    """

    def __init__(
        self,
        in_channels: int,
        pairs: Sequence[Sequence[int]] | None = None,
        eps: float = DEFAULT_EPS,
        keep_input: bool = True,
    ) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.in_channels = int(in_channels)
        self.pairs = resolve_pairs(self.in_channels, True if pairs is None else pairs)
        self.eps = float(eps)
        self.keep_input = bool(keep_input)
        first, second = zip(*self.pairs, strict=True)
        self.register_buffer("first", torch.tensor(first, dtype=torch.long), persistent=False)
        self.register_buffer("second", torch.tensor(second, dtype=torch.long), persistent=False)

    @property
    def out_channels(self) -> int:
        return self.in_channels * self.keep_input + len(self.pairs)

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> the P normalised differences (B, P, H, W), same dtype, in [-1, 1]."""
        v = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
        a, b = v.index_select(1, self.first), v.index_select(1, self.second)
        return (a - b) / (a + b + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralIndices expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if not self.keep_input:
            return self.indices(x)
        return torch.cat([x, self.indices(x)], dim=1)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, pairs={self.pairs}, eps={self.eps:g}, "
            f"keep_input={self.keep_input}"
        )


class WithSpectralIndices(nn.Module):
    """A model whose input first passes through :class:`SpectralIndices`.

    ``net`` must take ``spectral.out_channels`` input channels. Forward returns whatever
    ``net`` returns (logits or a tuple of head logits); ``size_multiple`` is ``net``'s.
    The weights live under ``net.`` in the state dict; the index layer has none.

    With ``residual_classes`` = K (the number of classes), a learned per-pixel linear map of
    the P indices to K logits (a 1x1 conv, ``index_head``, zero-initialised) is added to the
    net's segmentation logits (head 0): the net then only has to learn spatial corrections to
    a per-pixel logistic regression on the indices -- NDWI > threshold is one such regression.

    With an ``anchor``, the segmentation logits (head 0, 2 classes) are a *fixed* linear
    decision on the indices plus a *bounded* correction from the net::

        d = sum_k w_k * index_k + c                         (the anchor, a logit difference)
        logits = d / 2 * (-1, +1) + bound * tanh(net_logits / bound)

    so logit(water) - logit(land) = d + e with |e| < 2 * bound: the net can change the
    decision only where |d| < 2 * bound, and wherever the anchor is clear the result is the
    anchor's, whatever the net learned from a few tiles. ``anchor`` = (a, b), a band pair of
    the layer: w = ``anchor_gain`` on that index, 0 elsewhere, c = 0 (e.g. 10 x NDWI; the net
    can overrule NDWI only where |NDWI| < 0.3 with the default bound 1.5). ``anchor="fitted"``:
    w and c start at 0 and are set by :func:`fit_anchor` (a logistic regression on the
    training tiles, before the net trains). w (``anchor_weight``), c (``anchor_bias``) and the
    bound (``anchor_bound``) are buffers in the state dict, never trained by the optimizer; a
    calibration temperature T is folded in by dividing them and head 0's conv by T.
    """

    def __init__(
        self,
        spectral: SpectralIndices,
        net: nn.Module,
        residual_classes: int | None = None,
        anchor: Sequence[int] | str | None = None,
        anchor_gain: float = DEFAULT_INIT_GAIN,
        anchor_bound: float = DEFAULT_ANCHOR_BOUND,
    ) -> None:
        super().__init__()
        self.spectral = spectral
        self.net = net
        self.size_multiple = int(getattr(net, "size_multiple", 1))
        self.index_head = None
        if residual_classes and anchor is not None:
            raise ValueError("a model has either a learned residual index head or a fixed anchor")
        if residual_classes:
            self.index_head = nn.Conv2d(len(spectral.pairs), int(residual_classes), 1)
            nn.init.zeros_(self.index_head.weight)
            nn.init.zeros_(self.index_head.bias)
        self.anchored = anchor is not None
        if self.anchored:
            if not (anchor_gain > 0 and anchor_bound > 0):
                raise ValueError(
                    f"anchor gain and bound must be positive, got {anchor_gain!r}, {anchor_bound!r}"
                )
            weight = torch.zeros(len(spectral.pairs))
            if anchor != "fitted":
                if isinstance(anchor, str):
                    raise ValueError(f"anchor {anchor!r}: use a band pair (a, b) or 'fitted'")
                k, sign = pair_position(spectral.pairs, anchor)
                weight[k] = sign * float(anchor_gain)
            self.register_buffer("anchor_weight", weight)
            self.register_buffer("anchor_bias", torch.tensor(0.0))
            self.register_buffer("anchor_bound", torch.tensor(float(anchor_bound)))

    def anchor_logit(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, P, H, W) indices -> (B, 1, H, W) the anchor's logit difference d."""
        w = self.anchor_weight.to(indices.dtype)
        return torch.einsum("bphw,p->bhw", indices, w)[:, None] + self.anchor_bias.to(indices.dtype)

    def forward(self, x: torch.Tensor):
        z = self.spectral(x)
        out = self.net(z)
        if self.index_head is None and not self.anchored:
            return out
        first = out[0] if isinstance(out, tuple | list) else out
        indices = z[:, z.shape[1] - len(self.spectral.pairs) :]
        if self.index_head is not None:
            first = first + self.index_head(indices)
        else:
            if first.shape[1] != 2:
                raise ValueError(f"an index anchor needs 2 classes, the net gives {first.shape[1]}")
            half = self.anchor_logit(indices) / 2
            bound = self.anchor_bound.to(first.dtype)
            first = torch.cat([-half, half], dim=1) + bound * torch.tanh(first / bound)
        if isinstance(out, tuple | list):
            return (first, *out[1:])
        return first


def fit_anchor(
    model: WithSpectralIndices,
    images: torch.Tensor,
    labels: torch.Tensor,
    l2: float = 1e-4,
    max_pixels: int = ANCHOR_PIXELS,
    seed: int = 0,
) -> dict[str, float]:
    """Set a fitted anchor (``anchor="fitted"``) by logistic regression on the indices.

    Minimises the mean binary cross-entropy of water (label 1) vs land (label 0) of
    d = w . indices + c over the labelled pixels (labels 0/1; any other value is ignored),
    plus ``l2`` x |w|^2, with L-BFGS in float64 on the CPU: convex, so the result does not
    depend on a seed beyond the pixel subsample (at most ``max_pixels``, drawn with ``seed``).

    Args:
        model: a :class:`WithSpectralIndices` with ``anchor="fitted"``.
        images: (N, C, H, W) model input (reflectance), the training tiles without augmentation.
        labels: (N, H, W) int labels.

    Returns:
        {"loss": final mean BCE, "pixels": pixels used, "accuracy": on those pixels}.

    Raises:
        ValueError: the model has no anchor, or no labelled pixels of both classes.
    """
    if not getattr(model, "anchored", False):
        raise ValueError("fit_anchor needs a model built with an anchor (SpectralOptions)")
    with torch.no_grad():
        idx = model.spectral.indices(images.float().cpu())  # (N, P, H, W)
    feats = idx.permute(0, 2, 3, 1).reshape(-1, idx.shape[1])
    y = labels.cpu().reshape(-1)
    keep = (y == 0) | (y == 1)
    feats, y = feats[keep], y[keep]
    if y.numel() == 0 or y.min() == y.max():
        raise ValueError("fit_anchor needs labelled pixels of both water and land")
    if y.numel() > max_pixels:
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(y.numel(), generator=g)[:max_pixels]
        feats, y = feats[pick], y[pick]
    feats, y = feats.double(), y.double()
    w = torch.zeros(feats.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(feats @ w + c, y)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, c = w.detach(), c.detach()
    d = feats @ w + c
    model.anchor_weight.copy_(w.to(model.anchor_weight))
    model.anchor_bias.copy_(c.to(model.anchor_bias))
    return {
        "loss": float(nn.functional.binary_cross_entropy_with_logits(d, y)),
        "pixels": int(y.numel()),
        "accuracy": float(((d > 0).double() == y).double().mean()),
    }


def pair_position(pairs: Sequence[tuple[int, int]], pair: Sequence[int]) -> tuple[int, float]:
    """(k, sign): pair (a, b) is ``pairs[k]`` (sign 1) or its reverse (b, a) is (sign -1).

    Raises:
        ValueError: neither (a, b) nor (b, a) is among ``pairs``.
    """
    a, b = (int(v) for v in pair)
    if (a, b) in pairs:
        return pairs.index((a, b)), 1.0
    if (b, a) in pairs:
        return pairs.index((b, a)), -1.0
    raise ValueError(f"index pair {(a, b)} is not among the spectral pairs {list(pairs)}")


def segmentation_head(net: nn.Module) -> nn.Conv2d:
    """The final 1x1 conv of head 0 of a zoo model (``net.head.heads[0]``, blocks.OutputHeads).

    Raises:
        ValueError: ``net`` has no such head (not a model of the zoo).
    """
    heads = getattr(getattr(net, "head", None), "heads", None)
    if not heads or not isinstance(heads[0], nn.Conv2d):
        raise ValueError(f"{type(net).__name__} has no output head net.head.heads[0] (a Conv2d)")
    return heads[0]


def init_from_index(
    model: WithSpectralIndices,
    pair: Sequence[int] = NDWI_PAIR,
    gain: float = DEFAULT_INIT_GAIN,
) -> WithSpectralIndices:
    """Start a residual model at the classical index decision ``index(pair) > 0`` (in place).

    The residual ``index_head`` is set so that logit(water) - logit(land) = ``gain`` x the
    normalised difference (x[a] - x[b]) / (x[a] + x[b] + eps) of ``pair`` = (a, b) (by band
    index; the default (1, 3) is NDWI = (B3 - B8) / (B3 + B8) for the bands B2, B3, B4, B8):
    +gain/2 on the water logit, -gain/2 on the land logit, zero bias, zero for every other
    index. Head 0's final 1x1 conv of the network (weights and bias) is zeroed, so the
    untrained model's logits are exactly the index head's: it predicts water (argmax, or
    p(water) > 0.5) exactly where the index is > 0, ties (index 0) being land. Training then
    learns spatial corrections to NDWI instead of starting from a random decision. The pair
    (a, b) or (b, a) must be one of the layer's pairs; (b, a) uses the negated index.

    Args:
        model: a :class:`WithSpectralIndices` with an ``index_head`` of 2 classes.
        pair: band indices (a, b) of the index; water where it is positive.
        gain: k > 0, the logit scale of the start (10: p(water) = 0.88 at index 0.2).

    Raises:
        ValueError: no residual index head, not 2 classes, the pair is not among the layer's
            pairs, or gain <= 0.
    """
    head = getattr(model, "index_head", None)
    if head is None or head.out_channels != 2:
        raise ValueError("index initialisation needs a residual index head with 2 classes")
    if not gain > 0:
        raise ValueError(f"index init gain must be positive, got {gain!r}")
    k, sign = pair_position(model.spectral.pairs, pair)
    conv = segmentation_head(model.net)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1, k] = sign * gain / 2
        head.weight[0, k] = -sign * gain / 2
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
    return model
