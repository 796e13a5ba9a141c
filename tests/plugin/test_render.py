"""Rendering any layer to an RGB GeoTIFF (plugin/render.py): a styled vector layer, a GeoTIFF
and a local XYZ tile tree (file:// tiles, no network) come out as 8-bit red/green/blue +
alpha GeoTIFFs with the requested CRS, origin and pixel size, and the backend's plan picks
the bundled RGB model for them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFillSymbol,
    QgsGeometry,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor, QImage

from plugin.contract import BUNDLED_MODELS
from plugin.render import MAX_RENDER_SIDE, render_layer_to_geotiff, render_size

from .conftest import EPSG, ORIGIN, PIXEL, REPO

pytestmark = pytest.mark.qgis

UTM = QgsCoordinateReferenceSystem(f"EPSG:{EPSG}")
WEB_MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
HALF_WORLD = 20037508.342789244  # web mercator: the world is [-H, H] x [-H, H]


def _read(path: Path):
    """(rgba uint8 rows x cols x 4, geotransform, EPSG code, colour interpretations)."""
    from osgeo import gdal, osr

    ds = gdal.Open(str(path))
    assert ds is not None and ds.RasterCount == 4
    interps = [
        gdal.GetColorInterpretationName(ds.GetRasterBand(b).GetColorInterpretation()).lower()
        for b in range(1, 5)
    ]
    assert all(ds.GetRasterBand(b).DataType == gdal.GDT_Byte for b in range(1, 5))
    srs = osr.SpatialReference(wkt=ds.GetProjection())
    srs.AutoIdentifyEPSG()
    rgba = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in range(1, 5)], axis=-1)
    return rgba, ds.GetGeoTransform(), int(srs.GetAuthorityCode(None)), interps


def _blue_square_layer() -> QgsVectorLayer:
    """A memory polygon layer (UTM 33N): a solid blue 200 m square, no outline, whose
    top-left corner is 100 m right of and 100 m below ORIGIN."""
    layer = QgsVectorLayer(f"Polygon?crs=EPSG:{EPSG}", "blue square", "memory")
    x0, y0 = ORIGIN[0] + 100, ORIGIN[1] - 100
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y0 - 200, x0 + 200, y0)))
    layer.dataProvider().addFeatures([feature])
    layer.updateExtents()
    symbol = QgsFillSymbol.createSimple({"color": "0,0,255,255", "outline_style": "no"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    assert layer.isValid()
    return layer


def test_vector_layer_renders_blue_pixels_where_drawn(qgis_new_project, tmp_path):
    extent = QgsRectangle(ORIGIN[0], ORIGIN[1] - 400, ORIGIN[0] + 500, ORIGIN[1])
    out = render_layer_to_geotiff(_blue_square_layer(), extent, UTM, PIXEL, tmp_path / "v.tif")

    assert out == tmp_path / "v.tif"
    assert [p.name for p in tmp_path.iterdir()] == ["v.tif"]  # no temporary file left
    rgba, gt, epsg, interps = _read(out)
    assert interps == ["red", "green", "blue", "alpha"]
    assert epsg == EPSG
    assert gt == pytest.approx((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
    assert rgba.shape == (40, 50, 4)
    inside = rgba[12:28, 12:28]  # rows/cols 10..30 are the square; 2 px off its edges
    assert (inside == [0, 0, 255, 255]).all()
    outside = np.ones((40, 50), bool)
    outside[9:31, 9:31] = False
    assert (rgba[outside] == 0).all()  # nothing drawn: alpha 0 (nodata), colour 0


def _rgb_raster(path: Path) -> Path:
    """A 3-band uint8 GeoTIFF (UTM 33N, 10 m, 40 x 60 px): left half red, right half green."""
    from osgeo import gdal, osr

    ds = gdal.GetDriverByName("GTiff").Create(str(path), 60, 40, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    ds.SetProjection(srs.ExportToWkt())
    red = np.zeros((40, 60), np.uint8)
    red[:, :30] = 255
    green = np.zeros((40, 60), np.uint8)
    green[:, 30:] = 255
    for b, arr in enumerate((red, green, np.zeros_like(red)), start=1):
        ds.GetRasterBand(b).WriteArray(arr)
        ds.GetRasterBand(b).SetColorInterpretation(gdal.GCI_RedBand + b - 1)
    ds = None
    return path


def test_geotiff_layer_renders_at_the_requested_resolution(qgis_new_project, tmp_path):
    layer = QgsRasterLayer(str(_rgb_raster(tmp_path / "rgb.tif")), "rgb")
    assert layer.isValid()
    # 20 m pixels over the raster plus 200 m of nothing on its right
    extent = QgsRectangle(ORIGIN[0], ORIGIN[1] - 400, ORIGIN[0] + 800, ORIGIN[1])
    rgba, gt, epsg, _ = _read(render_layer_to_geotiff(layer, extent, UTM, 20.0, tmp_path / "o.tif"))

    assert gt == pytest.approx((ORIGIN[0], 20.0, 0.0, ORIGIN[1], 0.0, -20.0))
    assert epsg == EPSG and rgba.shape == (20, 40, 4)
    assert (rgba[:, 1:14] == [255, 0, 0, 255]).all()
    assert (rgba[:, 16:29] == [0, 255, 0, 255]).all()
    assert (rgba[:, 31:, 3] == 0).all()


def test_render_in_another_crs(qgis_new_project, tmp_path):
    """The layer (UTM 33N) drawn in web mercator: the file says EPSG:3857, pixels land where
    the square is."""
    layer = _blue_square_layer()
    from qgis.core import QgsCoordinateTransform, QgsProject

    xform = QgsCoordinateTransform(UTM, WEB_MERCATOR, QgsProject.instance())
    box = xform.transformBoundingBox(layer.extent())
    extent = QgsRectangle(box)
    extent.grow(box.width())  # the square is the middle third
    resolution = extent.width() / 30
    out = render_layer_to_geotiff(layer, extent, WEB_MERCATOR, resolution, tmp_path / "m.tif")
    rgba, gt, epsg, _ = _read(out)
    assert epsg == 3857
    assert gt[0] == pytest.approx(extent.xMinimum()) and gt[3] == pytest.approx(extent.yMaximum())
    assert gt[1] == pytest.approx(resolution)
    assert (rgba[rows_cols_middle(rgba)] == [0, 0, 255, 255]).all()
    assert (rgba[:3, :3, 3] == 0).all()


def rows_cols_middle(rgba: np.ndarray) -> tuple[slice, slice]:
    rows, cols = rgba.shape[:2]
    return slice(rows // 2 - 2, rows // 2 + 2), slice(cols // 2 - 2, cols // 2 + 2)


TILE_COLOURS = {(0, 0): "#ff0000", (1, 0): "#00ff00", (0, 1): "#0000ff", (1, 1): "#ffff00"}


def _xyz_layer(root: Path) -> QgsRasterLayer:
    """An XYZ tile layer over a local tree root/{z}/{x}/{y}.png: zoom 0 grey, zoom 1 one
    solid colour per tile (TILE_COLOURS[(x, y)])."""
    for (z, x, y), colour in [((0, 0, 0), "#808080")] + [
        ((1, x, y), c) for (x, y), c in TILE_COLOURS.items()
    ]:
        image = QImage(256, 256, QImage.Format_RGB32)
        image.fill(QColor(colour))
        (root / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
        assert image.save(str(root / str(z) / str(x) / f"{y}.png"))
    url = f"file://{root.as_posix()}/{{z}}/{{x}}/{{y}}.png"
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmin=0&zmax=1", "local tiles", "wms")
    assert layer.isValid(), layer.error().summary()
    return layer


def test_xyz_tile_layer_renders_its_tiles(qgis_new_project, tmp_path):
    layer = _xyz_layer(tmp_path / "tiles")
    # the top-right quarter of the world at zoom 1's resolution: tile (1, 0), green
    resolution = 2 * HALF_WORLD / 512
    extent = QgsRectangle(0, 0, HALF_WORLD, HALF_WORLD)
    out = render_layer_to_geotiff(layer, extent, WEB_MERCATOR, resolution, tmp_path / "x.tif")
    rgba, gt, epsg, interps = _read(out)
    assert interps == ["red", "green", "blue", "alpha"]
    assert epsg == 3857 and rgba.shape == (256, 256, 4)
    assert gt == pytest.approx((0.0, resolution, 0.0, HALF_WORLD, 0.0, -resolution))
    assert (rgba[5:-5, 5:-5] == [0, 255, 0, 255]).all()


def test_too_large_an_image_says_how_to_fix_it(qgis_new_project, tmp_path):
    extent = QgsRectangle(0, 0, 200_000, 1000)
    with pytest.raises(ValueError, match="coarser resolution.*or a smaller extent") as err:
        render_layer_to_geotiff(_blue_square_layer(), extent, UTM, 10.0, tmp_path / "big.tif")
    assert "20000 x 100 px" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
    assert render_size(QgsRectangle(0, 0, MAX_RENDER_SIDE, 5), 1.0) == (MAX_RENDER_SIDE, 5)
    with pytest.raises(ValueError, match="not positive"):
        render_size(extent, 0.0)


@pytest.mark.slow
def test_backend_plan_chooses_the_rgb_model(qgis_new_project, tmp_path, backend_python):
    """The real backend (``python -m backend plan --json``) picks the bundled RGB model for a
    rendered file."""
    rgb = BUNDLED_MODELS["rgb"]
    if not (REPO / "resources" / "models" / rgb.file).is_file():
        pytest.skip(f"resources/models/{rgb.file} is not installed")
    layer = QgsRasterLayer(str(_rgb_raster(tmp_path / "rgb.tif")), "rgb")
    extent = QgsRectangle(ORIGIN[0], ORIGIN[1] - 400, ORIGIN[0] + 600, ORIGIN[1])
    out = render_layer_to_geotiff(layer, extent, UTM, PIXEL, tmp_path / "rendered.tif")
    done = subprocess.run(
        [backend_python, "-m", "backend", "plan", str(out), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-500:]
    plan = json.loads(done.stdout)
    assert plan["model"]["key"] == "rgb", plan
    assert plan["bands"] == [1, 2, 3]


def test_dock_renders_an_xyz_layer_for_the_rgb_model(plugin, tmp_path, qtbot):
    """An XYZ layer in the dock: the Input row offers "Render: visible map extent" (chosen),
    the plan picks the bundled RGB model for the rendered RGBA file, the request's job renders
    the visible extent in the map's CRS, and too fine a resolution says how to fix it."""
    from qgis.core import QgsProject

    rgb = BUNDLED_MODELS["rgb"]
    if not (REPO / "resources" / "models" / rgb.file).is_file():
        pytest.skip(f"resources/models/{rgb.file} is not installed")
    dock = plugin.dock
    layer = _xyz_layer(tmp_path / "tiles")
    QgsProject.instance().addMapLayer(layer)
    canvas = plugin.iface.mapCanvas()
    canvas.setDestinationCrs(WEB_MERCATOR)
    canvas.setExtent(QgsRectangle(0, 0, HALF_WORLD, HALF_WORLD))
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    dock.layerCombo.setLayer(layer)
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)

    assert not dock.inputModeRow.isHidden()
    assert dock.inputModeCombo.currentData() == "render" and dock.rendering()
    assert dock.auto_choice == "rgb", dock.modelInfoLabel.text()
    assert dock.band_mapping() == [1, 2, 3]
    dock.resolutionSpin.setValue(2 * HALF_WORLD / 512)
    request, job = dock.build_request()
    assert request.temporary_input and request.bands == [1, 2, 3]
    out = job(str(tmp_path / "rendered.tif"))
    rgba, gt, epsg, interps = _read(out)
    assert epsg == 3857 and interps == ["red", "green", "blue", "alpha"]
    assert gt[1] == pytest.approx(2 * HALF_WORLD / 512)
    assert ((rgba == [0, 255, 0, 255]).all(axis=-1)).sum() > 200 * 200  # tile (1, 0)

    dock.resolutionSpin.setValue(1.0)
    assert dock.build_request() is None
    assert "coarser resolution" in dock.last_message()
