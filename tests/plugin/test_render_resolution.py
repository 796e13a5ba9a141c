"""The render resolution of an XYZ layer in the dock (issue 22, item 3): it follows the map
until the user edits it, starts at the source's finest zoom level where the map shows it finer,
shows its unit and the render's size in pixels, warns when far finer than the source or the
model's training resolution, and refuses an absurd or a tiny render before rendering. The
tiles are made here and served on 127.0.0.1 by a bounded http.server thread."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtGui import QColor, QImage

from plugin.contract import BUNDLED_MODELS
from plugin.render import MIN_RENDER_SIDE, check_render, ground_metres, resolution_unit

from .conftest import REPO

pytestmark = pytest.mark.qgis

WEB_MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
HALF_WORLD = 20037508.342789244
ZMAX = 4
NATIVE = 2 * HALF_WORLD / (256 * 2**ZMAX)  # metres per pixel of zoom 4 (Web Mercator)
TILE = 2 * HALF_WORLD / 2**ZMAX  # side of a zoom-4 tile


def tile_colour(x: int, y: int) -> tuple[int, int, int]:
    return (x * 15, y * 15, 200)


def tile_extent(x: int, y: int) -> QgsRectangle:
    """Web Mercator extent of zoom-4 tile (x, y) (y counted from the top)."""
    left, top = -HALF_WORLD + x * TILE, HALF_WORLD - y * TILE
    return QgsRectangle(left, top - TILE, left + TILE, top)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # no access log on stderr
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        _Quiet.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def xyz_url(tmp_path):
    """A zoom 0..4 tile tree (zoom 4: one colour per tile, tile_colour; others grey) served
    on 127.0.0.1 for the test; the server thread is stopped and joined afterwards."""
    root = tmp_path / "tiles"
    grey = QImage(256, 256, QImage.Format_RGB32)
    grey.fill(QColor("#808080"))
    for z in range(ZMAX + 1):
        for x in range(2**z):
            (root / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
            for y in range(2**z):
                image = grey
                if z == ZMAX:
                    image = QImage(256, 256, QImage.Format_RGB32)
                    image.fill(QColor(*tile_colour(x, y)))
                assert image.save(str(root / str(z) / str(x) / f"{y}.png"))
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    _Quiet.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def _xyz_layer(url: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmin=0&zmax={ZMAX}", "served tiles", "wms")
    assert layer.isValid(), layer.error().summary()
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture()
def dock_on_xyz(plugin, xyz_url, tmp_path, qtbot):
    """The dock with the served XYZ layer chosen while the map shows the whole world."""
    dock = plugin.dock
    canvas = plugin.iface.mapCanvas()
    window = plugin.iface.mainWindow()  # shown: a hidden canvas keeps a 98 x 28 px output
    window.resize(1000, 800)
    window.show()
    qtbot.waitExposed(window)
    canvas.resize(800, 600)
    qtbot.waitUntil(lambda: canvas.mapSettings().outputSize().width() > 700, timeout=5000)
    canvas.setDestinationCrs(WEB_MERCATOR)
    canvas.setExtent(QgsRectangle(-HALF_WORLD, -HALF_WORLD, HALF_WORLD, HALF_WORLD))
    layer = _xyz_layer(xyz_url)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    dock.layerCombo.setLayer(layer)
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    yield dock, canvas, layer
    window.hide()


def _zoom(canvas, extent: QgsRectangle) -> None:
    canvas.setExtent(extent)
    canvas.refresh()


def test_resolution_follows_the_map_never_finer_than_the_source(dock_on_xyz):
    dock, canvas, _ = dock_on_xyz
    assert dock.rendering() and dock.resolutionAutoButton.isChecked()
    assert not dock.resolutionRow.isHidden()
    # the whole world: the map's resolution (coarser than zoom 4), not a stale one
    world_upp = canvas.mapUnitsPerPixel()
    assert world_upp > NATIVE
    assert dock.resolutionSpin.value() == pytest.approx(world_upp, rel=1e-6)
    assert dock.resolutionSpin.suffix() == " m/px"
    check = dock.render_check()
    assert f"{check.cols} x {check.rows} px of the visible extent (follows the map)" in (
        dock.renderInfoLabel.text()
    )
    # zoomed to a few tiles: the map is finer than zoom 4, so zoom 4 it is
    _zoom(canvas, QgsRectangle(0, 0, 2 * TILE, 2 * TILE))
    assert canvas.mapUnitsPerPixel() < NATIVE
    assert dock.resolutionSpin.value() == pytest.approx(NATIVE, rel=1e-6)
    check = dock.render_check()
    assert 2 * 256 <= max(check.cols, check.rows) <= 4 * 256 and not check.refusal
    assert f"{check.cols} x {check.rows} px" in dock.renderInfoLabel.text()
    # and back out: follows again
    _zoom(canvas, QgsRectangle(-HALF_WORLD, -HALF_WORLD, HALF_WORLD, HALF_WORLD))
    assert dock.resolutionSpin.value() == pytest.approx(canvas.mapUnitsPerPixel(), rel=1e-6)


def test_an_edited_resolution_stays_and_warns_when_far_finer_than_the_source(dock_on_xyz):
    dock, canvas, _ = dock_on_xyz
    _zoom(canvas, QgsRectangle(0, 0, 3 * TILE, 3 * TILE))
    dock.resolutionSpin.setValue(NATIVE / 4)  # the user's value
    assert not dock.resolutionAutoButton.isChecked()
    _zoom(canvas, QgsRectangle(0, 0, 2 * TILE, 2 * TILE))
    assert dock.resolutionSpin.value() == pytest.approx(NATIVE / 4)  # no longer follows
    text = dock.renderInfoLabel.text()
    assert "(set by hand)" in text and "4x finer than the source (9783.94 m/px)" in text
    dock.resolutionAutoButton.setChecked(True)  # Auto: follows the map again
    assert dock.resolutionSpin.value() == pytest.approx(NATIVE, rel=1e-6)


def test_absurd_and_tiny_renders_are_refused_before_rendering(dock_on_xyz, monkeypatch):
    import plugin.dock as dock_module

    dock, canvas, _ = dock_on_xyz
    rendered = []
    monkeypatch.setattr(dock_module, "render_layer_to_geotiff", lambda *a: rendered.append(a))
    dock.resolutionSpin.setValue(1.0)  # the whole world at 1 m: 40 million px a side
    assert dock.build_request() is None
    assert "over the 10000 x 10000 px limit: choose a coarser resolution" in dock.last_message()
    assert dock.renderInfoLabel.text().startswith("Cannot render: ")
    dock.resolutionAutoButton.setChecked(True)
    _zoom(canvas, QgsRectangle(0, 0, TILE / 20, TILE / 20))  # 13 px of zoom 4
    assert dock.build_request() is None
    message = dock.last_message()
    assert "too few to segment" in message and f"at least {MIN_RENDER_SIDE}" in message
    assert rendered == []


@pytest.mark.slow
def test_the_served_tiles_render_georeferenced_at_the_source_resolution(dock_on_xyz, tmp_path):
    from osgeo import gdal

    dock, canvas, _ = dock_on_xyz
    if not (REPO / "resources" / "models" / BUNDLED_MODELS["rgb"].file).is_file():
        pytest.skip("the bundled RGB model is not installed")
    x, y = 9, 5
    _zoom(canvas, QgsRectangle(tile_extent(x, y).xMinimum(), tile_extent(x, y + 1).yMinimum(),
                               tile_extent(x + 1, y).xMaximum(), tile_extent(x, y).yMaximum()))  # fmt: skip
    assert dock.resolutionSpin.value() == pytest.approx(NATIVE, rel=1e-6)
    built = dock.build_request()
    assert built is not None, dock.last_message()
    request, job = built
    out = job(str(tmp_path / "rendered.tif"))
    ds = gdal.Open(str(out))
    gt = ds.GetGeoTransform()
    assert gt[1] == pytest.approx(NATIVE) and gt[5] == pytest.approx(-NATIVE)
    rgba = np.stack([ds.GetRasterBand(b).ReadAsArray() for b in range(1, 5)], axis=-1)
    # the pixel whose centre is the centre of tile (x, y) has that tile's colour
    centre = tile_extent(x, y).center()
    col = int((centre.x() - gt[0]) / gt[1])
    row = int((centre.y() - gt[3]) / gt[5])
    assert tuple(rgba[row, col]) == (*tile_colour(x, y), 255)
    # within a pixel: the colour changes where the tile's left edge falls
    left = (tile_extent(x, y).xMinimum() - gt[0]) / gt[1]  # in pixels, 85.6 here
    line = [tuple(v) for v in rgba[row, :, :3]]
    change = next(i for i in range(1, len(line)) if line[i] == tile_colour(x, y) != line[i - 1])
    assert line[change - 1] == tile_colour(x - 1, y)
    assert abs(change - left) <= 1.0, (change, left)
    assert any(p.startswith(f"/{ZMAX}/") for p in _Quiet.requests)


def test_check_render_units_and_the_models_training_resolution():
    utm = QgsCoordinateReferenceSystem("EPSG:32633")
    geographic = QgsCoordinateReferenceSystem("EPSG:4326")
    assert resolution_unit(utm) == "m/px" and resolution_unit(geographic) == "deg/px"
    # Web Mercator metres at 60 degrees north are half a metre on the ground
    at = QgsPointXY(0, 8399737.89)  # 60 N
    assert ground_metres(10.0, WEB_MERCATOR, at) == pytest.approx(5.0, rel=0.01)
    area = QgsRectangle(500000, 4600000, 505000, 4605000)
    fine = check_render(area, utm, 1.0, native=None, model_metres=10.0)
    assert fine.refusal is None and (fine.cols, fine.rows) == (5000, 5000)
    assert any("10x finer than the 10 m pixels the model learned from" in w for w in fine.warnings)
    assert check_render(area, utm, 10.0, native=10.0, model_metres=10.0).warnings == []
    coarse = check_render(area, utm, 50.0, native=10.0)
    assert any("5x coarser than the source" in w for w in coarse.warnings)
    small = check_render(area, utm, 40.0)  # 125 px: less than a tile
    assert small.refusal is None and "less than one 256 px tile" in small.warnings[0]


def test_a_geographic_map_gives_degrees_per_pixel(dock_on_xyz):
    dock, canvas, layer = dock_on_xyz
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    _zoom(canvas, QgsRectangle(0, 0, 20, 15))  # finer on the map than zoom 4 is
    assert dock.resolutionSpin.suffix() == " deg/px" and dock.resolutionSpin.decimals() == 9
    # zoom 4's 9784 m at the equator, in degrees: 360 / (256 * 16)
    assert dock.resolutionSpin.value() == pytest.approx(360 / 4096, rel=1e-3)
    assert "px of the visible extent (follows the map)" in dock.renderInfoLabel.text()
