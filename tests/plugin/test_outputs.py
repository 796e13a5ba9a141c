"""Where the dock's results go and how a run ends (issue 11, "Saved outputs"): a default
folder the user keeps (beside the saved project, else Documents/WaterSeg, remembered), never
an overwrite (a later run gets its own <stem>-2/ sub-folder), no temporary export folders left
behind, the result group named "water — <layer>", and a cancel that reads as a cancel."""

import tempfile
from pathlib import Path

import pytest
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsSettings, QgsTask
from qgis.PyQt.QtCore import QStandardPaths

from plugin import task as task_module
from plugin.dock import DOCUMENTS_OUT_DIR_KEY, default_out_dir
from plugin.layers import group_name
from plugin.request import unique_out_dir

from .conftest import write_raster

pytestmark = pytest.mark.qgis


def _set_method(dock, method: str) -> None:
    combo = dock.option_widgets["method"]
    combo.setCurrentIndex(combo.findData(method))
    assert combo.currentData() == method


def _add(path, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _settle(dock, qtbot) -> None:
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)


def _run(dock, qtbot, timeout=120000):
    """Start the dock's run and wait for it; returns (task, result, mask, shoreline)."""
    done = []
    task = dock.start_run()
    assert task is not None, dock.last_message()
    task.completed.connect(lambda *args: done.append(args))
    qtbot.waitUntil(lambda: bool(done), timeout=timeout)
    return done[0]


def test_default_out_dir_is_beside_the_saved_project(plugin, tmp_path, qtbot):
    project = QgsProject.instance()
    project.setFileName(str(tmp_path / "survey" / "lakes.qgz"))
    try:
        assert default_out_dir() == str(tmp_path / "survey" / "waterseg")
        dock = plugin.dock
        dock.outDirWidget.setFilePath("")  # empty field: the default
        dock.layerCombo.setLayer(_add(write_raster(tmp_path / "four.tif", size=(16, 16)), "four"))
        _settle(dock, qtbot)
        request, _ = dock.build_request()
        assert request.out_dir == str(tmp_path / "survey" / "waterseg")
    finally:
        project.setFileName("")


def test_unsaved_project_defaults_to_documents_and_remembers_it(
    plugin, tmp_path, monkeypatch, clean_settings
):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    QgsProject.instance().setFileName("")
    docs = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    assert docs.startswith(str(home))  # the monkeypatched user's documents
    first = default_out_dir()
    assert first == str(Path(docs) / "WaterSeg")
    assert not first.startswith(tempfile.gettempdir() + "/waterseg")
    assert QgsSettings().value(DOCUMENTS_OUT_DIR_KEY) == first
    monkeypatch.setenv("HOME", str(tmp_path / "elsewhere"))
    assert default_out_dir() == first  # chosen once, remembered


def test_unique_out_dir_never_reuses_existing_or_busy_outputs(tmp_path):
    base = tmp_path / "out"
    assert unique_out_dir(base, "s") == str(base)  # nothing there: the folder itself
    base.mkdir()
    (base / "s_water.tif").write_bytes(b"")
    assert unique_out_dir(base, "s") == str(base / "s-2")
    assert unique_out_dir(base, "other") == str(base)  # other stems are unaffected
    (base / "s-2").mkdir()
    (base / "s-2" / "s_shoreline.gpkg").write_bytes(b"")  # any output counts
    busy = {str(base / "s-3" / "s_water.tif")}  # a run under way will write there
    assert unique_out_dir(base, "s", busy) == str(base / "s-4")


@pytest.mark.slow
def test_second_run_does_not_overwrite_the_first(plugin, tmp_path, qtbot):
    """NDWI on a 4-band layer (no model: fast), the same layer twice."""
    layer = _add(write_raster(tmp_path / "four.tif", size=(48, 64)), "four")
    dock = plugin.dock
    _set_method(dock, "ndwi")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)

    task1, result1, mask1, shore1 = _run(dock, qtbot)
    assert result1.ok, (result1.error, result1.stderr_tail)
    first = tmp_path / "out" / "four_water.tif"
    assert Path(mask1.source()) == first
    assert "--overwrite" not in task1.request.backend_args()
    stamp = first.stat().st_mtime_ns

    task2, result2, mask2, shore2 = _run(dock, qtbot)
    assert result2.ok, (result2.error, result2.stderr_tail)
    assert task2.request.out_dir == str(tmp_path / "out" / "four-2")
    assert Path(mask2.source()) == tmp_path / "out" / "four-2" / "four_water.tif"
    assert first.stat().st_mtime_ns == stamp  # the first run's files are untouched
    # both runs stay in the project, in one group named after the source layer
    assert mask1.isValid() and QgsProject.instance().mapLayer(mask1.id()) is not None
    group = QgsProject.instance().layerTreeRoot().findGroup("water \u2014 four")
    assert group is not None and group_name("four") == "water \u2014 four"
    ids = {n.layerId() for n in group.findLayers()}
    assert {mask1.id(), shore1.id(), mask2.id(), shore2.id()} <= ids
    assert QgsProject.instance().layerTreeRoot().findGroup("four") is None  # no look-alike


