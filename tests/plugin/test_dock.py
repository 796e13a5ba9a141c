"""The dock: validation before running, model info and band mapping, the automatic choice
between the bundled models, backend diagnostics, shoreline export, non-file layers, and an
offscreen screenshot."""

from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from plugin.contract import BUNDLED_MODELS
from plugin.dock import MODELS_DIR
from tests.band_names import NAMED  # the namings the backend tests map too

from .conftest import EPSG, ORIGIN, PIXEL, set_method, write_raster

pytestmark = pytest.mark.qgis


def _add_raster(path: Path, name: str = "scene") -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _assert_nothing_started(dock, before: int) -> None:
    assert dock.tasks == []
    assert QgsApplication.taskManager().count() == before


def _settle(dock, qtbot) -> None:
    """Wait for the dock's backend queries (plan, model-info) to answer."""
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)


def _prepare(dock, tmp_path, tiny_model, layer, qtbot):
    dock.layerCombo.setLayer(layer)
    dock.modelCombo.addItem("tiny", str(tiny_model))
    dock.modelCombo.setCurrentIndex(dock.modelCombo.count() - 1)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)


def test_no_layer_starts_nothing(plugin, tmp_path):
    dock = plugin.dock
    before = QgsApplication.taskManager().count()
    assert dock.layerCombo.currentLayer() is None
    assert dock.start_run() is None
    assert "Choose a raster layer" in dock.last_message()
    _assert_nothing_started(dock, before)


def test_layer_picker_follows_the_project(plugin, tmp_path):
    dock = plugin.dock
    raster = _add_raster(write_raster(tmp_path / "a.tif"), "a")
    vector = QgsVectorLayer("LineString?crs=EPSG:4326", "lines", "memory")
    QgsProject.instance().addMapLayer(vector)
    names = [dock.layerCombo.itemText(i) for i in range(dock.layerCombo.count())]
    assert "a" in names[-1] and not any("lines" in n for n in names)  # rasters only
    QgsProject.instance().removeMapLayer(raster.id())
    assert [dock.layerCombo.itemText(i) for i in range(dock.layerCombo.count())] == [""]


def test_one_band_layer_is_refused(plugin, tmp_path, tiny_model, qtbot):
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "gray.tif", bands=1), "gray")
    _prepare(dock, tmp_path, tiny_model, layer, qtbot)
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    assert "has 1 band(s) but the model needs 4" in dock.last_message()
    _assert_nothing_started(dock, before)


def test_unwritable_folder_is_refused(plugin, tmp_path, tiny_model, qtbot):
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "s.tif"))
    _prepare(dock, tmp_path, tiny_model, layer, qtbot)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    dock.outDirWidget.setFilePath(str(blocker / "out"))  # a folder inside a file: never writable
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    assert "Cannot write to the output folder" in dock.last_message()
    _assert_nothing_started(dock, before)


@pytest.mark.parametrize("python", ["missing", "/usr/bin/python3"])
def test_missing_backend_is_refused_with_the_fix(plugin, tmp_path, tiny_model, python, qtbot):
    if python != "missing" and not Path(python).exists():
        pytest.skip(f"{python} not installed")
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "s.tif"))
    _prepare(dock, tmp_path, tiny_model, layer, qtbot)
    dock.pythonWidget.setFilePath(
        str(tmp_path / "no-such-python") if python == "missing" else python
    )
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    msg = dock.last_message()
    assert msg.startswith("Backend missing:")
    assert (
        ("does not exist" in msg)
        if python == "missing"
        else ("cannot import torch" in msg and "make setup" in msg)
    )
    _assert_nothing_started(dock, before)


