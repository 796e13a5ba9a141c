"""Cloud shadows on a coarse grid: where the clouds' shadows fall, found from the image itself.

A cloud shadow is dark in NIR and SWIR, like water, so a water index or a model calls it water
(26 % of the stable land of a cloudy Tiber date before this). s2cloudless and QA60 flag clouds,
not shadows. A shadow is the cloud projected along the sun's direction by the cloud's height, so
it lies at one offset from its cloud, the same for every cloud of a scene at about one height.

The offset is estimated as the one at which the cloud mask,
shifted, covers the darkest pixels (:func:`shadow_offset`): the mean NIR of the clear cells under
the shifted clouds, over the median NIR of all clear cells, is smallest there. The search runs on
the grid of :class:`backend.segment.clouds.CloudGrid` (about 40 m cells) up to
:data:`MAX_OFFSET_M` (a cloud top at 3 km under a sun 30 degrees high). When no offset darkens
the shifted cells to below :data:`MIN_DARKENING` of the clear median, no shadow is flagged.

The clouds are then swept along that direction from :data:`SWEEP` x to ... x the offset (clouds
at other heights), and a swept cell is shadow when it is dark (NIR below :data:`DARK_NIR` of the
clear median) and not water-like: its NDVI is above :data:`WATER_NDVI`. Water under a cloud's
shadow keeps red above NIR (NDVI -0.2 to -0.9 on the Tiber, top of atmosphere), shaded land does
not (-0.06 to 0.1), so the river under a shadow is not masked with it.

Numpy, and scipy's FFT correlation for the offset search, on grids of at most a million cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_OFFSET_M = 6000.0
SWEEP = (0.6, 1.6)
DARK_NIR = 0.6
MIN_DARKENING = 0.75
WATER_NDVI = -0.1
BEARING_TOLERANCE = 20.0
"""Degrees either side of the shadow direction the sun's azimuth gives, when it is known."""
MIN_CELLS = 12
"""Fewer cloud cells than this (after the shift, on clear ground) cannot place a shadow."""
MIN_LANDING = 0.25
"""An offset counts only where this share of the cloud cells lands on clear ground: otherwise
one cloud, shifted onto another's shadow, would decide the offset for all."""


@dataclass(frozen=True)
class ShadowOffset:
    """Where shadows fall: ``dy``, ``dx`` grid cells from their cloud (rows down, columns
    right), and ``darkening``: the mean NIR there over the clear median (lower is darker)."""

    dy: int
    dx: int
    darkening: float

    def metres(self, cell_m: float) -> float:
        return float(np.hypot(self.dy, self.dx) * cell_m)

    def bearing(self) -> float:
        """Compass bearing of the shift, degrees clockwise from north (up the grid)."""
        return float(np.degrees(np.arctan2(self.dx, -self.dy)) % 360.0)


