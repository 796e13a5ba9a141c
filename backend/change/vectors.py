"""Read lines from a vector file (a scene's shoreline, the user's baseline or transects)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.core.errors import UserError


def read_lines(path: str | Path, id_field: str | None = None) -> tuple[list[np.ndarray], str, list]:
    """Every line part of the first layer of ``path`` -> (polylines float64 (k, 2), the
    layer's CRS as WKT ("" when none), the ``id_field`` value of each line's feature (or
    None)). Multi-lines give one polyline per part; polygons give their rings."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    if not Path(path).exists():
        raise UserError(f"{path} not found; pass a vector file (GeoPackage, Shapefile, ...)")
    try:
        ds = ogr.Open(str(path))
        why = "" if ds is not None else "no OGR driver recognises it"
    except RuntimeError as exc:
        ds, why = None, str(exc)
    if ds is None or ds.GetLayerCount() == 0:
        raise UserError(
            f"cannot read {path} as a vector file ({why or 'it has no layer'}); pass a "
            "GeoPackage, Shapefile or another OGR vector file"
        )
    layer = ds.GetLayer(0)
    ref = layer.GetSpatialRef()
    wkt = ref.ExportToWkt() if ref is not None else ""
    if ref is not None:
        ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    names = [
        layer.GetLayerDefn().GetFieldDefn(i).GetName()
        for i in range(layer.GetLayerDefn().GetFieldCount())
    ]
    field = next((n for n in names if id_field and n.lower() == id_field.lower()), None)
    lines, ids = [], []
    for feat in layer:
        geom = feat.GetGeometryRef()
        if geom is None:
            continue
        value = feat.GetField(field) if field else None
        for part in _parts(geom):
            pts = np.asarray(part.GetPoints() or [], np.float64)
            if len(pts) >= 2:
                lines.append(pts[:, :2])
                ids.append(value)
    ds = None  # noqa: F841
    return lines, wkt, ids


def _parts(geom) -> list:
    from osgeo import ogr

    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat == ogr.wkbLineString or flat == ogr.wkbLinearRing:
        return [geom]
    if geom.GetGeometryCount() > 0:
        return [p for i in range(geom.GetGeometryCount()) for p in _parts(geom.GetGeometryRef(i))]
    return []
