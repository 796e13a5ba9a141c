"""End to end, real backend subprocess with a tiny model: the dock's "Segment water" adds the
styled mask and shoreline; cancel stops the backend and leaves nothing; a backend error is
one readable message; the Processing algorithm returns both outputs; without a model picked,
the bundled model that fits the layer's bands runs."""

import time
from pathlib import Path

import pytest
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsLayerTreeGroup,
    QgsPalettedRasterRenderer,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsWkbTypes,
)

from tests.band_names import NAMED  # the namings the backend and dock tests map too

from .conftest import EPSG, model_method_param, run_to_the_end, write_raster

pytestmark = [pytest.mark.qgis, pytest.mark.slow]


def _run_dock(plugin, tmp_path, tiny_model, layer, qtbot):
    dock = plugin.dock
    dock.layerCombo.setLayer(layer)
    dock.modelCombo.addItem("tiny", str(tiny_model))
    dock.modelCombo.setCurrentIndex(dock.modelCombo.count() - 1)
    dock.deviceCombo.setCurrentIndex(dock.deviceCombo.findData("cpu"))
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)  # the plan's answer
    completed = []
    task = dock.start_run()
    assert task is not None, dock.last_message()
    task.completed.connect(lambda *args: completed.append(args))
    return task, completed


def _add(path: Path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_segment_water_adds_styled_layers_and_queues_runs(
    plugin, tmp_path, tiny_model, qtbot, qgis_iface
):
    # A is large enough to be still running while the dock plans B (a small A could finish
    # during that wait, and B would then not be queued behind anything)
    a = _add(write_raster(tmp_path / "lake_a.tif", size=(1024, 1024)), "lake A")
    b = _add(write_raster(tmp_path / "lake_b.tif", size=(64, 80)), "lake B")
    task_a, done_a = _run_dock(plugin, tmp_path, tiny_model, a, qtbot)
    task_b, done_b = _run_dock(plugin, tmp_path, tiny_model, b, qtbot)  # queued behind A
    assert not done_a, "A finished before B was queued: make A larger"
    assert len(plugin.dock.active_tasks()) == 2 and plugin.dock.cancelButton.isEnabled()
    qtbot.waitUntil(lambda: bool(done_a and done_b), timeout=180000)

    for source, done, stem in ((a, done_a, "lake_a"), (b, done_b, "lake_b")):
        _task, result, mask, shore = done[0]
        assert result.ok, (result.error, result.stderr_tail)
        assert result.device == "cpu"
        assert Path(mask.source()) == tmp_path / "out" / f"{stem}_water.tif"
        assert mask.crs().authid() == f"EPSG:{EPSG}" == source.crs().authid()
        assert mask.extent() == source.extent()
        assert (mask.width(), mask.height()) == (source.width(), source.height())
        renderer = mask.renderer()
        assert isinstance(renderer, QgsPalettedRasterRenderer)
        colours = {c.value: c.color for c in renderer.classes()}
        assert colours[1].blue() > 150 and colours[1].alpha() == 255  # water blue
        assert colours[0].alpha() == 0 and colours[255].alpha() == 0  # land, nodata transparent
        assert shore.isValid() and shore.geometryType() == QgsWkbTypes.LineGeometry
        assert shore.crs().authid() == f"EPSG:{EPSG}"
        assert "length_m" in shore.fields().names()
        group = QgsProject.instance().layerTreeRoot().findGroup(f"water \u2014 {source.name()}")
        assert isinstance(group, QgsLayerTreeGroup)
        assert {n.layerId() for n in group.findLayers()} == {mask.id(), shore.id()}
    assert plugin.dock.progressBar.value() == 100
    assert plugin.dock.shorelineCombo.currentLayer() is not None
    assert any("added" in m for m in qgis_iface.messageBar().get_messages(Qgis.Success))


def test_cancel_stops_the_backend_and_leaves_nothing(plugin, tmp_path, tiny_model, qtbot):
    big = _add(write_raster(tmp_path / "big.tif", size=(1024, 1024)), "big")
    layers_before = set(QgsProject.instance().mapLayers())
    task, done = _run_dock(plugin, tmp_path, tiny_model, big, qtbot)
    seen = {}

    def inferring():
        seen["backend"] = task.backend
        return task.backend is not None and task.progress() > 0 and task.progress() < 80

    qtbot.waitUntil(inferring, timeout=120000)
    process = seen["backend"].process
    assert process.poll() is None  # the backend is running
    start = time.monotonic()
    plugin.dock.cancelButton.click()
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert time.monotonic() - start < 10
    result = done[0][1]
    assert result.cancelled and not result.ok
    assert process.poll() is not None  # stopped (130 after SIGTERM, or killed)
    out = tmp_path / "out"
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert set(QgsProject.instance().mapLayers()) == layers_before
    assert plugin.dock.statusLabel.text() == "cancelled"


def test_backend_error_is_one_message_with_details_in_the_log(
    plugin, tmp_path, tiny_model, qtbot, qgis_iface
):
    bad_model = tmp_path / "truncated.pt"  # a download cut short
    data = tiny_model.read_bytes()
    bad_model.write_bytes(data[: len(data) // 2])
    layer = _add(write_raster(tmp_path / "s.tif", size=(32, 32)), "s")
    logged = []

    def on_log(message, tag, level):
        if tag == "WaterSeg":
            logged.append((message, level))

    QgsApplication.messageLog().messageReceived.connect(on_log)
    try:
        task, done = _run_dock(plugin, tmp_path, bad_model, layer, qtbot)
        qtbot.waitUntil(lambda: bool(done), timeout=60000)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(on_log)
    result = done[0][1]
    assert result.exit_code == 2 and "cannot read model file" in result.error
    critical = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert critical and "cannot read model file" in critical[-1] and "\n" not in critical[-1]
    details = [m for m, level in logged if level == Qgis.Critical]
    assert details and "exit code: 2" in details[-1] and "stderr" in details[-1]
    assert not (tmp_path / "out" / "s_water.tif").exists()


def test_processing_algorithm_returns_both_outputs(plugin, tmp_path, tiny_model, qgis_processing):
    import processing

    layer = _add(write_raster(tmp_path / "p.tif", size=(64, 64)), "p")
    result = processing.run(
        "waterseg:segmentwater",
        {
            "INPUT": layer,
            "MODEL": str(tiny_model),
            "BANDS": "1,2,3,4",
            "DEVICE": 1,  # cpu
            "OVERLAP": 0.25,
            "THRESHOLD": 0.5,
            "OUTPUT_MASK": str(tmp_path / "result" / "mask.tif"),
            "OUTPUT_SHORELINE": str(tmp_path / "result" / "coast.shp"),
        },
    )
    assert result["OUTPUT_MASK"] == str(tmp_path / "result" / "mask.tif")
    assert result["OUTPUT_SHORELINE"] == str(tmp_path / "result" / "coast.shp")
    mask = QgsRasterLayer(result["OUTPUT_MASK"], "mask")
    assert (
        mask.isValid() and mask.crs().authid() == f"EPSG:{EPSG}" and mask.extent() == layer.extent()
    )
    from qgis.core import QgsVectorLayer

    shore = QgsVectorLayer(result["OUTPUT_SHORELINE"], "coast", "ogr")
    assert shore.isValid() and shore.dataProvider().storageType() == "ESRI Shapefile"
    assert shore.geometryType() == QgsWkbTypes.LineGeometry


def test_processing_with_an_elevation_layer_keeps_shaded_slopes_dry(
    plugin, tmp_path, qgis_processing
):
    import processing

    from tests.backend.segment.test_terrain import _valley

    raster, dem, lake, shade = _valley(tmp_path)
    params = {"INPUT": _add(raster, "valley"), "OUTPUT_SHORELINE": "TEMPORARY_OUTPUT"}
    plain = processing.run(
        "waterseg:segmentwater", {**params, "OUTPUT_MASK": str(tmp_path / "a.tif")}
    )
    with_dem = processing.run(
        "waterseg:segmentwater",
        {**params, "DEM": _add(dem, "srtm"), "OUTPUT_MASK": str(tmp_path / "b.tif")},
    )
    import rasterio

    with rasterio.open(plain["OUTPUT_MASK"]) as a, rasterio.open(with_dem["OUTPUT_MASK"]) as b:
        before, after = a.read(1), b.read(1)
    assert before[shade].mean() > 0.9 and after[shade].mean() < 0.1  # hill shadow: land
    assert (after[lake] == 1).all()


def _bundled(name: str) -> Path:
    path = Path(__file__).resolve().parents[2] / "resources" / "models" / name
    if not path.is_file():
        pytest.skip(f"bundled model {name} is not installed")
    return path


def test_automatic_dock_run_uses_the_bundled_4_band_model(model_dock, tmp_path, qtbot):
    """No model picked, --method model: the dock sends the bundled B2 B3 B4 B8 model (which
    the backend checks against its SHA-256) and explicit bands for a 4-band layer."""
    model = _bundled("waterseg-rgbn.pt")
    layer = _add(write_raster(tmp_path / "four.tif", size=(48, 64)), "four")
    dock = model_dock
    dock.layerCombo.setLayer(layer)
    dock.deviceCombo.setCurrentIndex(dock.deviceCombo.findData("cpu"))
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)  # the plan's answer
    assert dock.is_automatic()
    task, result = run_to_the_end(dock, qtbot)
    assert task.request.model_path == str(model) and task.request.bands == [1, 2, 3, 4]
    start = next(e for e in result.events if e.get("event") == "start")
    assert Path(start["model"]).resolve() == model.resolve()
    assert (tmp_path / "out" / "four_water.tif").is_file()


def test_dock_run_with_the_default_method_runs_the_index_it_shows(plugin, tmp_path, qtbot):
    """Default method (auto), no model picked, a 4-band layer: the dock shows NDWI at a
    per-raster threshold and the backend runs it on the bands the dock mapped."""
    layer = _add(write_raster(tmp_path / "four.tif", size=(48, 64)), "four")
    dock = plugin.dock
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)  # the plan's answer
    assert dock.modelInfoLabel.text() == (
        "Method: ndwi-adaptive (NDWI, threshold per scene), no model; chosen from the layer's "
        "bands B3 B8"
    )
    task, result = run_to_the_end(dock, qtbot)
    assert task.request.model_path is None and task.request.bands == [2, 4]
    assert task.request.options["method"] == "ndwi-adaptive"
    assert (tmp_path / "out" / "four_water.tif").is_file()


def test_dock_run_with_an_elevation_layer_keeps_shaded_slopes_dry(plugin, tmp_path, qtbot):
    import rasterio

    from tests.backend.segment.test_terrain import _valley

    raster, dem, lake, shade = _valley(tmp_path)
    layer, dem_layer = _add(raster, "valley"), _add(dem, "srtm")
    dock = plugin.dock
    assert dock.demCombo.currentLayer() is None  # never picked for the user
    dock.layerCombo.setLayer(layer)
    dock.demCombo.setLayer(dem_layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)
    task, result = run_to_the_end(dock, qtbot)
    assert task.request.dem_path == str(dem) and "--dem" in task.request.backend_args()
    with rasterio.open(tmp_path / "out" / "valley_water.tif") as src:
        mask = src.read(1)
    assert mask[shade].mean() < 0.1 and (mask[lake] == 1).all()
    dock.demCombo.setLayer(None)


class _Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos: list[str] = []

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self.infos.append(info)
        super().pushInfo(info)


@pytest.mark.parametrize(
    "bands,descriptions,expected",
    [
        (4, None, "waterseg-rgbn.pt"),
        (6, ["B2", "B3", "B4", "B8", "B11", "B12"], "waterseg-default.pt"),
    ],
)
def test_processing_without_model_lets_the_backend_choose(
    plugin, tmp_path, qgis_processing, bands, descriptions, expected
):
    import processing

    _bundled(expected)
    raster = write_raster(tmp_path / "p.tif", bands=bands, size=(32, 32), descriptions=descriptions)
    layer = _add(raster, "p")
    feedback = _Feedback()
    result = processing.run(
        "waterseg:segmentwater",
        {
            "INPUT": layer,
            "MODEL": "",
            "DEVICE": 1,  # cpu
            **model_method_param(),
            "OUTPUT_MASK": str(tmp_path / "result" / "mask.tif"),
            "OUTPUT_SHORELINE": str(tmp_path / "result" / "coast.gpkg"),
        },
        feedback=feedback,
    )
    assert Path(result["OUTPUT_MASK"]).is_file()
    backend = next(i for i in feedback.infos if i.startswith("Backend: "))
    assert "--model" not in backend.split()  # empty MODEL: the backend decides
    assert any(i.startswith(f"Running {expected} on cpu") for i in feedback.infos), feedback.infos


@pytest.mark.parametrize("case", sorted(NAMED))
def test_processing_with_empty_bands_maps_names_like_the_backend(
    plugin, tmp_path, qgis_processing, case
):
    import processing

    _bundled("waterseg-rgbn.pt")
    names, expected = NAMED[case]
    layer = _add(write_raster(tmp_path / "n.tif", size=(32, 32), descriptions=names), "n")
    feedback = _Feedback()
    processing.run(
        "waterseg:segmentwater",
        {
            "INPUT": layer,
            "BANDS": "",
            "DEVICE": 1,  # cpu
            **model_method_param(),
            "OUTPUT_MASK": str(tmp_path / "result" / "mask.tif"),
            "OUTPUT_SHORELINE": str(tmp_path / "result" / "coast.gpkg"),
        },
        feedback=feedback,
    )
    running = [i for i in feedback.infos if i.startswith("Running ")]
    assert running and f"bands {expected} (descriptions)" in running[0], feedback.infos
