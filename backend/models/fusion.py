"""A spatial network that learned water from many scenes, fused with fixed water indices.

Multispectral water maps need two kinds of evidence. Water indices such as NDWI (McFeeters
1996) and MNDWI (Xu 2006) are physics: water absorbs near and short-wave infrared, so they
carry over to any scene, but a pixel-wise rule has no notion of shape, shadow or context, and
its best threshold moves from scene to scene. A convolutional network sees shape and context,
but one trained on a handful of multispectral tiles learns those tiles' quirks.

:class:`IndexFusion` takes both from where they are reliable:

- the **spatial term** is the RGB water network (``waterseg-rgb``), trained on 48
  hand-labelled Sentinel-2 scenes from 16 acquisitions worldwide with rendering augmentation
  (stretch, gamma, haze, JPEG). It sees a true-colour render of the input,
  ``clip(gain * (B4, B3, B2), 0, 1)``, normalised as that network expects;
- the **index terms** are fixed normalised differences of the input bands (no weights);
- the decision is ``w_net * net_logit + sum_k w_k * index_k + bias``: a handful of numbers,
  the only thing fitted on multispectral data (``scripts/build_fusion.py``).

Input: reflectance (B, C, H, W) in 0..1 of the bands named in ``bands`` (the checkpoint's
scale turns digital numbers into reflectance). Output: (B, 2, H, W) logits, class 1 = water.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from backend.core.water_indices import INDEX_BANDS

# Normalised differences by name: (minuend, subtrahend) Sentinel-2 bands, as the engine's
# index methods define them (backend/core/water_indices.py).
INDEX_PAIRS: dict[str, tuple[str, str]] = {k: INDEX_BANDS[k] for k in ("ndwi", "mndwi")}
TRUE_COLOUR = ("B4", "B3", "B2")  # red, green, blue
_EPS = 1e-6


class IndexFusion(nn.Module):
    """``w_net x`` RGB-network water logit ``+ sum_k w_k x index_k + bias`` (module docstring).

    Args:
        bands: Sentinel-2 names of the input channels, e.g. ["B2", "B3", "B4", "B8", "B11",
            "B12"]; must contain B2, B3, B4 and the bands of every index.
        net: the RGB network, mapping (B, 3, H, W) normalised red, green, blue to logits.
        rgb_mean, rgb_std: the RGB network's normalisation of 0..1 values (its checkpoint's).
        gain: reflectance -> 0..1 display value factor of the true-colour render.
        indices: names from :data:`INDEX_PAIRS`.
    """

    def __init__(
        self,
        bands: Sequence[str],
        net: nn.Module,
        rgb_mean: Sequence[float],
        rgb_std: Sequence[float],
        gain: float,
        indices: Sequence[str] = ("ndwi", "mndwi"),
    ):
        super().__init__()
        bands = list(bands)
        unknown = [k for k in indices if k not in INDEX_PAIRS]
        if unknown:
            raise ValueError(f"unknown index {unknown}; valid: {', '.join(INDEX_PAIRS)}")
        needed = set(TRUE_COLOUR) | {b for k in indices for b in INDEX_PAIRS[k]}
        missing = sorted(needed - set(bands))
        if missing:
            raise ValueError(f"bands {bands} lack {missing}, needed by the fusion")
        self.bands = bands
        self.indices = list(indices)
        self.net = net
        self.gain = float(gain)
        self.register_buffer("rgb_pos", torch.tensor([bands.index(b) for b in TRUE_COLOUR]))
        pairs = [(bands.index(a), bands.index(b)) for a, b in (INDEX_PAIRS[k] for k in indices)]
        self.register_buffer("pair_pos", torch.tensor(pairs, dtype=torch.long).reshape(-1, 2))
        self.register_buffer("rgb_mean", torch.tensor(list(rgb_mean)).reshape(1, 3, 1, 1))
        self.register_buffer("rgb_std", torch.tensor(list(rgb_std)).reshape(1, 3, 1, 1))
        # w_net, then one weight per index; bias. Set by fitting (scripts/build_fusion.py).
        self.weights = nn.Parameter(torch.zeros(1 + len(self.indices)))
        self.bias = nn.Parameter(torch.zeros(1))
        self.size_multiple = int(getattr(net, "size_multiple", 1) or 1)

    def render(self, x: torch.Tensor) -> torch.Tensor:
        """Reflectance (B, C, H, W) -> the RGB network's input (B, 3, H, W)."""
        rgb = (x.index_select(1, self.rgb_pos) * self.gain).clamp(0.0, 1.0)
        return (rgb - self.rgb_mean) / self.rgb_std

    def evidence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K, H, W): the RGB network's water logit, then the K indices."""
        out = self.net(self.render(x))
        logits = out[0] if isinstance(out, tuple | list) else out
        terms = [logits[:, 1:2] - logits[:, 0:1]]
        for k in range(self.pair_pos.shape[0]):
            a = x[:, self.pair_pos[k, 0]].unsqueeze(1)
            b = x[:, self.pair_pos[k, 1]].unsqueeze(1)
            terms.append((a - b) / (a + b).abs().clamp_min(_EPS))
        return torch.cat(terms, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ev = self.evidence(x)
        water = (ev * self.weights.reshape(1, -1, 1, 1)).sum(1, keepdim=True) + self.bias
        return torch.cat([torch.zeros_like(water), water], dim=1)


def fusion(
    build: Callable[[str, dict], nn.Module],
    *,
    bands: Sequence[str],
    rgb_arch: dict,
    rgb_mean: Sequence[float],
    rgb_std: Sequence[float],
    gain: float,
    indices: Sequence[str] = ("ndwi", "mndwi"),
) -> IndexFusion:
    """Build an :class:`IndexFusion` with a fresh RGB network ``rgb_arch`` = {"name", "kwargs"}
    (weights come from the checkpoint), rebuilt by ``build`` as any stored architecture is
    (``backend.models.build_model`` passes itself, so this module does not import the
    package that imports it)."""
    net = build(rgb_arch["name"], dict(rgb_arch.get("kwargs", {})))
    return IndexFusion(bands, net, rgb_mean, rgb_std, gain, indices)