def test_model_info_fills_label_and_band_mapping(plugin, tmp_path, tiny_model, qtbot):
    dock = plugin.dock
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    layer = _add_raster(
        write_raster(tmp_path / "s2.tif", bands=13, size=(16, 16), descriptions=names)
    )
    dock.layerCombo.setLayer(layer)
    dock.set_model_path(str(tiny_model))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    text = dock.modelInfoLabel.text()
    assert dock.model_info is not None, text
    assert "unet" in text and "bands B2 B3 B4 B8" in text and "iou_mean 0.500" in text
    assert [
        dock.bandsForm.itemAt(i, dock.bandsForm.LabelRole).widget().text()
        for i in range(dock.bandsForm.rowCount())
    ] == ["B2", "B3", "B4", "B8"]
    assert dock.band_mapping() == [2, 3, 4, 8]


def test_check_backend_reports_interpreter_and_device(plugin, qtbot):
    dock = plugin.dock
    dock.check_backend()
    qtbot.waitUntil(lambda: dock.backend_info is not None, timeout=60000)
    text = dock.diagnosticsText.toPlainText()
    assert "Python: " in text and ".venv" in text
    assert "torch: 2." in text and "CUDA: not available" in text
    assert "Device used by 'auto': cpu" in text
    assert dock.deviceCombo.itemText(0) == "auto (cpu)"
    assert dock.deviceCombo.itemText(2) == "cuda (not available)"


def test_check_backend_explains_a_missing_backend(plugin, tmp_path):
    dock = plugin.dock
    dock.pythonWidget.setFilePath(str(tmp_path / "nope"))
    dock.check_backend()
    text = dock.diagnosticsText.toPlainText()
    assert text.startswith("Backend missing.") and str(tmp_path / "nope") in text


def _line_layer() -> QgsVectorLayer:
    layer = QgsVectorLayer(
        f"LineString?crs=EPSG:{EPSG}&field=length_m:double", "scene shoreline", "memory"
    )
    feat = QgsFeature(layer.fields())
    x0, y0 = ORIGIN
    feat.setGeometry(
        QgsGeometry.fromPolylineXY([QgsPointXY(x0, y0), QgsPointXY(x0 + 300, y0 - 400)])
    )
    feat["length_m"] = 500.0
    layer.dataProvider().addFeatures([feat])
    return layer


@pytest.mark.parametrize("name,driver", [("coast.shp", "ESRI Shapefile"), ("coast.gpkg", "GPKG")])
def test_export_shoreline(plugin, tmp_path, name, driver):
    dock = plugin.dock
    layer = _line_layer()
    QgsProject.instance().addMapLayer(layer)
    written = dock.export_shoreline_to(layer, str(tmp_path / name))
    assert written == str(tmp_path / name)
    back = QgsVectorLayer(written, "back", "ogr")
    assert back.isValid() and back.featureCount() == 1
    assert back.dataProvider().storageType() == driver
    assert back.crs().authid() == f"EPSG:{EPSG}"
    feat = next(back.getFeatures())
    assert feat["length_m"] == 500.0 and abs(feat.geometry().length() - 500.0) < 1e-6
    assert "Shoreline saved" in dock.last_message()


