"""``segment --method ndwi|mndwi|awei_sh|wi2015``: a classical water index instead of a model.

The index (formulas, papers and the bands each needs: :mod:`backend.baselines`) runs through
the same engine as a model: tiles, blending, mask, shoreline. It is turned into a
probability-like field ``p = sigmoid(k * index)``, so ``p = 0.5`` is the index's own water
threshold (index = 0): the mask at the default threshold 0.5 is "index > 0" and the shoreline
is the index's zero contour. Inputs are Sentinel-2 reflectance x 10000 (as for the bundled
models); numpy only, no torch.
"""

from __future__ import annotations

import numpy as np

from backend.baselines import INDEX_BANDS, water_index
from backend.checkpoint import InputSpec

# How steep the sigmoid is per index unit: the normalised differences and AWEI_sh span about
# -1..1 on reflectance, WI2015 about -100..100.
SHARPNESS = {"ndwi": 10.0, "mndwi": 10.0, "awei_sh": 10.0, "wi2015": 0.1}


def index_spec(method: str) -> InputSpec:
    """The input spec of an index: its bands in formula order, reflectance = value / 10000."""
    return InputSpec(bands=list(INDEX_BANDS[method]), scale=1e-4, offset=0.0)


class IndexPredictor:
    """tiles float32 (N, C, T, T) reflectance of ``INDEX_BANDS[method]`` -> probability-like
    float32 (N, T, T) = sigmoid(k * index); 0 where the index is undefined (NaN)."""

    device = "cpu"

    def __init__(self, method: str, batch_size: int | None = None):
        self.method = method
        self.bands = INDEX_BANDS[method]
        self.k = SHARPNESS[method]
        self.batch_size = batch_size or 8

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        index = water_index(self.method, {b: tiles[:, i] for i, b in enumerate(self.bands)})
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-self.k * index))
        return np.nan_to_num(p, nan=0.0).astype(np.float32, copy=False)
