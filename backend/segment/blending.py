"""Blending weights and the strip accumulator that turns overlapping tiles into one mosaic.

Each tile's probabilities are weighted by a separable window ``w(y) * w(x)``:

- on a side that touches the raster border the window is flat (1.0) up to the edge, so the
  weight stays above zero at the raster border (those pixels have no other tile);
- on an interior side the outermost ``margin`` pixels get weight 0 (tile-edge predictions
  see zero padding and are discarded), then a sin^2 ramp rises to 1 across the rest of the
  overlap. Neighbouring tiles overlap by at least ``2 * margin``, so every pixel is covered
  by a tile with positive weight.

Blended probability = sum(w * p) / sum(w).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def discard_margin(tile: int, overlap: float) -> int:
    """Pixels dropped at an interior tile edge: a quarter of the overlap (16 px for 256 / 0.25)."""
    return max(1, int(tile * overlap) // 4)


@lru_cache(maxsize=64)
def window_1d(tile: int, overlap: float, start_border: bool, end_border: bool) -> np.ndarray:
    """1-D weights, float32 (tile,). Flat at a raster-border side, 0 then ramp at an interior side."""
    ov = int(tile * overlap)
    margin = discard_margin(tile, overlap)
    ramp_len = max(1, ov - 2 * margin)
    i = np.arange(ramp_len, dtype=np.float64)
    ramp = (np.sin(0.5 * np.pi * (i + 1) / (ramp_len + 1)) ** 2).astype(np.float32)
    w = np.ones(tile, np.float32)
    if not start_border:
        w[:margin] = 0.0
        w[margin : margin + ramp_len] = ramp
    if not end_border:
        rev = np.ones(tile, np.float32)
        rev[tile - margin :] = 0.0
        rev[tile - margin - ramp_len : tile - margin] = ramp[::-1]
        w = np.minimum(w, rev)
    w.flags.writeable = False
    return w


def tile_weight(
    tile: int, overlap: float, top: bool, bottom: bool, left: bool, right: bool
) -> np.ndarray:
    """2-D weight window, float32 (tile, tile); the flags say which sides touch the raster border."""
    return np.outer(window_1d(tile, overlap, top, bottom), window_1d(tile, overlap, left, right))


class StripAccumulator:
    """Weighted sums for the rows of one tile row: ``acc`` and ``wsum``, float32 (tile, width).

    Holds rows ``[row0, row0 + tile)`` of the raster. ``add`` blends a tile in; ``emit(n)``
    returns the first ``n`` finished rows (blended probability, NaN where no weight) and
    shifts the window down by ``n`` rows.
    """

    def __init__(self, tile: int, width: int):
        self.tile = tile
        self.width = width
        self.row0 = 0
        self.acc = np.zeros((tile, width), np.float32)
        self.wsum = np.zeros((tile, width), np.float32)

    def add(self, prob: np.ndarray, weight: np.ndarray, y: int, x: int) -> None:
        """Blend ``prob`` (h, w) float32 with ``weight`` (h, w) at raster row ``y``, column ``x``."""
        h, w = prob.shape
        r = y - self.row0
        self.acc[r : r + h, x : x + w] += weight * prob
        self.wsum[r : r + h, x : x + w] += weight

    def emit(self, n: int) -> np.ndarray:
        """First ``n`` rows as blended probabilities, float32 (n, width), NaN where weight is 0."""
        wsum = self.wsum[:n]
        out = np.full((n, self.width), np.nan, np.float32)
        np.divide(self.acc[:n], wsum, out=out, where=wsum > 0)
        keep = self.tile - n
        if keep <= 0:
            self.acc[:] = 0
            self.wsum[:] = 0
        else:
            # Overlapping source and destination: numpy copies through a buffer as needed.
            self.acc[:keep] = self.acc[n:]
            self.wsum[:keep] = self.wsum[n:]
            self.acc[keep:] = 0
            self.wsum[keep:] = 0
        self.row0 += n
        return out