def test_non_file_layer_is_exported_to_a_temporary_geotiff(plugin, tmp_path, tiny_model, qtbot):
    """A raster that is not a local file (here GDAL's in-memory /vsimem/) -> the visible extent
    at native resolution goes to a temporary GeoTIFF the backend can read."""
    from osgeo import gdal

    from plugin.layers import export_extent, export_raster_extent, local_raster_path

    src = write_raster(tmp_path / "src.tif", size=(40, 60))
    gdal.Translate("/vsimem/waterseg-test.tif", str(src))
    try:
        layer = QgsRasterLayer("/vsimem/waterseg-test.tif", "in memory")
        assert layer.isValid() and local_raster_path(layer) is None
        assert local_raster_path(QgsRasterLayer(str(src), "file")) == str(src)
        # the canvas shows the left half: 30 columns of 10 m
        from qgis.core import QgsRectangle

        visible = QgsRectangle(ORIGIN[0] - 100, ORIGIN[1] - 400, ORIGIN[0] + 300, ORIGIN[1] + 100)
        extent, cols, rows = export_extent(layer, visible, layer.crs())
        assert (cols, rows) == (30, 40)
        out = tmp_path / "export.tif"
        export_raster_extent(
            layer.dataProvider().clone(), layer.crs(), str(out), extent, cols, rows
        )
        ds = gdal.Open(str(out))
        assert (ds.RasterCount, ds.RasterXSize, ds.RasterYSize) == (4, 30, 40)
        assert ds.GetGeoTransform() == pytest.approx((ORIGIN[0], PIXEL, 0, ORIGIN[1], 0, -PIXEL))
        ref = gdal.Open(str(src)).ReadAsArray()[:, :40, :30]
        assert (ds.ReadAsArray() == ref).all()  # raw values, not rendered colours
        ds = None
        # the dock turns such a layer into a request on a temporary file
        QgsProject.instance().addMapLayer(layer)
        _prepare(plugin.dock, tmp_path, tiny_model, layer, qtbot)
        request, job = plugin.dock.build_request()
        assert request.temporary_input and job is not None
        assert Path(request.input_path).name == "in_memory.tif"
    finally:
        gdal.Unlink("/vsimem/waterseg-test.tif")


def test_dock_screenshot_is_not_blank(plugin, tmp_path, qtbot):
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "scene.tif"), "S2 scene")
    dock.layerCombo.setLayer(layer)
    dock.setFloating(True)
    dock.resize(420, 900)
    dock.backendGroup.setCollapsed(False)
    dock.diagnosticsText.setPlainText(
        "Python: .venv/bin/python (plugin virtual environment)\n"
        "torch: 2.13.0  CUDA: not available  device: cpu"
    )
    dock.show()
    qtbot.wait(50)
    image = dock.grab().toImage()
    path = tmp_path / "dock.png"
    assert image.save(str(path))
    assert path.stat().st_size > 5000
    colours = {
        QColor(image.pixel(x, y)).name()
        for x in range(0, image.width(), 3)
        for y in range(0, image.height(), 3)
    }
    assert len(colours) >= 8, colours
    dock.hide()
    dock.setFloating(False)


def _rows(dock) -> list[str]:
    return [
        dock.bandsForm.itemAt(i, dock.bandsForm.LabelRole).widget().text()
        for i in range(dock.bandsForm.rowCount())
    ]


def _request_or_missing(dock, key: str):
    """build_request(); when the bundled file is not installed, check the one-line refusal."""
    path = str(MODELS_DIR / BUNDLED_MODELS[key].file)
    built = dock.build_request()
    if not Path(path).is_file():
        assert built is None
        assert dock.last_message().startswith(f"The bundled model {path} is missing:")
        pytest.skip(f"{path} is not installed")
    assert built is not None, dock.last_message()
    return built[0], path


def test_model_picker_offers_automatic_then_both_bundled_models(plugin):
    dock = plugin.dock
    items = [(dock.modelCombo.itemText(i), dock.modelCombo.itemData(i)) for i in range(3)]
    assert items == [
        ("Bundled model (chosen from the layer's bands)", ""),
        ("Bundled: B2 B3 B4 B8 B11 B12 (with SWIR)", str(MODELS_DIR / "waterseg-default.pt")),
        ("Bundled: B2 B3 B4 B8 (10 m bands)", str(MODELS_DIR / "waterseg-rgbn.pt")),
    ]
    assert dock.modelCombo.currentIndex() == 0 and dock.is_automatic()
    assert "once you pick a raster layer" in dock.modelInfoLabel.text()


