"""Georeferencing of a raster as one small value object that travels through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine


@dataclass(frozen=True)
class GeoRef:
    """CRS, affine transform, size and nodata value of a raster.

    ``crs`` is a ``rasterio.crs.CRS`` or None (ungeoreferenced raster); ``transform`` maps
    (col, row) of pixel corners to map coordinates, as in GDAL/rasterio.
    """

    crs: Any
    transform: Affine
    width: int
    height: int
    nodata: float | None = None

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs is not None and self.crs.is_geographic)

    @property
    def pixel_size(self) -> float:
        """Mean absolute pixel size in map units (degrees for a geographic CRS)."""
        t = self.transform
        return (
            float((abs(t.a) + abs(t.e)) / 2.0)
            if t.b == 0 and t.d == 0
            else float(np.sqrt(abs(t.a * t.e - t.b * t.d)))
        )

    def pixel_to_map(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (0, 0 = upper-left corner of the raster), float arrays
        of any equal shape -> map coordinates (x, y), float64 arrays of the same shape.
        A pixel centre is (col + 0.5, row + 0.5)."""
        t = self.transform
        cols = np.asarray(cols, np.float64)
        rows = np.asarray(rows, np.float64)
        return t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