def shifted(flags: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``flags`` moved by (dy, dx) cells; what moves in from outside is False."""
    out = np.zeros_like(flags)
    h, w = flags.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = flags[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _correlate(level: np.ndarray, cloud: np.ndarray, reach: int) -> np.ndarray:
    """(2 reach + 1, 2 reach + 1): for each shift (dy, dx) in -reach..reach, the sum of
    ``level`` over the cells that ``cloud`` shifted by (dy, dx) covers (one FFT correlation)."""
    from scipy.signal import fftconvolve

    full = fftconvolve(level.astype(np.float64), cloud[::-1, ::-1].astype(np.float64))
    h, w = cloud.shape
    out = np.zeros((2 * reach + 1, 2 * reach + 1))
    # full[dy + h - 1, dx + w - 1] is the sum for the shift (dy, dx)
    y0, x0 = h - 1 - reach, w - 1 - reach
    ys = slice(max(y0, 0), min(y0 + 2 * reach + 1, full.shape[0]))
    xs = slice(max(x0, 0), min(x0 + 2 * reach + 1, full.shape[1]))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = full[ys, xs]
    return out


def _ndvi(nir: np.ndarray, red: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (nir - red) / (nir + red)


def shadow_offset(
    cloud: np.ndarray,
    nir: np.ndarray,
    red: np.ndarray,
    valid: np.ndarray,
    cell_m: float,
    bearing: float | None = None,
) -> ShadowOffset | None:
    """The offset (in cells) at which ``cloud`` (bool grid) shifted darkens the most clear land
    cells of ``nir`` (reflectance grid; ``red`` tells water, which is left out, see the module
    docstring); None when no offset is dark enough (:data:`MIN_DARKENING`) or too few cloud
    cells land on clear land (:data:`MIN_LANDING`). ``bearing``: the shadows' direction in
    degrees from north when the sun's azimuth is known (azimuth + 180); the search then keeps
    to within :data:`BEARING_TOLERANCE` of it (a north-up grid)."""
    land = valid & ~cloud & np.isfinite(nir) & (_ndvi(nir, red) > WATER_NDVI)
    if cloud.sum() < MIN_CELLS or land.sum() < MIN_CELLS:
        return None
    median = float(np.median(nir[land]))
    if median <= 0:
        return None
    reach = max(1, int(MAX_OFFSET_M / cell_m))
    sums = _correlate(np.where(land, nir, 0.0), cloud, reach)
    counts = _correlate(land.astype(np.float64), cloud, reach)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    enough = max(MIN_CELLS, MIN_LANDING * float(cloud.sum())) - 0.5
    ok = (counts >= enough) & (dy * dy + dx * dx <= reach * reach)
    ok &= dy * dy + dx * dx >= 4  # a cloud's own dilated edge is not its shadow
    if bearing is not None:
        off = np.degrees(np.arctan2(dx, -dy)) - bearing
        ok &= np.abs((off + 180.0) % 360.0 - 180.0) <= BEARING_TOLERANCE
    if not ok.any():
        return None
    ratio = sums / np.maximum(counts, 1.0) / median
    # the most darkened land: many cells landing, each much darker than the median
    gain = np.where(ok & (ratio <= MIN_DARKENING), counts * (1.0 - ratio), -1.0)
    i = np.unravel_index(int(np.argmax(gain)), gain.shape)
    if gain[i] <= 0:
        return None
    return ShadowOffset(int(dy[i]), int(dx[i]), float(ratio[i]))


def swept(cloud: np.ndarray, offset: ShadowOffset) -> np.ndarray:
    """The cells ``cloud`` covers when moved from SWEEP[0] to SWEEP[1] times ``offset``."""
    out = np.zeros_like(cloud)
    length = np.hypot(offset.dy, offset.dx)
    steps = max(2, int(np.ceil(length * (SWEEP[1] - SWEEP[0]))) * 2)
    for t in np.linspace(SWEEP[0], SWEEP[1], steps + 1):
        out |= shifted(cloud, int(round(offset.dy * t)), int(round(offset.dx * t)))
    return out


def shadow_flags(
    cloud: np.ndarray,
    nir: np.ndarray,
    red: np.ndarray,
    valid: np.ndarray,
    offset: ShadowOffset | None,
) -> np.ndarray:
    """Bool grid: cells in the shadow of ``cloud`` moved by ``offset`` (all False without one)
    that are dark in ``nir`` and not water-like (see the module docstring)."""
    if offset is None:
        return np.zeros_like(cloud)
    land = valid & ~cloud & np.isfinite(nir) & (_ndvi(nir, red) > WATER_NDVI)
    dark = nir < DARK_NIR * float(np.median(nir[land]))
    return swept(cloud, offset) & land & dark


def sun_azimuth(tags: dict[str, str]) -> float | None:
    """The sun's azimuth (degrees from north) from a raster's metadata ``tags``: the first key
    that names a sun or solar azimuth (MEAN_SOLAR_AZIMUTH_ANGLE of Earth Engine's Sentinel-2,
    SUN_AZIMUTH of Landsat, MEAN_SUN_AZIMUTH_ANGLE ...) with a number in 0-360; else None."""
    for key, value in tags.items():
        name = key.upper()
        if "AZIMUTH" in name and ("SUN" in name or "SOLAR" in name):
            try:
                azimuth = float(value)
            except (TypeError, ValueError):
                continue
            if 0.0 <= azimuth <= 360.0:
                return azimuth
    return None