def test_automatic_mode_uses_the_4_band_model_for_a_4_band_layer(model_dock, tmp_path, qtbot):
    dock = model_dock
    layer = _add_raster(write_raster(tmp_path / "rgbn.tif", bands=4, size=(16, 16)), "rgbn")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    assert dock.auto_choice == "rgbn"
    assert _rows(dock) == ["B2", "B3", "B4", "B8"] and dock.band_mapping() == [1, 2, 3, 4]
    assert dock.modelInfoLabel.text().startswith(
        "Using the bundled 4-band model (B2 B3 B4 B8): the raster has no B11, B12 "
        "(4 unnamed bands read as the 10 m Sentinel-2 order"
    )
    request, path = _request_or_missing(dock, "rgbn")
    assert request.model_path == path and request.bands == [1, 2, 3, 4]
    args = request.backend_args()
    assert args[args.index("--model") + 1] == path and args[args.index("--bands") + 1] == "1,2,3,4"


def _six_band_layer(tmp_path, descriptions):
    """A 16 x 16 six-band GeoTIFF layer "six" whose bands are described ``descriptions``."""
    path = write_raster(tmp_path / "six.tif", bands=6, size=(16, 16), descriptions=descriptions)
    return _add_raster(path, "six")


def test_automatic_mode_follows_the_layer_and_uses_the_swir_model(model_dock, tmp_path, qtbot):
    dock = model_dock
    swir = _six_band_layer(tmp_path, ["B8", "B2", "B3", "B4", "B12", "B11"])
    four = _add_raster(write_raster(tmp_path / "four.tif", bands=4, size=(16, 16)), "four")
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    dock.layerCombo.setLayer(four)
    _settle(dock, qtbot)
    assert _rows(dock) == ["B2", "B3", "B4", "B8"]
    dock.layerCombo.setLayer(swir)  # the rows and the choice follow the layer
    _settle(dock, qtbot)
    assert dock.auto_choice == "default"
    assert _rows(dock) == ["B2", "B3", "B4", "B8", "B11", "B12"]
    assert dock.band_mapping() == [2, 3, 4, 1, 6, 5]
    assert dock.modelInfoLabel.text() == (
        "Using the bundled 6-band model (B2 B3 B4 B8 B11 B12): the raster has B2 B3 B4 B8 "
        "B11 B12 (by its band descriptions)"
    )
    request, path = _request_or_missing(dock, "default")
    assert request.model_path == path and request.bands == [2, 3, 4, 1, 6, 5]
    args = request.backend_args()
    assert args[args.index("--bands") + 1] == "2,3,4,1,6,5"
    dock.layerCombo.setLayer(four)
    _settle(dock, qtbot)
    assert dock.auto_choice == "rgbn" and dock.band_mapping() == [1, 2, 3, 4]


def test_unnamed_sentinel2_stack_gets_the_swir_model(model_dock, tmp_path, qtbot):
    dock = model_dock
    layer = _add_raster(write_raster(tmp_path / "l2a.tif", bands=12, size=(8, 8)), "l2a")
    dock.layerCombo.setLayer(layer)
    _settle(dock, qtbot)
    assert dock.auto_choice == "default"
    assert dock.band_mapping() == [2, 3, 4, 8, 11, 12]
    assert "12 unnamed bands read as the Sentinel-2 L2A order" in dock.modelInfoLabel.text()


def test_a_bundled_model_picked_by_hand_overrides_automatic(model_dock, tmp_path, qtbot):
    dock = model_dock
    layer = _six_band_layer(tmp_path, ["B2", "B3", "B4", "B8", "B11", "B12"])
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    rgbn = str(MODELS_DIR / "waterseg-rgbn.pt")
    _settle(dock, qtbot)
    dock.modelCombo.setCurrentIndex(dock.modelCombo.findData(rgbn))
    assert not dock.is_automatic() and dock.model_path() == rgbn
    assert _rows(dock) == ["B2", "B3", "B4", "B8"]
    _settle(dock, qtbot)  # plan and model-info of the file
    assert dock.band_mapping() == [1, 2, 3, 4]
    if Path(rgbn).is_file():
        assert "bands B2 B3 B4 B8 ·" in dock.modelInfoLabel.text(), dock.modelInfoLabel.text()
    assert _rows(dock) == ["B2", "B3", "B4", "B8"]
    request, path = _request_or_missing(dock, "rgbn")
    assert request.model_path == rgbn and request.bands == [1, 2, 3, 4]
    # back to automatic: the SWIR model again
    dock.modelCombo.setCurrentIndex(0)
    _settle(dock, qtbot)
    assert dock.auto_choice == "default" and len(_rows(dock)) == 6


