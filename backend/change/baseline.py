"""The median shoreline of a time series, from the water masks of its dates.

Every date's mask (1 water, 0 land, 255 nodata or cloud) is resampled (nearest) onto one grid
in the working CRS; a pixel's water share is the fraction of the dates that see it in which
it is water. The median shoreline is the 0.5 contour of that share, drawn by the same
sub-pixel marching squares as ``segment``'s shorelines: the line the water reaches in half
of the dates. The share grid also tells which side of a transect is water.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.core.errors import UserError

NODATA = 255


@dataclass
class WaterShare:
    """Water share per pixel, float32 (h, w), NaN where no date sees the pixel; ``transform``
    an ``affine.Affine`` of the grid in the working CRS ``crs`` (WKT)."""

    share: np.ndarray
    transform: object
    crs: str
    dates: int

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        """Water share at map points float64 (m, 2) -> (m,), NaN off the grid."""
        inv = ~self.transform
        cols, rows = inv * (xy[:, 0], xy[:, 1])
        c = np.floor(cols).astype(np.int64)
        r = np.floor(rows).astype(np.int64)
        h, w = self.share.shape
        inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        out = np.full(len(xy), np.nan, np.float32)
        out[inside] = self.share[r[inside], c[inside]]
        return out


def read_mask(path: str, crs: str, grid: tuple | None = None):
    """A mask GeoTIFF -> (uint8 array, transform) on ``grid`` = (transform, width, height) in
    ``crs`` (nearest resampling, outside = 255), or on its own grid when ``grid`` is None."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject

    with rasterio.open(path) as src:
        if grid is None:
            return src.read(1), src.transform
        transform, width, height = grid
        same = src.crs is not None and src.crs == CRS.from_wkt(crs)
        if same and src.transform == transform and (src.width, src.height) == (width, height):
            return src.read(1), transform
        out = np.full((height, width), NODATA, np.uint8)
        reproject(
            rasterio.band(src, 1),
            out,
            dst_transform=transform,
            dst_crs=CRS.from_wkt(crs),
            dst_nodata=NODATA,
            src_nodata=NODATA,
            resampling=Resampling.nearest,
        )
        return out, transform


def mask_grid(path: str, crs: str) -> tuple:
    """The grid (transform, width, height) of a mask: its own when it is in ``crs``, else its
    extent resampled into ``crs`` at its own pixel size."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.warp import calculate_default_transform

    with rasterio.open(path) as src:
        if src.crs == CRS.from_wkt(crs):
            return src.transform, src.width, src.height
        transform, width, height = calculate_default_transform(
            src.crs, CRS.from_wkt(crs), src.width, src.height, *src.bounds, resolution=src.res
        )
        return transform, width, height


def water_share(mask_paths: list[str], crs: str) -> WaterShare:
    """Per-pixel water share of the masks on the grid of the first mask in ``crs``."""
    if not mask_paths:
        raise UserError("no water mask to build the median shoreline from")
    grid = mask_grid(mask_paths[0], crs)
    transform, width, height = grid
    wet = np.zeros((height, width), np.uint16)
    seen = np.zeros((height, width), np.uint16)
    for path in mask_paths:
        mask, _ = read_mask(path, crs, grid)
        valid = mask != NODATA
        seen += valid
        wet += valid & (mask == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(seen > 0, wet / np.maximum(seen, 1), np.nan).astype(np.float32)
    return WaterShare(share, transform, crs, len(mask_paths))


def median_shoreline(
    share: WaterShare, min_length: float = 0.0, smooth: int = 2
) -> list[np.ndarray]:
    """The 0.5 contour of the water share -> map-coordinate polylines (k, 2), longest first,
    those shorter than ``min_length`` metres dropped, Chaikin-smoothed ``smooth`` times."""
    from backend.segment.shoreline import ContourBuilder, chaikin

    builder = ContourBuilder(share.share.shape[1], threshold=0.5)
    builder.add_rows(0, share.share)
    out = []
    t = share.transform
    for line in builder.lines():
        line = chaikin(line, smooth) if smooth else line
        x, y = t * (line[:, 0], line[:, 1])
        xy = np.stack([np.asarray(x), np.asarray(y)], axis=1)
        if len(xy) >= 2 and np.hypot(*np.diff(xy, axis=0).T).sum() >= min_length:
            out.append(xy)
    out.sort(key=lambda ln: -np.hypot(*np.diff(ln, axis=0).T).sum())
    return out
