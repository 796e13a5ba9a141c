"""Rendering any map layer (XYZ, WMS, WCS, virtual rasters, even vectors) to an RGB GeoTIFF.

The backend reads files of band values; a tile service has only pictures. This module draws
the layer as QGIS shows it (``QgsMapRendererCustomPainterJob``) into an image of the requested
extent and resolution and writes it as an 8-bit true-colour GeoTIFF: bands red, green, blue
and alpha, where alpha 0 (nothing drawn) is nodata. The backend's ``plan`` picks the bundled RGB
model for such a file.

Pure PyQGIS and GDAL, no widgets: it may run in a task (pass a layer clone made on the main
thread there).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDistanceArea,
    QgsMapLayer,
    QgsMapRendererCustomPainterJob,
    QgsMapSettings,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from .contract import MODEL_PIXEL_TOLERANCE

MAX_RENDER_SIDE = 10_000  # pixels per side; 10000 x 10000 RGBA is 400 MB in memory
MIN_RENDER_SIDE = 32  # fewer pixels on a side: nothing to segment (refused)
SMALL_RENDER_SIDE = 256  # fewer: less than one model tile (warned)
FAR = 3.0  # a resolution this many times finer (or coarser) than the source's is "far"


def render_size(extent: QgsRectangle, resolution: float) -> tuple[int, int]:
    """Columns and rows that cover ``extent`` at ``resolution`` map units per pixel.

    Raises ValueError (one line saying how to fix it) for an empty extent, a resolution that
    is not positive, or an image over ``MAX_RENDER_SIDE`` pixels on a side.
    """
    if extent is None or extent.isEmpty() or extent.isNull():
        raise ValueError("the extent to render is empty: zoom to the area to segment")
    if not resolution or not math.isfinite(resolution) or resolution <= 0:
        raise ValueError(f"render resolution {resolution} is not positive: set it above 0")
    # the tiny tolerance keeps 1000.0000001 pixels from becoming 1001
    cols = max(1, math.ceil(extent.width() / resolution - 1e-6))
    rows = max(1, math.ceil(extent.height() / resolution - 1e-6))
    if cols > MAX_RENDER_SIDE or rows > MAX_RENDER_SIDE:
        coarser = resolution * max(cols, rows) / MAX_RENDER_SIDE
        raise ValueError(
            f"rendering {cols} x {rows} px is over the {MAX_RENDER_SIDE} x {MAX_RENDER_SIDE} px "
            f"limit: choose a coarser resolution (at least {coarser:.6g} map units per pixel) "
            "or a smaller extent (zoom in)"
        )
    return cols, rows


def resolution_unit(crs: QgsCoordinateReferenceSystem) -> str:
    """The unit of a render resolution in ``crs``: "m/px", "deg/px", "ft/px"."""
    return f"{QgsUnitTypes.toAbbreviatedString(crs.mapUnits())}/px"


def _centre_segment(
    length: float, at: QgsPointXY, src: QgsCoordinateReferenceSystem, dst=None
) -> float:
    """How long a horizontal segment of ``length`` units of ``src`` centred on ``at`` (a point
    in ``dst``, or in ``src`` when ``dst`` is None) is in ``dst`` units, or in metres on the
    ellipsoid when ``dst`` is None."""
    context = QgsProject.instance().transformContext()
    if dst is None:
        area = QgsDistanceArea()
        area.setSourceCrs(src, context)
        area.setEllipsoid(src.ellipsoidAcronym() or "WGS84")
        a = QgsPointXY(at.x() - length / 2, at.y())
        b = QgsPointXY(at.x() + length / 2, at.y())
        return area.convertLengthMeasurement(area.measureLine(a, b), QgsUnitTypes.DistanceMeters)
    if src == dst:
        return length
    to_src = QgsCoordinateTransform(dst, src, context)
    to_dst = QgsCoordinateTransform(src, dst, context)
    centre = to_src.transform(at)
    a = to_dst.transform(QgsPointXY(centre.x() - length / 2, centre.y()))
    b = to_dst.transform(QgsPointXY(centre.x() + length / 2, centre.y()))
    return math.hypot(b.x() - a.x(), b.y() - a.y())


def native_resolution(
    layer: QgsMapLayer, crs: QgsCoordinateReferenceSystem, at: QgsPointXY
) -> float | None:
    """The finest resolution ``layer``'s source has (an XYZ/WMTS layer's deepest zoom level,
    a file's pixel size), in units of ``crs`` at ``at`` (a point in ``crs``); None when the
    provider does not know one (a plain WMS, a vector layer)."""
    provider = layer.dataProvider() if layer is not None else None
    finest = None
    try:
        resolutions = [r for r in provider.nativeResolutions() if r > 0]
        finest = min(resolutions) if resolutions else None
    except (AttributeError, TypeError):
        pass
    if finest is None and provider is not None and getattr(provider, "xSize", lambda: 0)() > 0:
        finest = layer.extent().width() / provider.xSize()
    if not finest:
        return None
    try:
        return _centre_segment(finest, at, layer.crs(), crs)
    except Exception:  # noqa: BLE001 - a point the transform cannot reach: unknown
        return None


def ground_metres(resolution: float, crs: QgsCoordinateReferenceSystem, at: QgsPointXY) -> float:
    """``resolution`` map units of ``crs`` at ``at``, in metres on the ground (Web Mercator
    metres shrink with cos(latitude); degrees become metres)."""
    return _centre_segment(resolution, at, crs, None)


@dataclass
class RenderCheck:
    """What a render of the visible extent would be: its size, a reason to refuse it (one
    line with the fix; None: fine) and warnings."""

    cols: int = 0
    rows: int = 0
    refusal: str | None = None
    warnings: list[str] = field(default_factory=list)


def check_render(
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    resolution: float,
    native: float | None = None,
    model_metres: float | None = None,
) -> RenderCheck:
    """Check a render of ``extent`` (in ``crs``) at ``resolution`` before it is made:
    refused over :data:`MAX_RENDER_SIDE` or under :data:`MIN_RENDER_SIDE` px a side; warned
    when under one model tile, :data:`FAR` times finer or coarser than the source's ``native``
    resolution (same units), or, on the ground, further from ``model_metres`` (the pixel size
    the model learned from) than the contract's ``model_pixel_tolerance``, as segment warns."""
    unit = resolution_unit(crs)
    try:
        cols, rows = render_size(extent, resolution)
    except ValueError as exc:
        return RenderCheck(refusal=str(exc))
    check = RenderCheck(cols, rows)
    if min(cols, rows) < MIN_RENDER_SIDE:
        check.refusal = (
            f"rendering the visible extent at {resolution:.6g} {unit} gives only {cols} x {rows} "
            f"px, too few to segment (at least {MIN_RENDER_SIDE} a side): zoom in to the water "
            "and let the resolution follow the map, or set a finer one"
        )
        return check
    if min(cols, rows) < SMALL_RENDER_SIDE:
        check.warnings.append(
            f"only {cols} x {rows} px, less than one {SMALL_RENDER_SIDE} px tile: zoom in or set "
            "a finer resolution for a useful mask"
        )
    if native:
        if resolution < native / FAR:
            check.warnings.append(
                f"{native / resolution:.0f}x finer than the source ({native:.6g} {unit}): no "
                "detail is gained, objects look larger than the model learned them; let the "
                "resolution follow the map"
            )
        elif resolution > native * FAR:
            check.warnings.append(
                f"{resolution / native:.0f}x coarser than the source ({native:.6g} {unit}): "
                "zoom in to the water for the source's detail"
            )
    centre = extent.center()
    if model_metres:  # the engine's own rule (segment warns too): the contract's tolerance
        metres = ground_metres(resolution, crs, centre)
        ratio = metres / model_metres
        if not 1 / MODEL_PIXEL_TOLERANCE <= ratio <= MODEL_PIXEL_TOLERANCE:
            how = f"{ratio:.0f}x coarser" if ratio > 1 else f"{1 / ratio:.0f}x finer"
            check.warnings.append(
                f"{metres:.3g} m on the ground, {how} than the {model_metres:g} m pixels the "
                f"model learned from: expect a wrong mask; about {model_metres:g} m fits it"
            )
    return check


