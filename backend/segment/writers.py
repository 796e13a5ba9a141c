"""Output files: tiled, compressed GeoTIFFs written row block by row block, and vector layers
(GeoPackage / ESRI Shapefile) through GDAL's OGR."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.segment.georef import GeoRef

MASK_NODATA = 255
WATER_COLOURS = {0: (230, 220, 190, 255), 1: (30, 110, 220, 255), 255: (0, 0, 0, 0)}


def _gtiff_profile(georef: GeoRef, dtype: str, nodata: float) -> dict:
    tiled = georef.width >= 256 and georef.height >= 256
    profile = {
        "driver": "GTiff",
        "width": georef.width,
        "height": georef.height,
        "count": 1,
        "dtype": dtype,
        "crs": georef.crs,
        "transform": georef.transform,
        "nodata": nodata,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if dtype == "float32":
        profile["predictor"] = 3
    return profile


class RasterRowWriter:
    """A single-band GeoTIFF filled by consecutive row blocks: ``write(row0, rows (h, W))``."""

    def __init__(self, path: str | os.PathLike, georef: GeoRef, dtype: str, nodata: float):
        import rasterio

        self.path = Path(path)
        self._ds = rasterio.open(self.path, "w", **_gtiff_profile(georef, dtype, nodata))
        self._dtype = dtype

    def write(self, row0: int, rows: np.ndarray) -> None:
        from rasterio.windows import Window

        h, w = rows.shape
        self._ds.write(rows.astype(self._dtype, copy=False), 1, window=Window(0, row0, w, h))

    def set_colormap(self, colours: dict[int, tuple[int, int, int, int]]) -> None:
        self._ds.write_colormap(1, colours)

    def set_description(self, text: str) -> None:
        self._ds.set_band_description(1, text)

    def close(self) -> None:
        if not self._ds.closed:
            self._ds.close()


def mask_from_probability(prob: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
    """prob float32 (h, W) and valid bool (h, W) -> uint8 (h, W): 1 water (p >= threshold),
    0 land, 255 nodata (invalid or no prediction)."""
    mask = (prob >= threshold).astype(np.uint8)
    mask[~valid | ~np.isfinite(prob)] = MASK_NODATA
    return mask


def _ogr():
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    return ogr, osr


def _srs(georef: GeoRef):
    _, osr = _ogr()
    if georef.crs is None:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(georef.crs.to_wkt())
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def write_lines(
    path: str | os.PathLike,
    driver: str,
    lines: list[np.ndarray],
    lengths: list[float],
    georef: GeoRef,
    source: str,
    layer_name: str = "shoreline",
) -> int:
    """Write map-coordinate polylines (n, 2) as LineString features with ``length_m`` and
    ``source`` attributes. ``driver`` is "GPKG" or "ESRI Shapefile". Returns the feature count.
    A raster without a CRS has no metres: the field is then ``length_px``, in pixels."""
    ogr, _ = _ogr()
    drv = ogr.GetDriverByName(driver)
    ds = drv.CreateDataSource(str(path))
    try:
        layer = ds.CreateLayer(layer_name, _srs(georef), ogr.wkbLineString)
        length_field = "length_m" if georef.crs is not None else "length_px"
        layer.CreateField(ogr.FieldDefn(length_field, ogr.OFTReal))
        src_field = ogr.FieldDefn("source", ogr.OFTString)
        src_field.SetWidth(254)
        layer.CreateField(src_field)
        defn = layer.GetLayerDefn()
        layer.StartTransaction()
        for line, length in zip(lines, lengths, strict=True):
            geom = ogr.Geometry(ogr.wkbLineString)
            for x, y in line:
                geom.AddPoint_2D(float(x), float(y))
            feat = ogr.Feature(defn)
            feat.SetGeometry(geom)
            feat.SetField(length_field, float(length))
            feat.SetField("source", source[:254])
            layer.CreateFeature(feat)
        layer.CommitTransaction()
        return len(lines)
    finally:
        ds = None  # noqa: F841 (closes and flushes)


def polygonize_water(mask_path: str | os.PathLike, out_path: str | os.PathLike, source: str) -> int:
    """Water polygons (mask == 1) of a mask GeoTIFF into a GeoPackage layer "water" with
    a ``source`` attribute. Streams through GDAL's Polygonize. Returns count."""
    from osgeo import gdal

    ogr, _ = _ogr()
    gdal.UseExceptions()
    src = gdal.Open(str(mask_path))
    band = src.GetRasterBand(1)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(out_path))
    try:
        srs = src.GetSpatialRef()
        layer = ds.CreateLayer("water", srs, ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
        gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [], callback=None)
        layer.SetAttributeFilter("class <> 1")
        drop = [f.GetFID() for f in layer]
        layer.SetAttributeFilter(None)
        layer.StartTransaction()
        for fid in drop:
            layer.DeleteFeature(fid)
        layer.CommitTransaction()
        src_field = ogr.FieldDefn("source", ogr.OFTString)
        layer.CreateField(src_field)
        layer.StartTransaction()
        for feat in layer:
            feat.SetField("source", source)
            layer.SetFeature(feat)
        layer.CommitTransaction()
        return layer.GetFeatureCount()
    finally:
        ds = None  # noqa: F841
        src = None  # noqa: F841
