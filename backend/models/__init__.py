"""Model zoo: the paper's SeNet, DeepUNet and MU-Net, a plain U-Net baseline, and a U-Net on an
ImageNet-pretrained EfficientNet-Lite0 encoder (``lite0_unet``, backend/models/lite_unet.py).

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

``spectral=SpectralOptions(...)`` (or its dict) puts a fixed
:class:`~backend.models.spectral.SpectralIndices` layer in front of any model: it appends
brightness-invariant normalised differences such as NDWI to the input bands, with the modes of
:class:`~backend.models.spectral.SpectralOptions` (backend/models/spectral.py).

``build_model(name, kwargs)`` rebuilds a checkpoint's architecture: the composites of
:data:`COMPOSITES` ("fusion", backend/models/fusion.py, fuses the RGB water network with fixed
water indices) and, through :func:`upgrade_kwargs`, checkpoints written before
``SpectralOptions`` existed.

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
from backend.models.lite_unet import lite0_unet
from backend.models.munet import munet
from backend.models.senet import senet
from backend.models.spectral import (
    SpectralIndices,
    SpectralOptions,
    WithSpectralIndices,
    init_from_index,
)
from backend.models.unet import unet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "deepunet": deepunet,
    "lite0_unet": lite0_unet,
    "munet": munet,
    "senet": senet,
    "unet": unet,
}

# Models built from other models (their kwargs name the parts); see build_model.
COMPOSITES: dict[str, Callable[..., nn.Module]] = {
    "fusion": fusion,
}

__all__ = [
    "COMPOSITES",
    "MODELS",
    "SpectralOptions",
    "build_model",
    "create_model",
    "list_models",
    "upgrade_kwargs",
]

# The flat keys older checkpoints store the index layer under -> SpectralOptions fields
# ("spectral_indices", the fifth, holds the mode or the pairs; see upgrade_kwargs).
LEGACY_SPECTRAL_KEYS = {
    "index_init_pair": "index_pair",
    "index_init_gain": "index_gain",
    "anchor_bound": "anchor_bound",
}


def build_model(name: str, kwargs: dict) -> nn.Module:
    """A checkpoint's ``arch`` -> a model: a composite (:data:`COMPOSITES`) from its own
    keyword arguments and this function, to build its parts, else :func:`create_model` with
    :func:`upgrade_kwargs`."""
    if name in COMPOSITES:
        model = COMPOSITES[name](build_model, **kwargs)
        model.arch_name = name
        return model
    return create_model(name, **upgrade_kwargs(kwargs))


def upgrade_kwargs(kwargs: dict) -> dict:
    """A checkpoint's architecture kwargs, of any version -> :func:`create_model`'s keywords.

    Checkpoints written before :class:`SpectralOptions` (the bundled waterseg-default.pt and
    waterseg-rgbn.pt among them) store the index layer as flat keys: ``spectral_indices``
    (False or None: no layer; True: mode "all"; a mode name; or a list of band pairs, mode
    "all" on those pairs) and ``index_init_pair``, ``index_init_gain``, ``anchor_bound``
    (:data:`LEGACY_SPECTRAL_KEYS`; ignored, as they always were, without a layer). They
    become one ``spectral`` dict; kwargs without them are returned unchanged (as a copy).

    Raises:
        ValueError: the kwargs hold both ``spectral`` and the flat keys.
    """
    flat = [k for k in ("spectral_indices", *LEGACY_SPECTRAL_KEYS) if k in kwargs]
    out = {k: v for k, v in kwargs.items() if k not in flat}
    if not flat:
        return out
    if "spectral" in kwargs:
        raise ValueError(f"both 'spectral' and the older keys {flat}; keep one form")
    value = kwargs.get("spectral_indices", False)
    if value is False or value is None:
        return out
    spectral = {new: kwargs[old] for old, new in LEGACY_SPECTRAL_KEYS.items() if old in kwargs}
    if value is True or isinstance(value, str):
        spectral["mode"] = "all" if value is True else value
    else:
        spectral["pairs"] = value
    out["spectral"] = spectral
    return out


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
    members: int = 1,
    spectral: SpectralOptions | dict | None = None,
) -> nn.Module:
    """Build a registered model in training mode with freshly initialised weights.

    Args:
        name: one of ``list_models()``.
        width: "base", "half" or a positive channel multiplier (also as a string, "0.125").
        in_channels: number of input bands C of the (B, C, H, W) float input.
        num_classes: output channels of each head (2: land, water).
        heads: 1 (one logits tensor) or 2 (a tuple of two logits tensors).
        members: 1 (default) for one model; K > 1 for an :class:`Ensemble` of K independently
            initialised copies whose forward returns the mean of their logits (per head).
        spectral: None (default) for the plain model; :class:`SpectralOptions` (or its dict,
            as a checkpoint stores it) to put the fixed spectral-index layer in front of it, in
            one of the modes listed there. The result is a ``WithSpectralIndices`` (weights
            under ``net.``).

    Raises:
        ValueError: unknown name or width, a non-positive channel/class count, heads not in
            (1, 2), or bad spectral options; the message lists the valid choices.
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
    options = SpectralOptions.parse(spectral)
    if members > 1:
        model = Ensemble(
            [
                create_model(
                    name,
                    width=width,
                    in_channels=in_channels,
                    num_classes=num_classes,
                    heads=heads,
                    spectral=options,
                )
                for _ in range(members)
            ]
        )
        model.arch_name, model.width, model.num_heads = name, width, heads
        return model
    layer = None
    if options is not None:
        layer = SpectralIndices(in_channels, options.pairs, keep_input=options.mode != "only")
    model = MODELS[name](
        width=multiplier,
        in_channels=layer.out_channels if layer else in_channels,
        num_classes=num_classes,
        heads=heads,
    )
    if options is not None:
        anchors = {"ndwi-anchored": options.index_pair, "anchored": "fitted"}
        model = WithSpectralIndices(
            layer,
            model,
            residual_classes=num_classes if options.mode in ("residual", "ndwi-init") else None,
            anchor=anchors.get(options.mode),
            anchor_gain=options.index_gain,
            anchor_bound=options.anchor_bound,
        )
        if options.mode == "ndwi-init":
            init_from_index(model, options.index_pair, options.index_gain)
    model.arch_name = name
    model.width = width
    model.num_heads = heads
    return model