def render_image(
    layer: QgsMapLayer,
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    cols: int,
    rows: int,
) -> QImage:
    """Draw ``layer`` over ``extent`` (in ``crs``) into a transparent ``cols`` x ``rows``
    image, synchronously (safe in a worker thread)."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(crs)
    settings.setTransformContext(QgsProject.instance().transformContext())
    settings.setOutputSize(QSize(cols, rows))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    settings.setFlag(QgsMapSettings.Antialiasing, True)
    settings.setFlag(QgsMapSettings.DrawLabeling, False)

    image = QImage(cols, rows, QImage.Format_ARGB32_Premultiplied)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    try:
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.renderSynchronously()
    finally:
        painter.end()
    return image


def image_to_rgba(image: QImage) -> np.ndarray:
    """The pixels of ``image`` as uint8 rows x cols x 4 (red, green, blue, alpha; colours not
    premultiplied)."""
    rgba = image.convertToFormat(QImage.Format_RGBA8888)
    rows, cols, stride = rgba.height(), rgba.width(), rgba.bytesPerLine()
    ptr = rgba.constBits()
    ptr.setsize(stride * rows)
    buf = np.frombuffer(ptr, dtype=np.uint8).reshape(rows, stride)
    return buf[:, : cols * 4].reshape(rows, cols, 4).copy()


def write_rgba_geotiff(
    rgba: np.ndarray, origin: tuple[float, float], resolution: float, wkt: str, path: Path
) -> Path:
    """Write uint8 rows x cols x 4 ``rgba`` as a GeoTIFF (photometric RGB + alpha band) whose
    top-left corner is ``origin`` (x, y) and pixels ``resolution`` map units square.

    Written to a temporary file beside ``path`` and renamed, so ``path`` is never partial.
    """
    from osgeo import gdal

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = rgba.shape[:2]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tif", dir=path.parent)
    os.close(fd)
    try:
        ds = gdal.GetDriverByName("GTiff").Create(
            tmp,
            cols,
            rows,
            4,
            gdal.GDT_Byte,
            ["PHOTOMETRIC=RGB", "ALPHA=YES", "COMPRESS=DEFLATE", "TILED=YES"],
        )
        if ds is None:
            raise RuntimeError(f"cannot create {path}: {gdal.GetLastErrorMsg()}")
        ds.SetGeoTransform((origin[0], resolution, 0.0, origin[1], 0.0, -resolution))
        ds.SetProjection(wkt)
        interps = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_AlphaBand)
        for b, interp in enumerate(interps):
            band = ds.GetRasterBand(b + 1)
            band.SetColorInterpretation(interp)
            band.WriteArray(rgba[:, :, b])
        ds.FlushCache()
        ds = None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def render_layer_to_geotiff(
    layer: QgsMapLayer,
    extent: QgsRectangle,
    crs: QgsCoordinateReferenceSystem,
    resolution: float,
    path,
) -> Path:
    """Render ``layer`` as QGIS draws it over ``extent`` (in ``crs``) at ``resolution`` map
    units per pixel and write an 8-bit RGBA GeoTIFF at ``path``; returns the path.

    The image's top-left corner is the extent's; its size is rounded up to whole pixels.
    Pixels where nothing was drawn have alpha 0 (nodata) and colour 0. Raises ValueError for a
    bad extent/resolution or an image over ``MAX_RENDER_SIDE`` px a side, RuntimeError when
    the layer cannot be rendered or written.
    """
    if layer is None or not layer.isValid():
        raise RuntimeError("the layer to render is not valid: check its source")
    if crs is None or not crs.isValid():
        raise ValueError("the render CRS is not valid: set a project CRS")
    cols, rows = render_size(extent, resolution)
    # whole pixels: the rendered extent has exactly the image's aspect ratio
    snapped = QgsRectangle(
        extent.xMinimum(),
        extent.yMaximum() - rows * resolution,
        extent.xMinimum() + cols * resolution,
        extent.yMaximum(),
    )
    rgba = image_to_rgba(render_image(layer, snapped, crs, cols, rows))
    rgba[rgba[:, :, 3] == 0, :3] = 0
    return write_rgba_geotiff(
        rgba, (snapped.xMinimum(), snapped.yMaximum()), resolution, crs.toWkt(), path
    )


# What ``plan --band-names`` needs about a file written by render_layer_to_geotiff (see
# layers.layer_band_facts): four 8-bit bands, red green blue alpha, no descriptions.
RENDERED_BAND_FACTS = {
    "names": [f"Band {b}" for b in range(1, 5)],
    "dtype": "uint8",
    "colour_interp": ["red", "green", "blue", "alpha"],
}


def renders_by_default(layer: QgsMapLayer) -> bool:
    """True for layers whose provider serves pictures or has no GDAL source to export band
    values from (XYZ, WMS, WMTS, WCS, ArcGIS, virtual rasters): the dock renders them. GDAL
    layers that are not a local file (/vsimem, subdatasets) keep their band values."""
    return layer is not None and layer.providerType() != "gdal"
