"""``segment --dem FILE``: an elevation model that keeps steep slopes out of the water.

Water lies flat. A slope in deep hill shadow is dark in every band and, on surface reflectance
above all, reads as water to an index or a model; the haze removal of the adaptive methods
(:func:`backend.core.water_indices.dark_object_haze`) only helps on top-of-atmosphere input. With
a DEM (any GDAL raster of heights in metres, any CRS: SRTM, the Copernicus DEM, a LiDAR model),
pixels on slopes steeper than ``--dem-max-slope`` degrees are land whatever the method says.
Water surfaces in such DEMs are flat or flattened, and a river's fall is far below the limit.

The DEM is never required, and never resampled to disk: a :class:`rasterio.vrt.WarpedVRT`
aligns it to the input raster's grid (bilinear), and each block of rows the engine streams reads
its own rows plus one above and below for the slope (:meth:`Terrain.steep`). Memory stays that
of one row block. Slope = arctan(|grad z|), the gradient by central differences over the input's
pixel size in metres (:func:`backend.segment.clouds.pixel_metres`, geodesic on geographic CRSs).

A narrow river between steep banks can lose its pixels on a coarse DEM: a 30 m DEM cell that
holds a 20 m river and its banks is sloped. Say so to the user; raise the limit there.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from backend.core.errors import UserError

DEFAULT_MAX_SLOPE = 20.0
SHARE_PIXELS = 4_000_000
"""The share of steep land in the log is measured on the DEM read at most this many pixels."""


class Terrain:
    """A DEM aligned to one input raster (``georef``): :meth:`steep` rows as bool arrays."""

    def __init__(self, path: Path, georef, max_slope: float = DEFAULT_MAX_SLOPE):
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        from backend.segment.clouds import pixel_metres

        self.path, self.max_slope = Path(path), float(max_slope)
        if georef.crs is None:
            raise UserError(
                f"--dem {self.path.name}: the input raster has no CRS, so the DEM cannot be "
                "placed on it; georeference the raster or leave --dem out"
            )
        if not self.path.is_file():
            raise UserError(f"--dem {self.path}: no such file; pass a DEM raster (GeoTIFF, VRT)")
        try:
            self._ds = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            first = (str(exc).strip().splitlines() or ["not a raster"])[0][:200]
            raise UserError(
                f"--dem {self.path}: GDAL cannot read it ({first}); pass a DEM raster"
            ) from None
        if self._ds.crs is None:
            self._ds.close()
            raise UserError(
                f"--dem {self.path.name} has no CRS, so it cannot be aligned to the raster; "
                "assign its CRS (gdal_edit.py -a_srs EPSG:...) or leave --dem out"
            )
        self.nodata = self._ds.nodata
        self._vrt = WarpedVRT(
            self._ds,
            crs=georef.crs,
            transform=georef.transform,
            width=georef.width,
            height=georef.height,
            resampling=Resampling.bilinear,
            src_nodata=self.nodata,
            nodata=np.nan,
            dtype="float32",
        )
        self.height, self.width = georef.height, georef.width
        self.pixel_m = pixel_metres(georef)
        self.tan_max = math.tan(math.radians(self.max_slope))
        self.steep_pixels = 0  # counted over the valid pixels of the blocks applied

    def close(self) -> None:
        self._vrt.close()
        self._ds.close()

    def steep(self, row0: int, row1: int, step: float | None = None) -> np.ndarray:
        """Bool (row1 - row0, width): pixels of rows [row0, row1) on slopes over the limit
        (False where the DEM has no data or does not reach)."""
        from rasterio.windows import Window

        top, bottom = max(0, row0 - 1), min(self.height, row1 + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z = self._vrt.read(1, window=Window(0, top, self.width, bottom - top))
        return self._slope_over(z, step or self.pixel_m)[row0 - top : row0 - top + row1 - row0]

    def _slope_over(self, z: np.ndarray, spacing: float) -> np.ndarray:
        z = z.astype(np.float32)
        if z.shape[0] < 2 or z.shape[1] < 2:
            return np.zeros(z.shape, bool)
        gy, gx = np.gradient(z, spacing)
        with np.errstate(invalid="ignore"):
            return np.hypot(gx, gy) > self.tan_max  # NaN (no DEM) compares False

    def share(self) -> float:
        """Share of the raster (with DEM data) on slopes over the limit, from a decimated
        read (slopes measured at the decimated spacing: a little gentler than per pixel)."""
        f = max(1, int(np.ceil(np.sqrt(self.width * self.height / SHARE_PIXELS))))
        h, w = max(2, self.height // f), max(2, self.width // f)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z = self._vrt.read(1, out_shape=(h, w))
        known = np.isfinite(z)
        if not known.any():
            return float("nan")
        spacing = self.pixel_m * self.height / h
        return float(self._slope_over(z, spacing)[known].mean())

    def describe(self) -> str:
        return (
            f"DEM {self.path.name} (aligned to the raster, bilinear): slopes over "
            f"{self.max_slope:g} degrees are land whatever the method says (water lies flat; "
            "--dem-max-slope sets the limit)"
        )

    def apply(self, block) -> None:
        """Set the probability of the steep valid pixels of a RowBlock to 0 (land), in place."""
        h = block.prob.shape[0]
        steep = self.steep(block.row0, block.row0 + h) & np.isfinite(block.prob)
        self.steep_pixels += int(steep.sum())
        block.prob[steep] = 0.0
