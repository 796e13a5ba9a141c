"""Classical water indices: the reference every learned model must beat, and a fallback.

Four fixed-threshold indices (water where the index > 0), with the Sentinel-2 bands each needs
in :data:`INDEX_BANDS` (B2 blue, B3 green, B4 red, B8 NIR, B11 SWIR1, B12 SWIR2):

- ``ndwi``: McFeeters, S.K. (1996), "The use of the Normalized Difference Water Index (NDWI)
  in the delineation of open water features", Int. J. Remote Sens. 17(7):1425-1432.
  NDWI = (G - NIR) / (G + NIR). On the SNOWED samples NDWI > 0 agrees with the labels on
  97.8 - 99.7 % of pixels.
- ``mndwi``: Xu, H. (2006), "Modification of normalised difference water index (NDWI) to
  enhance open water features in remotely sensed imagery", Int. J. Remote Sens.
  27(14):3025-3033. MNDWI = (G - SWIR1) / (G + SWIR1); built-up land reflects SWIR, so it
  confuses fewer roofs with water than NDWI, but needs the 20 m band B11.
- ``awei_sh``: Feyisa, G.L., Meilby, H., Fensholt, R., Proud, S.R. (2014), "Automated Water
  Extraction Index: A new technique for surface water mapping using Landsat imagery", Remote
  Sens. Environ. 140:23-35. The shadow variant, AWEI_sh = B + 2.5 G - 1.5 (NIR + SWIR1)
  - 0.25 SWIR2 (the paper's TM bands 1, 2, 4, 5, 7).
- ``wi2015``: Fisher, A., Flood, N., Danaher, T. (2016), "Comparing Landsat water index
  methods for automated water classification in eastern Australia", Remote Sens. Environ.
  175:167-182. WI2015 = 1.7204 + 171 G + 3 R - 70 NIR - 45 SWIR1 - 71 SWIR2 (TM bands 2, 3,
  4, 5, 7), fitted on surface reflectance in 0..1.

The normalised differences are scale-free (any common scale without an additive offset works);
AWEI_sh and WI2015 are linear in the bands and their threshold 0 holds only for reflectance in
0..1 (divide L2A digital numbers by 10000 after removing any +1000 offset).

A per-scene alternative in the spirit of waterdetect (Cordeiro et al. 2021): threshold an
index at Otsu's threshold of that scene (:func:`otsu_threshold`, clamped to
:data:`OTSU_CLAMP`). Otsu works from a histogram (:func:`otsu_from_histogram`), so a big
raster can be streamed block by block into one histogram.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.checkpoint import DEFAULT_BANDS

INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "ndwi": ("B3", "B8"),
    "mndwi": ("B3", "B11"),
    "awei_sh": ("B2", "B3", "B8", "B11", "B12"),
    "wi2015": ("B3", "B4", "B8", "B11", "B12"),
}
"""Sentinel-2 bands each index needs, in the order its formula takes them."""

OTSU_CLAMP: tuple[float, float] = (-0.3, 0.3)
"""Range a per-scene Otsu threshold of a normalised difference is clamped to: a scene with
little water (or little land) has no second mode, and Otsu then splits one class in two."""


def ndwi(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """Normalised difference (a - b) / (a + b) of two equally shaped arrays -> float32.

    Named for its most common use, NDWI (green, NIR); MNDWI is ``ndwi(green, swir1)``.
    Any numeric dtype; pixels where green + nir == 0 (e.g. nodata 0 in both bands) get NaN.
    """
    g = np.asarray(green, dtype=np.float32)
    n = np.asarray(nir, dtype=np.float32)
    if g.shape != n.shape:
        raise ValueError(f"green and nir shapes differ: {g.shape} vs {n.shape}")
    total = g + n
    out = np.full(g.shape, np.nan, dtype=np.float32)
    np.divide(g - n, total, out=out, where=total != 0)
    return out


def _awei_sh(b: np.ndarray, g: np.ndarray, nir: np.ndarray, s1: np.ndarray, s2: np.ndarray):
    return b + 2.5 * g - 1.5 * (nir + s1) - 0.25 * s2


def _wi2015(g: np.ndarray, r: np.ndarray, nir: np.ndarray, s1: np.ndarray, s2: np.ndarray):
    return 1.7204 + 171.0 * g + 3.0 * r - 70.0 * nir - 45.0 * s1 - 71.0 * s2


_INDEX_FORMULAS: dict[str, Callable[..., np.ndarray]] = {
    "ndwi": ndwi,
    "mndwi": ndwi,
    "awei_sh": _awei_sh,
    "wi2015": _wi2015,
}


def water_index(method: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    """One classical water index of a scene; > 0 means water for every method.

    Args:
        method: a key of :data:`INDEX_BANDS` ("ndwi", "mndwi", "awei_sh", "wi2015").
        bands: Sentinel-2 band name ("B3", ...) -> (H, W) reflectance in 0..1 (float32; other
            dtypes are converted); extra bands are ignored. See the module docstring for the
            papers and the scale each index assumes.

    Returns:
        (H, W) float32 index. NaN where it is undefined: a normalised difference whose
        denominator is 0, any NaN input, or (AWEI_sh, WI2015) a pixel where every band it
        uses is 0, the usual nodata value (WI2015 would otherwise call it water).
    """
    if method not in INDEX_BANDS:
        raise ValueError(f"unknown water index {method!r}; valid: {', '.join(INDEX_BANDS)}")
    needed = INDEX_BANDS[method]
    missing = [b for b in needed if b not in bands]
    if missing:
        raise ValueError(f"{method} needs bands {', '.join(needed)}; missing {', '.join(missing)}")
    arrays = [np.asarray(bands[b], dtype=np.float32) for b in needed]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"bands {', '.join(needed)} differ in shape: {sorted(shapes)}")
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.asarray(_INDEX_FORMULAS[method](*arrays), dtype=np.float32)
        if method in ("awei_sh", "wi2015"):
            out[np.all([a == 0 for a in arrays], axis=0)] = np.nan
    return out


def otsu_from_histogram(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold (Otsu 1979, IEEE Trans. SMC 9(1):62-66) of a histogram.

    Args:
        counts: (n,) non-negative bin counts (e.g. summed over the blocks of a raster).
        edges: (n + 1,) increasing bin edges, as from ``np.histogram``.

    Returns:
        The bin edge that maximises the between-class variance: values above it form the
        upper class. Where several cuts tie (an empty gap between two modes), the middle of
        the tied edges. A histogram with one occupied bin returns that bin's centre.
    """
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if counts.ndim != 1 or edges.shape != (counts.size + 1,):
        raise ValueError(
            f"need counts (n,) and edges (n + 1,); got {counts.shape} and {edges.shape}"
        )
    total = counts.sum()
    if total <= 0:
        raise ValueError("histogram is empty: no values to threshold")
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]  # weight of the lower class for a cut after bin k
    w1 = total - w0
    s0 = np.cumsum(counts * centres)[:-1]
    s1 = (counts * centres).sum() - s0
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (s0 / w0 - s1 / w1) ** 2
    between = np.where((w0 > 0) & (w1 > 0), between, -1.0)
    best = between.max()
    if best < 0:
        return float(centres[counts > 0][0])
    tied = np.flatnonzero(between >= best * (1 - 1e-9))
    return float((edges[tied[0] + 1] + edges[tied[-1] + 1]) / 2)


