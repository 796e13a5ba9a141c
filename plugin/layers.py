"""Layers in and out of QGIS: which rasters the backend can read directly, exporting the
others to a temporary GeoTIFF, adding styled results to the project, exporting shorelines.

All functions here run on the main thread except ``export_raster_extent``, which only uses a
cloned data provider and may run in a task.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsLayerTreeGroup,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from .backend_process import PLUGIN_ROOT

STYLES = PLUGIN_ROOT / "resources" / "styles"
MASK_STYLE = STYLES / "water_mask.qml"
SHORELINE_STYLE = STYLES / "shoreline.qml"
GROUP_PROPERTY = "waterseg/group"
# Non-file layers above this many pixels are refused (about 2.4 GB of uint16 x 4 bands).
EXPORT_MAX_PIXELS = 300_000_000
EXPORT_WARN_PIXELS = 25_000_000
# QgsRasterFileWriter.WriterError, in words; the fix of every export failure
WRITER_ERRORS = {
    1: "cannot read the layer's data",
    2: "the GeoTIFF driver refused the file",
    3: "cannot create the file",
    4: "writing the file failed",
    5: "the nodata values conflict",
    6: "cancelled",
}
EXPORT_FIX = "save the layer as GeoTIFF (Export > Save As) and segment that file"


def local_raster_path(layer: QgsRasterLayer) -> str | None:
    """The local file the backend can open for ``layer``, or None (WMS/XYZ, memory, virtual,
    /vsi paths, database rasters)."""
    if layer is None or not layer.isValid() or layer.providerType() != "gdal":
        return None
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if parts.get("layerName") or path.startswith("/vsi"):
        return None
    return path if os.path.isfile(path) else None


def layer_band_names(layer: QgsRasterLayer) -> list[str]:
    """Names of the layer's bands: GDAL band descriptions of local files (e.g. "B8"), else
    QGIS's generated names ("Band 1")."""
    provider = layer.dataProvider()
    names = [provider.generateBandName(b) for b in range(1, layer.bandCount() + 1)]
    path = local_raster_path(layer)
    if path:
        try:
            from osgeo import gdal

            ds = gdal.Open(path)
            if ds is not None and ds.RasterCount == len(names):
                names = [
                    ds.GetRasterBand(b).GetDescription() or names[b - 1]
                    for b in range(1, ds.RasterCount + 1)
                ]
        except Exception:  # noqa: BLE001 - a description is a nicety, never an error
            pass
    return names


_DTYPES = {
    Qgis.Byte: "uint8",
    Qgis.UInt16: "uint16",
    Qgis.Int16: "int16",
    Qgis.UInt32: "uint32",
    Qgis.Int32: "int32",
    Qgis.Float32: "float32",
    Qgis.Float64: "float64",
}


def layer_band_facts(layer: QgsRasterLayer) -> dict:
    """What ``plan --band-names`` needs about a layer without a local file: band names, the
    numpy name of band 1's type and the colour interpretation of each band ("red", ...)."""
    provider = layer.dataProvider()
    bands = range(1, layer.bandCount() + 1)
    return {
        "names": layer_band_names(layer),
        "dtype": _DTYPES.get(provider.dataType(1), "") if layer.bandCount() else "",
        "colour_interp": [provider.colorInterpretationName(b).lower() for b in bands],
    }


