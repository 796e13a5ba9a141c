"""s2cloudless: Sinergise's pixel cloud detector for Sentinel-2 L1C, run once per raster on a
coarse grid.

Zupanc A., "Improving Cloud Detection with Machine Learning", Sentinel Hub blog (Medium), 2017;
Skakun S. et al., "Cloud Mask Intercomparison eXercise (CMIX)", Remote Sensing of Environment
274:112990, 2022. The model is a LightGBM classifier of single pixels of 10 L1C top-of-atmosphere
reflectance bands (:data:`MODEL_BANDS`, reflectance = DN / 10000). It ships as a text file in the
PyPI package ``s2cloudless`` (Sinergise, CC BY-SA 4.0). That package imports cv2 and sentinelhub
when it is imported, so it never is: :func:`model_file` finds the file by the package's location
(``importlib.util.find_spec`` does not run the package) and :func:`load_model` reads it with
lightgbm.

Post-processing as the package's ``S2PixelCloudDetector.get_mask_from_prob`` does it (cv2 there,
scipy.ndimage here, same result): the probability is averaged over a disk (correlation with a
normalised disk, edges reflected, as cv2.BORDER_REFLECT), compared with the threshold, and the
flags are dilated with a disk (outside the grid counts as clear). The authors' recommended
setting is used: about 160 m cells (:data:`RESOLUTION_M`), ``average_over=4``,
``dilation_size=2``, threshold 0.4; a flagged cloud therefore grows by about 320 m.

The model flags clouds, not their shadows. :func:`cloud_flags` works on arrays (the caller
reads the raster); :class:`backend.segment.clouds.CloudGrid` looks pixels up in the result.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL_BANDS = ("B1", "B2", "B4", "B5", "B8", "B8A", "B9", "B10", "B11", "B12")
PACKAGE = "s2cloudless==1.7.3"  # the pip requirement scripts/setup.sh installs (--no-deps)
MODEL_FILE = "pixel_s2_cloud_detector_lightGBM_v0.1.txt"
THRESHOLD = 0.4
AVERAGE_OVER = 4  # disk radius in grid cells
DILATION_SIZE = 2  # disk radius in grid cells
RESOLUTION_M = 160.0
SCALE = 1e-4  # L1C DN -> top-of-atmosphere reflectance


class ModelUnavailable(Exception):
    """lightgbm or the model file is not installed; the message says which and how to fix it."""


def model_file() -> Path:
    """The model file inside the installed s2cloudless package, found without importing it."""
    spec = importlib.util.find_spec("s2cloudless")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / MODEL_FILE
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"the s2cloudless model file is not installed ({PACKAGE}; run make setup)"
    )


@lru_cache(maxsize=1)
def load_model():
    """The s2cloudless LightGBM model (a ``lightgbm.Booster``), read once per process."""
    try:
        import lightgbm
    except ImportError:
        raise ModelUnavailable("lightgbm is not installed (run make setup)") from None
    path = model_file()
    try:
        return lightgbm.Booster(model_file=str(path))
    except Exception as exc:  # lightgbm raises its own LightGBMError for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelUnavailable(f"cannot read {path} ({first}; run make setup)") from None


def available() -> str:
    """ "" when s2cloudless can run here, else why not (one clause, with the fix)."""
    try:
        load_model()
    except ModelUnavailable as exc:
        return str(exc)
    return ""


def disk(radius: int) -> np.ndarray:
    """Bool (2r+1, 2r+1): the pixels within ``radius`` of the centre, x^2 + y^2 <= r^2 (the
    disk of skimage.morphology and of s2cloudless's cv2_disk for the radii used here)."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def probability(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cloud probability, float32 (h, w), of TOA ``reflectance`` float (10, h, w) in
    :data:`MODEL_BANDS` order; 0 where ``valid`` (bool (h, w)) is False."""
    out = np.zeros(valid.shape, np.float32)
    if valid.any():
        pixels = np.ascontiguousarray(reflectance[:, valid].T, dtype=np.float32)
        out[valid] = load_model().predict(pixels)
    return out


def flags_from_probability(
    prob: np.ndarray,
    threshold: float = THRESHOLD,
    average_over: int = AVERAGE_OVER,
    dilation_size: int = DILATION_SIZE,
) -> np.ndarray:
    """Bool (h, w): ``prob`` float (h, w) averaged over a disk of radius ``average_over``,
    above ``threshold``, dilated by a disk of radius ``dilation_size`` (0 skips a step)."""
    from scipy import ndimage

    if average_over:
        kernel = disk(average_over).astype(np.float64)
        prob = ndimage.correlate(prob.astype(np.float64), kernel / kernel.sum(), mode="reflect")
    flags = prob > threshold
    if dilation_size:
        flags = ndimage.binary_dilation(flags, structure=disk(dilation_size))
    return flags


def cloud_flags(
    raw: np.ndarray, valid: np.ndarray, extra_offset: float = 0.0, **post: float
) -> np.ndarray:
    """Bool (h, w) cloud flags of a coarse read ``raw`` (10, h, w) of :data:`MODEL_BANDS` in
    L1C DN (reflectance x 10000; ``extra_offset`` -1000 for products with the +1000 offset of
    processing baseline 04.00 on), ``valid`` bool (h, w); ``post``: keyword arguments of
    :func:`flags_from_probability` (default: the authors' setting)."""
    reflectance = (raw.astype(np.float32) + np.float32(extra_offset)) * np.float32(SCALE)
    return flags_from_probability(probability(reflectance, valid), **post)


def grid_step(pixel_m: float) -> int:
    """Raster pixels per grid cell so that a cell is about :data:`RESOLUTION_M` wide."""
    return max(1, round(RESOLUTION_M / pixel_m))