def test_swir_model_by_hand_on_a_4_band_layer_says_what_to_do(plugin, tmp_path, qtbot):
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "four.tif", bands=4, size=(16, 16)), "four")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    dock.modelCombo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    assert dock.last_message() == (
        "Layer 'four' has 4 band(s) but the model needs 6 (B2 B3 B4 B8 B11 B12): "
        "choose a multispectral image or the automatic bundled model."
    )
    _assert_nothing_started(dock, before)


def test_three_band_layer_is_refused_in_automatic_mode(plugin, tmp_path, qtbot):
    dock = plugin.dock
    layer = _add_raster(write_raster(tmp_path / "rgb.tif", bands=3, size=(16, 16)), "rgb")
    dock.layerCombo.setLayer(layer)
    _settle(dock, qtbot)
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    message = dock.last_message()  # the backend's plan says why, in one line
    if (MODELS_DIR / "waterseg-rgb.pt").is_file():  # 3 unnamed 16-bit bands: no guess
        assert message.startswith("Layer 'rgb': cannot tell which of the raster's 3 uint16")
    else:
        assert message.startswith(
            "Layer 'rgb': the raster has 3 band(s) but the model needs 4 (B2 B3 B4 B8); "
            "missing B8; pass a raster with these bands or --bands"
        )
    assert "--bands" in message
    assert message.endswith("; choose a method and map its bands (Band mapping).")
    reason = message[
        len("Layer 'rgb': ") : -len("; choose a method and map its bands (Band mapping).")
    ]
    assert dock.modelInfoLabel.text() == (
        f"Cannot use this layer with method auto: {reason}. Choose a method and map its bands "
        "(e.g. mixed-adaptive: B3 B8 B11)"
    )
    _assert_nothing_started(dock, before)


def test_missing_bundled_model_is_one_line_with_the_fix(model_dock, tmp_path, monkeypatch, qtbot):
    empty = tmp_path / "no-models"
    monkeypatch.setattr("plugin.dock.MODELS_DIR", empty)
    dock = model_dock
    layer = _add_raster(write_raster(tmp_path / "four.tif", bands=4, size=(16, 16)), "four")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    missing = empty / "waterseg-rgbn.pt"
    assert dock.modelInfoLabel.text().endswith(f", but {missing} is missing: reinstall the plugin")
    before = QgsApplication.taskManager().count()
    assert dock.start_run() is None
    assert dock.last_message() == (
        f"The bundled model {missing} is missing: reinstall the plugin, or browse to a "
        "WaterSeg checkpoint (.pt)."
    )
    _assert_nothing_started(dock, before)


@pytest.mark.parametrize("case", sorted(NAMED))
def test_dock_maps_named_bands_like_the_backend(model_dock, tmp_path, qtbot, case):
    names, expected = NAMED[case]
    dock = model_dock
    layer = _add_raster(write_raster(tmp_path / "n.tif", size=(16, 16), descriptions=names))
    dock.layerCombo.setLayer(layer)
    _settle(dock, qtbot)
    assert dock.auto_choice == "rgbn" and _rows(dock) == ["B2", "B3", "B4", "B8"]
    assert dock.band_mapping() == expected, dock.modelInfoLabel.text()