def safe_stem(name: str) -> str:
    """A file-name stem made from a layer name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return stem or "layer"


def export_extent(
    layer: QgsRasterLayer,
    canvas_extent: QgsRectangle | None,
    canvas_crs=None,
    canvas_units_per_pixel: float | None = None,
):
    """Extent (layer CRS) and size (columns, rows) to export for a non-file layer.

    The visible extent clipped to the layer, at the layer's native resolution when the
    provider knows it, else at the canvas resolution. Returns (QgsRectangle, cols, rows).
    """
    extent = QgsRectangle(layer.extent())
    if canvas_extent is not None and not canvas_extent.isEmpty():
        visible = QgsRectangle(canvas_extent)
        if canvas_crs is not None and canvas_crs.isValid() and canvas_crs != layer.crs():
            xform = QgsCoordinateTransform(canvas_crs, layer.crs(), QgsProject.instance())
            visible = xform.transformBoundingBox(visible)
        clipped = extent.intersect(visible)
        if not clipped.isEmpty():
            extent = clipped
    provider = layer.dataProvider()
    if provider.capabilities() & provider.Size and provider.xSize() > 0:
        res_x = layer.rasterUnitsPerPixelX()
        res_y = layer.rasterUnitsPerPixelY()
    else:
        res_x = res_y = canvas_units_per_pixel or extent.width() / 1000.0
    cols = max(1, round(extent.width() / res_x))
    rows = max(1, round(extent.height() / res_y))
    return extent, cols, rows


def export_raster_extent(
    provider,
    crs,
    path: str,
    extent: QgsRectangle,
    cols: int,
    rows: int,
    transform_context=None,
    feedback=None,
) -> str:
    """Write ``extent`` of a raster data provider (raw band values, all bands) to a GeoTIFF.

    Pass ``layer.dataProvider().clone()`` made on the main thread; this function may then
    run in a worker thread. Raises RuntimeError.
    """
    pipe = QgsRasterPipe()
    if not pipe.set(provider):
        raise RuntimeError(
            f"cannot read the layer to export it (its data provider failed); {EXPORT_FIX}"
        )
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    if transform_context is None:
        transform_context = QgsProject.instance().transformContext()
    err = writer.writeRaster(pipe, cols, rows, extent, crs, transform_context, feedback)
    if err != QgsRasterFileWriter.NoError:
        from osgeo import gdal

        detail = gdal.GetLastErrorMsg().strip()  # GDAL's reason, in this thread
        Path(path).unlink(missing_ok=True)
        what = WRITER_ERRORS.get(int(err), f"raster writer error {int(err)}")
        raise RuntimeError(
            f"exporting the layer to {path} failed ({what}{': ' + detail if detail else ''}); "
            f"check the free space and permissions of {Path(path).parent}, or {EXPORT_FIX}"
        )
    return path


def group_name(source_name: str) -> str:
    """The Layers panel group of a source layer's results: "water — <layer name>" (not the
    source's own name, which would show two identical entries)."""
    return f"water \u2014 {source_name}"


def _group_for(name: str) -> QgsLayerTreeGroup:
    root = QgsProject.instance().layerTreeRoot()
    for child in root.children():
        if (
            isinstance(child, QgsLayerTreeGroup)
            and child.name() == name
            and child.customProperty(GROUP_PROPERTY)
        ):
            return child
    group = root.insertGroup(0, name)
    group.setCustomProperty(GROUP_PROPERTY, True)
    return group


def _drop_layers_with_source(path: str) -> None:
    """Remove earlier layers showing a file that a new run has just replaced."""
    project = QgsProject.instance()
    target = os.path.normcase(os.path.abspath(path))
    stale = [
        lyr.id()
        for lyr in project.mapLayers().values()
        if os.path.normcase(os.path.abspath(lyr.source().split("|")[0])) == target
    ]
    if stale:
        project.removeMapLayers(stale)


def add_results(source_name: str, mask_path: str | None, shoreline_path: str | None):
    """Add the mask (styled: water blue, land and nodata transparent) and the shoreline (styled
    line) to the project, in the group "water — <source layer>" (see group_name). Returns
    (mask, shoreline) layers (either may be None)."""
    project = QgsProject.instance()
    group = _group_for(group_name(source_name))
    mask_layer = shore_layer = None
    if shoreline_path and os.path.isfile(shoreline_path):
        _drop_layers_with_source(shoreline_path)
        uri = (
            f"{shoreline_path}|layername=shoreline"
            if shoreline_path.endswith(".gpkg")
            else shoreline_path
        )
        shore_layer = QgsVectorLayer(uri, f"{source_name} shoreline", "ogr")
        if shore_layer.isValid():
            shore_layer.loadNamedStyle(str(SHORELINE_STYLE))
            project.addMapLayer(shore_layer, False)
            group.addLayer(shore_layer)
        else:
            shore_layer = None
    if mask_path and os.path.isfile(mask_path):
        _drop_layers_with_source(mask_path)
        mask_layer = QgsRasterLayer(mask_path, f"{source_name} water")
        if mask_layer.isValid():
            mask_layer.loadNamedStyle(str(MASK_STYLE))
            project.addMapLayer(mask_layer, False)
            group.addLayer(mask_layer)
        else:
            mask_layer = None
    return mask_layer, shore_layer


def export_shoreline(layer: QgsVectorLayer, path: str) -> str:
    """Save ``layer`` as ESRI Shapefile (.shp) or GeoPackage (any other extension -> .gpkg).

    Raises RuntimeError with the writer's message on failure. Returns the written path.
    """
    p = Path(path)
    if p.suffix.lower() == ".shp":
        driver = "ESRI Shapefile"
    else:
        driver = "GPKG"
        if p.suffix.lower() != ".gpkg":
            p = p.with_suffix(".gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = driver
    options.fileEncoding = "UTF-8"
    if driver == "GPKG":
        options.layerName = "shoreline"
    result = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(p), QgsProject.instance().transformContext(), options
    )
    code, message = result[0], result[1]
    if code != QgsVectorFileWriter.NoError:
        raise RuntimeError(f"could not write {p}: {message or code}")
    return str(p)