def otsu_threshold(
    values: np.ndarray, bins: int = 256, value_range: tuple[float, float] | None = None
) -> float:
    """Otsu's threshold of the finite values of an array (NaN and inf are skipped).

    ``value_range`` fixes the histogram's range (default: the values' min and max); give
    (-1, 1) for a normalised difference so blocks of a streamed raster share their bins.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to threshold")
    counts, edges = np.histogram(v, bins=bins, range=value_range)
    return otsu_from_histogram(counts, edges)


def clamped_otsu_threshold(index: np.ndarray, clamp: tuple[float, float] = OTSU_CLAMP) -> float:
    """Per-scene threshold of a normalised-difference index: Otsu on (-1, 1), clamped."""
    return float(np.clip(otsu_threshold(index, value_range=(-1.0, 1.0)), *clamp))


def ndwi_water_mask(
    image: np.ndarray,
    bands: list[str] | None = None,
    threshold: float = 0.0,
    nodata_value: int | None = 255,
    other: str = "B8",
) -> np.ndarray:
    """Water mask by NDWI > threshold from a band stack.

    Args:
        image: (C, H, W) array, any numeric dtype, channels named by ``bands``.
        bands: channel names; default ["B2", "B3", "B4", "B8"]. Must contain "B3" and "B8".
        threshold: NDWI above this is water.
        nodata_value: value written where NDWI is undefined (B3 + B8 == 0 or NaN input);
            None -> such pixels are land (0).
        other: the band subtracted from green: "B8" (NDWI, default) or "B11" (MNDWI).

    Returns:
        (H, W) uint8: 1 water, 0 land, ``nodata_value`` where undefined.
    """
    bands = list(DEFAULT_BANDS if bands is None else bands)
    if image.ndim != 3 or image.shape[0] != len(bands):
        raise ValueError(
            f"image must be (C, H, W) with C = {len(bands)} ({bands}); got {image.shape}"
        )
    try:
        green = image[bands.index("B3")]
        second = image[bands.index(other)]
    except ValueError:
        raise ValueError(f"this index needs bands B3 and {other}; got {bands}") from None
    index = ndwi(green, second)
    valid = np.isfinite(index)
    mask = (index > threshold).astype(np.uint8)
    if nodata_value is not None:
        mask[~valid] = nodata_value
    return mask