def test_dock_asks_with_band_names_for_a_layer_without_a_file(plugin, tmp_path, qtbot):
    from osgeo import gdal

    set_method(plugin.dock, "model")  # the bundled model's mapping of the four named bands
    src = write_raster(tmp_path / "src.tif", size=(16, 16), descriptions=NAMED["words"][0])
    gdal.Translate("/vsimem/waterseg-named.tif", str(src))
    try:
        layer = _add_raster("/vsimem/waterseg-named.tif", "in memory")
        plugin.dock.layerCombo.setLayer(layer)
        _settle(plugin.dock, qtbot)
        assert plugin.dock.band_mapping() == NAMED["words"][1]
    finally:
        QgsProject.instance().removeAllMapLayers()
        gdal.Unlink("/vsimem/waterseg-named.tif")


def test_method_option_is_generated_and_replans(plugin, tmp_path, qtbot):
    """--method lives only in the contract and the engine: the dock builds its row and asks
    the backend again when it changes."""
    dock = plugin.dock
    combo = dock.option_widgets["method"]
    assert combo.objectName() == "methodCombo" and combo.currentData() == "auto"
    layer = _add_raster(write_raster(tmp_path / "four.tif", bands=4, size=(16, 16)), "four")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    combo.setCurrentIndex(combo.findData("ndwi"))
    _settle(dock, qtbot)
    assert _rows(dock) == ["B3", "B8"] and dock.band_mapping() == [2, 4]
    assert dock.modelInfoLabel.text() == "Method: ndwi (NDWI > 0), no model; reads B3 B8"
    assert dock.modelInfoLabel.toolTip().startswith("Using the classical index ndwi")
    request, _ = dock.build_request()
    args = request.backend_args()
    assert request.model_path is None and "--model" not in args
    assert args[args.index("--method") + 1] == "ndwi"


def test_default_method_on_a_6_band_layer_shows_the_adaptive_index_and_sends_it(
    plugin, tmp_path, qtbot
):
    """--method auto (the default): the plan's why line names the mean of NDWI and MNDWI at a
    per-raster threshold; the request names the resolved method (auto with explicit --bands
    would make segment run a model on 3 bands)."""
    dock = plugin.dock
    assert dock.option_widgets["method"].currentData() == "auto" and dock.is_automatic()
    layer = _six_band_layer(tmp_path, ["B2", "B3", "B4", "B8", "B11", "B12"])
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    assert dock.modelInfoLabel.text() == (
        "Method: mixed-adaptive (NDWI+MNDWI, threshold per scene), no model; chosen from the "
        "layer's bands B3 B8 B11"
    )
    assert dock.modelInfoLabel.toolTip().startswith(  # the backend's whole reason
        "Using the mean of NDWI and MNDWI (B3 B8 B11; water above a threshold set for each "
        "raster from its water/land edges), no model: chosen automatically, the raster has B3 "
        "and B8 and B11"
    )
    combo = dock.option_widgets["method"]
    assert combo.currentText() == "auto: mixed-adaptive"
    # rows that do not apply to an index are hidden: no model, no probability threshold
    assert dock.modelCombo.isHidden() and dock.browseModelButton.isHidden()
    assert dock.thresholdSpin.isHidden() and dock.thresholdLabel.isHidden()
    assert dock.bandsGroup.toolTip() == "Which layer band is each band mixed-adaptive reads"
    assert dock.auto_choice is None and dock.model_path() == ""
    assert _rows(dock) == ["B3", "B8", "B11"] and dock.band_mapping() == [2, 4, 5]
    built = dock.build_request()
    assert built is not None, dock.last_message()
    args = built[0].backend_args()
    assert built[0].model_path is None and "--model" not in args
    assert args[args.index("--method") + 1] == "mixed-adaptive"
    assert args[args.index("--bands") + 1] == "2,4,5"
    dock.thresholdSpin.setValue(0.9)  # set earlier for a model: hidden now, and not sent
    assert "--threshold" not in dock.build_request()[0].backend_args()


