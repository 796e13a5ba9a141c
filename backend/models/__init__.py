"""Model zoo: the paper's SeNet, DeepUNet and MU-Net, plus a plain U-Net baseline.

    >>> model = create_model("munet", width="half", heads=2)
    >>> logits, edge_logits = model(torch.zeros(1, 4, 256, 256))

``create_model(name, width=..., in_channels=4, num_classes=2, heads=1)`` builds a model from
the registry, a plain dict ``MODELS`` of name -> constructor. ``width`` is "base" (Table I of
Gruba & Ciecholewski), "half", or a positive multiplier of the base channels (e.g. 0.125 for
tiny test models). Every model maps a float (B, in_channels, H, W) tensor to logits
(B, num_classes, H, W) (class 1 = water, class 0 = land), or to a tuple of two such tensors
when ``heads == 2`` (head 0 = segmentation, used at inference; head 1 = the second loss term,
SeNet's structured edge branch). ``model.size_multiple`` is the number H and W must be
multiples of. See docs/models.md for channel lists, parameter counts and FLOPs.

``spectral_indices=True`` (or a list of band index pairs) puts a fixed
:class:`~backend.models.spectral.SpectralIndices` layer in front of any model: it appends
brightness-invariant normalised differences such as NDWI to the input bands
(backend/models/spectral.py).

``build_model(name, kwargs)`` also builds the composites of :data:`COMPOSITES`: "fusion"
(backend/models/fusion.py) fuses the RGB water network with fixed water indices.

``members=K`` (K > 1) builds K independent copies and averages their logits
(:class:`~backend.models.ensemble.Ensemble`, backend/models/ensemble.py; weights under
``members.<i>.``); K = 1, the default, is the plain model.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from backend.models.blocks import resolve_width
from backend.models.deepunet import deepunet
from backend.models.ensemble import Ensemble
from backend.models.fusion import fusion
from backend.models.munet import munet
from backend.models.senet import senet
from backend.models.spectral import (
    DEFAULT_ANCHOR_BOUND,
    DEFAULT_INIT_GAIN,
    NDWI_PAIR,
    SpectralIndices,
    WithSpectralIndices,
    init_from_index,
)
from backend.models.unet import unet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "deepunet": deepunet,
    "munet": munet,
    "senet": senet,
    "unet": unet,
}

# Models built from other models (their kwargs name the parts); see build_model.
COMPOSITES: dict[str, Callable[..., nn.Module]] = {
    "fusion": fusion,
}

__all__ = ["COMPOSITES", "MODELS", "build_model", "create_model", "list_models"]


def build_model(name: str, kwargs: dict) -> nn.Module:
    """A checkpoint's ``arch`` -> a model: a composite (:data:`COMPOSITES`) from its own
    keyword arguments, else :func:`create_model`."""
    if name in COMPOSITES:
        model = COMPOSITES[name](**kwargs)
        model.arch_name = name
        return model
    return create_model(name, **kwargs)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def create_model(
    name: str,
    *,
    width: str | float = "base",
    in_channels: int = 4,
    num_classes: int = 2,
    heads: int = 1,
    spectral_indices: bool | str | list[list[int]] = False,
    members: int = 1,
    index_init_pair: tuple[int, int] = NDWI_PAIR,
    index_init_gain: float = DEFAULT_INIT_GAIN,
    anchor_bound: float = DEFAULT_ANCHOR_BOUND,
) -> nn.Module:
    """Build a registered model in training mode with freshly initialised weights.

    Args:
        name: one of ``list_models()``.
        width: "base", "half" or a positive channel multiplier (also as a string, "0.125").
        in_channels: number of input bands C of the (B, C, H, W) float input.
        num_classes: output channels of each head (2: land, water).
        heads: 1 (one logits tensor) or 2 (a tuple of two logits tensors).
        spectral_indices: False (default); True to append the normalised difference of every
            pair of input bands to the input (a fixed layer, no weights); "only" to feed the
            model those indices instead of the bands; "residual" to append them and add a learned
            per-pixel linear map of them to the segmentation logits; "ndwi-init": "residual"
            started from NDWI (``spectral.init_from_index``: the untrained model predicts
            water exactly where NDWI = (B3 - B8) / (B3 + B8) > 0, band pair ``index_init_pair``,
            logit scale ``index_init_gain``; head 0's own conv zeroed); "ndwi-anchored": the
            fixed decision ``index_init_gain`` x NDWI plus the net's correction bounded by
            ``anchor_bound`` per logit (nothing about NDWI is learned, so wherever NDWI is clear
            the model agrees with it; see ``WithSpectralIndices``); "anchored": the same with a
            linear decision on all the indices fitted by logistic regression on the training
            tiles before the net trains (``spectral.fit_anchor``); or a list of band index
            pairs [i, j] (appended). The result is a ``WithSpectralIndices`` (weights under
            ``net.``).
        index_init_pair: with "ndwi-init", the band indices (a, b) of the starting index
            (x[a] - x[b]) / (x[a] + x[b]); default (1, 3) = (B3, B8) of the bands B2, B3, B4, B8.
        index_init_gain: with "ndwi-init", logit(water) - logit(land) = gain x index at start;
            with "ndwi-anchored", the fixed gain of the index.
        anchor_bound: with "ndwi-anchored", the most the net may move each logit.
        members: 1 (default) for one model; K > 1 for an :class:`Ensemble` of K independently
            initialised copies whose forward returns the mean of their logits (per head).

    Raises:
        ValueError: unknown name or width, or a non-positive channel/class count, or heads
            not in (1, 2); the message lists the valid choices.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    multiplier = resolve_width(width)
    for label, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if isinstance(heads, bool) or heads not in (1, 2):
        raise ValueError(f"heads must be 1 or 2, got {heads!r}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(f"members must be a positive integer, got {members!r}")
    if members > 1:
        model = Ensemble(
            [
                create_model(
                    name,
                    width=width,
                    in_channels=in_channels,
                    num_classes=num_classes,
                    heads=heads,
                    spectral_indices=spectral_indices,
                    index_init_pair=index_init_pair,
                    index_init_gain=index_init_gain,
                    anchor_bound=anchor_bound,
                )
                for _ in range(members)
            ]
        )
        model.arch_name, model.width, model.num_heads = name, width, heads
        return model
    spectral = None
    if spectral_indices is not False and spectral_indices is not None:
        modes = ("all", "only", "residual", "ndwi-init", "ndwi-anchored", "anchored")
        if isinstance(spectral_indices, str) and spectral_indices not in modes:
            raise ValueError(
                f"spectral_indices {spectral_indices!r}: use True, {', '.join(map(repr, modes))} "
                "or band pairs"
            )
        pairs = (
            None
            if spectral_indices is True or isinstance(spectral_indices, str)
            else spectral_indices
        )
        spectral = SpectralIndices(in_channels, pairs, keep_input=spectral_indices != "only")
    model = MODELS[name](
        width=multiplier,
        in_channels=spectral.out_channels if spectral else in_channels,
        num_classes=num_classes,
        heads=heads,
    )
    if spectral is not None:
        residual = num_classes if spectral_indices in ("residual", "ndwi-init") else None
        anchors = {"ndwi-anchored": index_init_pair, "anchored": "fitted"}
        mode = spectral_indices if isinstance(spectral_indices, str) else None
        model = WithSpectralIndices(
            spectral,
            model,
            residual_classes=residual,
            anchor=anchors.get(mode),
            anchor_gain=index_init_gain,
            anchor_bound=anchor_bound,
        )
        if spectral_indices == "ndwi-init":
            init_from_index(model, index_init_pair, index_init_gain)
    model.arch_name = name
    model.width = width
    model.num_heads = heads
    return model
