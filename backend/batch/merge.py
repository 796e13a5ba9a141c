"""``--merge-shoreline``: every scene's shoreline in one GeoPackage, in one CRS.

Written once, at the end, under a temporary name in the output folder and renamed into place,
so the merged file is either complete or absent. Each line keeps its ``length_m`` (measured
by segment in metres) and gets ``scene`` (the scene's stem) and ``source`` (its input).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backend.core.errors import UserError

MERGED_NAME = "batch_shoreline.gpkg"


def target_srs(crs: str):
    """``EPSG:4326`` (or any definition OSR understands) -> an OSR SpatialReference with the
    x = easting/longitude axis order; UserError if it is not a CRS."""
    from osgeo import osr

    osr.UseExceptions()
    srs = osr.SpatialReference()
    try:
        srs.SetFromUserInput(crs)
    except RuntimeError:
        raise UserError(f"--merge-crs {crs!r} is not a CRS; pass e.g. EPSG:4326") from None
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def merge_shorelines(
    sources: list[tuple[str, str, str]], out_path: Path, crs: str
) -> tuple[int, list[str]]:
    """Merge ``(scene, input, shoreline file)`` triples into the GeoPackage ``out_path``,
    reprojected to ``crs``. Returns the feature count and the scenes left out because their
    shoreline has no CRS (it cannot be reprojected). Atomic (temp file + rename)."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    srs = target_srs(crs)
    fd, tmp = tempfile.mkstemp(prefix=".batch_shoreline-", suffix=".gpkg", dir=out_path.parent)
    os.close(fd)
    os.unlink(tmp)  # the GPKG driver creates the file itself
    count = 0
    unplaced: list[str] = []
    try:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(tmp)
        layer = ds.CreateLayer("shoreline", srs, ogr.wkbLineString)
        for name, width in (("scene", 254), ("source", 1024)):
            fdef = ogr.FieldDefn(name, ogr.OFTString)
            fdef.SetWidth(width)
            layer.CreateField(fdef)
        layer.CreateField(ogr.FieldDefn("length_m", ogr.OFTReal))
        defn = layer.GetLayerDefn()
        layer.StartTransaction()
        for scene, source, path in sources:
            src = ogr.Open(path)
            src_layer = src.GetLayer(0)
            src_srs = src_layer.GetSpatialRef()
            if src_srs is None:
                unplaced.append(scene)
                continue
            src_srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            transform = osr.CoordinateTransformation(src_srs, srs)
            for feat in src_layer:
                geom = feat.GetGeometryRef().Clone()
                geom.Transform(transform)
                out = ogr.Feature(defn)
                out.SetGeometry(geom)
                out.SetField("scene", scene)
                out.SetField("source", source[:1024])
                out.SetField("length_m", float(feat.GetField("length_m") or 0.0))
                layer.CreateFeature(out)
                count += 1
            src = None  # noqa: F841
        layer.CommitTransaction()
        ds = None  # noqa: F841 (closes and flushes)
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return count, unplaced
