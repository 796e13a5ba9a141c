"""Coordinate systems of a time series: one projected working CRS, coordinates moved into it.

Scenes of one site may come in two UTM zones (Sentinel-2 tiles overlap); every shoreline and
mask is brought into the working CRS, the one most scenes use, so that distances are metres.
Transforms use GDAL's OSR in GIS axis order (x = easting or longitude).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from backend.core.errors import UserError


def srs(wkt_or_code: str):
    """An OSR SpatialReference (GIS axis order) from WKT, 'EPSG:n' or any user input."""
    from osgeo import osr

    osr.UseExceptions()
    ref = osr.SpatialReference()
    try:
        ref.SetFromUserInput(str(wkt_or_code))
    except RuntimeError as exc:
        raise UserError(f"unknown CRS {wkt_or_code!r} ({exc}); use e.g. EPSG:32632") from None
    ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return ref


def same_crs(a: str, b: str) -> bool:
    return a == b or bool(srs(a).IsSame(srs(b)))


def transform_xy(xy: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Points float64 (n, 2) from CRS ``src`` to ``dst`` (WKT or codes) -> (n, 2)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if not len(xy) or same_crs(src, dst):
        return xy.copy()
    from osgeo import osr

    ct = osr.CoordinateTransformation(srs(src), srs(dst))
    out = np.asarray(ct.TransformPoints(xy), np.float64)
    return out[:, :2]


def working_crs(crs_list: list[str], override: str | None = None) -> str:
    """The working CRS (WKT): ``override`` if given, else the one most scenes use. A
    geographic CRS is refused (distances must be metres) with the fix in the message."""
    if override:
        ref = srs(override)
    else:
        if not crs_list:
            raise UserError("no scene has a CRS; georeference the scenes or pass --crs")
        ref = srs(Counter(crs_list).most_common(1)[0][0])
    if ref.IsGeographic():
        raise UserError(
            "the scenes are in a geographic CRS (degrees): pass --crs with a projected one in "
            "metres, e.g. the site's UTM zone EPSG:326NN"
        )
    return ref.ExportToWkt()