def test_model_method_shows_the_model_and_threshold_rows(plugin, tmp_path, qtbot):
    """--method model: the model picker and the water probability threshold (the contract's
    label) are shown and sent; back to an index, they hide again."""
    dock = plugin.dock
    layer = _six_band_layer(tmp_path, ["B2", "B3", "B4", "B8", "B11", "B12"])
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    set_method(dock, "model")
    _settle(dock, qtbot)
    assert not dock.modelCombo.isHidden() and not dock.thresholdSpin.isHidden()
    assert dock.thresholdLabel.text() == "Water probability threshold"
    assert dock.bandsGroup.toolTip() == "Which layer band is each band the model reads"
    dock.thresholdSpin.setValue(0.7)
    built = dock.build_request()
    assert built is not None, dock.last_message()
    args = built[0].backend_args()
    assert args[args.index("--threshold") + 1] == "0.7" and "--model" in args
    set_method(dock, "mndwi-adaptive")
    _settle(dock, qtbot)
    assert dock.modelCombo.isHidden() and dock.thresholdSpin.isHidden()
    assert _rows(dock) == ["B3", "B11"] and dock.band_mapping() == [2, 5]


def test_status_line_and_bar_reset_when_the_layer_changes(plugin, tmp_path, qtbot):
    dock = plugin.dock
    first = _six_band_layer(tmp_path, ["B2", "B3", "B4", "B8", "B11", "B12"])
    dock.layerCombo.setLayer(first)
    _settle(dock, qtbot)
    dock.statusLabel.setText("failed: something about the first layer")
    dock.progressBar.setValue(85)
    second = _add_raster(write_raster(tmp_path / "four.tif", bands=4, size=(16, 16)), "four")
    dock.layerCombo.setLayer(second)
    assert dock.statusLabel.text() == "" and dock.progressBar.value() == 0
    _settle(dock, qtbot)


def test_progress_bar_resets_after_a_failed_run(plugin, tmp_path, qtbot):
    from plugin.backend_process import RunResult

    dock = plugin.dock
    dock.progressBar.setValue(85)

    class Task:
        class request:  # noqa: N801 - a stand-in for SegmentRequest
            layer_name = "scene"

    dock._on_task_completed(Task(), RunResult(error="has no valid pixels"), None, None)
    assert dock.progressBar.value() == 0
    assert dock.statusLabel.text() == "failed: has no valid pixels"


def test_a_finished_run_says_how_much_was_water_cloud_and_cloud_shadow(plugin, qtbot):
    from plugin.backend_process import RunResult

    class Task:
        class request:  # noqa: N801 - a stand-in for SegmentRequest
            layer_name = "tevere"

    done = {"event": "done", "water_fraction": 0.0862, "cloud_fraction": 0.1582}
    done["shadow_fraction"] = 0.1577
    result = RunResult(exit_code=0, events=[done], elapsed_s=1.25)
    plugin.dock._on_task_completed(Task(), result, None, None)
    assert plugin.dock.statusLabel.text() == (
        "done: tevere (1.2 s; 8.6 % water; 15.8 % cloud, 15.8 % cloud shadow masked)"
    )
    clear = RunResult(exit_code=0, events=[{"event": "done", "water_fraction": 0.2}])
    plugin.dock._on_task_completed(Task(), clear, None, None)
    assert plugin.dock.statusLabel.text() == "done: tevere (0.0 s; 20.0 % water)"


def test_option_rows_are_labelled_as_the_contract_says(plugin):
    from plugin.contract import UI_OPTIONS

    dock = plugin.dock
    for opt in UI_OPTIONS:
        widget = dock.option_widgets[opt["name"]]
        form = dock.optionsForm if opt["name"] != "method" else dock.inputForm
        assert form.labelForField(widget).text() == opt["label"], opt["name"]


def test_model_picker_tooltip_lists_the_contract_models(plugin):
    tip = plugin.dock.modelCombo.toolTip()
    for model in BUNDLED_MODELS.values():
        assert f"{model.label} when {model.when}" in tip
