"""``segment --method ndwi|mndwi|awei_sh|wi2015|*-adaptive``: a water index instead of a model.

The index (formulas, papers and the bands each needs: :mod:`backend.core.water_indices`) runs
through the same engine as a model: tiles, blending, mask, shoreline. It is turned into a
probability-like field ``p = sigmoid(k * (index - t))``, so ``p = 0.5`` is the index's water
threshold ``t``: the mask at the default threshold 0.5 is "index > t" and the shoreline is the
index's ``t`` contour. ``t`` is 0 for the fixed methods; an adaptive method
(:data:`backend.core.water_indices.ADAPTIVE_INDICES`) sets it per raster with
:func:`scene_threshold` before the raster is streamed. Inputs are Sentinel-2 reflectance x 10000 (as for the bundled
models); numpy only, no torch.
"""

from __future__ import annotations

import numpy as np

from backend.core.checkpoint import InputSpec
from backend.core.water_indices import (
    ADAPTIVE_INDICES,
    EDGE_QUANTILES,
    EDGE_SPREAD_WARNING,
    NO_HAZE,
    Haze,
    SceneThreshold,
    dark_object_haze,
    edge_otsu_threshold,
    method_bands,
    method_index,
)

# How steep the sigmoid is per index unit: the normalised differences and AWEI_sh span about
# -1..1 on reflectance, WI2015 about -100..100.
SHARPNESS = {"awei_sh": 10.0, "wi2015": 0.1}
DEFAULT_SHARPNESS = 10.0

OVERVIEW_PIXELS = 4_000_000
"""An adaptive method learns its threshold from the raster read at most this many pixels
(nearest resampling: pure pixels, no blends); a 10980 x 10980 tile is read at 1/6."""


def index_spec(method: str) -> InputSpec:
    """The input spec of an index: its bands in formula order, reflectance = value / 10000."""
    return InputSpec(bands=list(method_bands(method)), scale=1e-4, offset=0.0)


def is_adaptive(method: str) -> bool:
    return method in ADAPTIVE_INDICES


class IndexPredictor:
    """tiles float32 (N, C, T, T) reflectance of ``method_bands(method)`` -> probability-like
    float32 (N, T, T) = sigmoid(k * (index - threshold)); 0 where the index is undefined.
    ``haze`` (set per raster with the threshold, adaptive methods only) is subtracted from the
    bands first."""

    device = "cpu"

    def __init__(self, method: str, batch_size: int | None = None):
        self.method = method
        self.bands = method_bands(method)
        self.k = SHARPNESS.get(method, DEFAULT_SHARPNESS)
        self.batch_size = batch_size or 8
        self.threshold = 0.0
        self.haze: Haze = NO_HAZE

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        bands = {b: self.haze.subtract(b, tiles[:, i]) for i, b in enumerate(self.bands)}
        index = method_index(self.method, bands)
        with np.errstate(over="ignore", invalid="ignore"):
            p = 1.0 / (1.0 + np.exp(-self.k * (index - np.float32(self.threshold))))
        return np.nan_to_num(p, nan=0.0).astype(np.float32, copy=False)


def scene_haze(source, refl: np.ndarray, valid: np.ndarray, bands, extra_offset: float) -> Haze:
    """:func:`dark_object_haze` of a raster read at ``valid``'s shape: ``refl`` holds ``bands``
    as reflectance; B2 is read too when the raster has it (``source.held``)."""
    held = getattr(source, "held", {}) or {}
    blue = None
    if "B2" in bands:
        blue = refl[list(bands).index("B2")]
    elif "B2" in held:
        raw_b2, valid_b2 = source.read_bands_and_validity([held["B2"]], *valid.shape)
        blue = InputSpec(bands=["B2"], scale=1e-4, offset=0.0).normalise(
            raw_b2, extra_offset=extra_offset
        )[0]
        valid = valid & valid_b2
    return dark_object_haze({b: refl[i] for i, b in enumerate(bands)}, valid, blue)


def scene_threshold(
    source, method: str, extra_offset: float = 0.0
) -> tuple[SceneThreshold, str, Haze]:
    """The adaptive threshold of one open raster (a ``RasterSource`` mapped to
    ``method_bands(method)``) -> (what :func:`edge_otsu_threshold` found, one log line, the
    scene's haze to subtract first).

    Reads the raster once at up to :data:`OVERVIEW_PIXELS` pixels and scales it as the
    engine will (``extra_offset``: ``--l2a-offset``'s -1000); nodata pixels (by the source's
    own rules) are left out. On top-of-atmosphere rasters the haze is removed before the
    index (:func:`backend.core.water_indices.dark_object_haze`)."""
    factor = source.overview_factor(OVERVIEW_PIXELS)
    raw, valid = source.read_decimated(OVERVIEW_PIXELS)
    bands = method_bands(method)
    refl = index_spec(method).normalise(raw, extra_offset=extra_offset)
    haze = scene_haze(source, refl, valid, bands, extra_offset) if valid.any() else NO_HAZE
    index = method_index(method, {b: haze.subtract(b, refl[i]) for i, b in enumerate(bands)})
    index[~valid] = np.nan
    if not np.isfinite(index).any():
        found = SceneThreshold(0.0, 0, 0.0, fallback="no valid pixels")
    else:
        found = edge_otsu_threshold(index)
    names = " and ".join(i.upper() for i in ADAPTIVE_INDICES[method])
    what = names if len(ADAPTIVE_INDICES[method]) == 1 else f"mean of {names}"
    read = "" if factor == 1 else f" (read at 1/{factor})"
    if found.fallback:
        line = (
            f"{what}: no clear water/land edge in this raster ({found.fallback}){read}; "
            "water where the index > 0, the fixed threshold"
        )
    else:
        top = f"{100 * (1 - max(EDGE_QUANTILES)):.0f}-{100 * (1 - min(EDGE_QUANTILES)):.0f} %"
        line = (
            f"{what}: water where the index > {found.threshold:+.3f}, this raster's Otsu "
            f"threshold on its strongest edges (median over the top {top} of the index "
            f"gradient; {found.pixels} edge pixels at the middle one){read}"
        )
        if found.spread > EDGE_SPREAD_WARNING:
            line += (
                f"; WARNING: those thresholds spread over {found.spread:.2f}: strong edges that "
                "are not water/land (surf, sand, fields), check the mask or pass --method mndwi"
            )
    if haze.why:
        line += f"; {haze.why}"
    return found, line, haze