def _non_file_layer(tmp_path):
    from osgeo import gdal

    src = write_raster(tmp_path / "src.tif", size=(24, 32), descriptions=["B2", "B3", "B4", "B8"])
    gdal.Translate("/vsimem/waterseg-outputs.tif", str(src))
    return _add("/vsimem/waterseg-outputs.tif", "in memory")


@pytest.mark.slow
def test_export_folders_are_removed_after_success_and_failure(plugin, tmp_path, qtbot, monkeypatch):
    from osgeo import gdal

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where mkdtemp makes them
    try:
        dock = plugin.dock
        _set_method(dock, "ndwi")
        dock.layerCombo.setLayer(_non_file_layer(tmp_path))
        dock.outDirWidget.setFilePath(str(tmp_path / "out"))
        _settle(dock, qtbot)
        built = dock.build_request()
        assert built is not None, dock.last_message()
        assert not list(temp.glob("waterseg-export-*"))  # nothing made before the run

        task, result, mask, _shore = _run(dock, qtbot)
        assert result.ok, (result.error, result.stderr_tail)
        assert (tmp_path / "out" / "in_memory_water.tif").is_file()
        assert str(temp) in task.request.input_path  # it did export there
        assert not list(temp.glob("waterseg-export-*"))

        def broken(*_args, **_kwargs):
            raise RuntimeError("exporting the layer failed (raster writer error 3)")

        monkeypatch.setattr("plugin.dock.export_raster_extent", broken)
        task, result, mask, _shore = _run(dock, qtbot)
        assert not result.ok and "raster writer error" in result.error
        assert not list(temp.glob("waterseg-export-*"))
        assert not (tmp_path / "out" / "in_memory-2").exists()  # its empty run folder too
    finally:
        QgsProject.instance().removeAllMapLayers()
        gdal.Unlink("/vsimem/waterseg-outputs.tif")


def test_cancel_reads_as_cancelled_not_failed(plugin, tmp_path, qtbot, qgis_iface):
    """A cancel ends the QgsTask as completed (QGIS 3.22 calls every task whose run() returns
    False "Task failed"), described as cancelled; the dock says "Cancelled" at Info level."""
    layer = _add(write_raster(tmp_path / "four.tif", size=(16, 16)), "four")
    dock = plugin.dock
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    bar = qgis_iface.messageBar()  # pytest-qgis keeps earlier tests' messages: count new ones
    criticals = len(bar.get_messages(Qgis.Critical))
    done = []
    with task_module._one_at_a_time:  # another WaterSeg run holds the backend
        task = dock.start_run()
        assert task is not None, dock.last_message()
        # the task's state when it ends (the task manager deletes the task soon after)
        task.completed.connect(lambda t, *args: done.append((t.status(), t.description(), *args)))
        qtbot.waitUntil(lambda: task.status() == QgsTask.Running, timeout=30000)
        dock.cancelButton.click()
        qtbot.waitUntil(lambda: bool(done), timeout=30000)
    status, description, result = done[0][:3]
    assert result.cancelled and not result.ok
    assert status == QgsTask.Complete  # not Terminated: QGIS shows no "Task failed"
    assert description.endswith("(cancelled)")
    assert dock.last_message() == "Cancelled: four"
    assert dock.message_bar.currentItem().level() == Qgis.Info
    assert dock.statusLabel.text() == "cancelled"
    assert len(bar.get_messages(Qgis.Critical)) == criticals
    assert bar.get_messages(Qgis.Info)[-1] == "WaterSeg:Cancelled: four (no results were written)"
    assert not (tmp_path / "out" / "four_water.tif").exists()
