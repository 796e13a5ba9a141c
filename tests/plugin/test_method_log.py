"""The logs name the method once, in one short line with a pointer to the docs, as the dock
and Processing say it (``Method.log_line``); segment's long explanation of its method (a
real backend subprocess prints it on stderr) stays out of them, also when the run fails and
the log shows the backend's last stderr lines."""

from pathlib import Path

import numpy as np
import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingFeedback, QgsProject, QgsRasterLayer

from .conftest import write_raster

pytestmark = [pytest.mark.qgis, pytest.mark.slow]

POINTER = "what each method does: docs/segment.md (Methods)"
SHORT = 120  # characters: one short line


class _Feedback(QgsProcessingFeedback):
    """Every line Processing's log would show, whatever the channel."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def _add(self, text: str) -> None:
        self.lines += str(text).splitlines()

    def pushInfo(self, info):  # noqa: N802 (QGIS API)
        self._add(info)

    def pushConsoleInfo(self, info):  # noqa: N802 (QGIS API)
        self._add(info)

    def pushWarning(self, warning):  # noqa: N802 (QGIS API)
        self._add(warning)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 (QGIS API)
        self._add(error)


def _raster(tmp_path: Path, empty: bool) -> QgsRasterLayer:
    """A 4-band UTM GeoTIFF with a lake; ``empty``: every pixel 0 (read as nodata), so that
    segment fails after it has explained its method."""
    from osgeo import gdal

    path = write_raster(tmp_path / "scene.tif", size=(32, 32))
    if empty:
        ds = gdal.Open(str(path), gdal.GA_Update)
        for b in range(1, ds.RasterCount + 1):
            ds.GetRasterBand(b).WriteArray(np.zeros((32, 32), np.uint16))
        ds = None
    layer = QgsRasterLayer(str(path), "scene")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _said_once_and_short(lines: list[str]) -> None:
    method_lines = [ln for ln in lines if POINTER in ln]
    assert len(method_lines) == 1, lines
    assert method_lines[0].startswith("Method: ") and len(method_lines[0]) <= SHORT
    assert not [ln for ln in lines if ln.startswith("waterseg: method")], lines


@pytest.mark.parametrize("empty", [False, True], ids=["runs", "fails"])
def test_processing_logs_the_method_once_short(plugin, tmp_path, qgis_processing, empty):
    import processing
    from qgis.core import QgsProcessingException

    feedback = _Feedback()
    params = {
        "INPUT": _raster(tmp_path, empty),
        "DEVICE": 1,  # cpu
        "OUTPUT_MASK": str(tmp_path / "result" / "mask.tif"),
        "OUTPUT_SHORELINE": str(tmp_path / "result" / "coast.gpkg"),
    }
    if empty:
        with pytest.raises(QgsProcessingException, match="has no valid pixels"):
            processing.run("waterseg:segmentwater", params, feedback=feedback)
        # the backend's other stderr lines are still there for the diagnosis
        assert any(ln.startswith("waterseg: error: ") for ln in feedback.lines), feedback.lines
    else:
        processing.run("waterseg:segmentwater", params, feedback=feedback)
    assert "Method: auto (chosen from the layer's bands); " + POINTER in feedback.lines
    _said_once_and_short(feedback.lines)


def test_a_failed_dock_run_logs_the_method_once_short(plugin, tmp_path, qtbot):
    from plugin.backend_process import SEGMENT_METHOD_LOG

    dock = plugin.dock
    dock.layerCombo.setLayer(_raster(tmp_path, empty=True))
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)  # the plan's answer
    logged: list[tuple[str, object]] = []

    def on_log(message, tag, level):
        if tag == "WaterSeg":
            logged.append((message, level))

    done = []
    QgsApplication.messageLog().messageReceived.connect(on_log)
    try:
        task = dock.start_run()
        assert task is not None, dock.last_message()
        task.completed.connect(lambda *args: done.append(args))
        qtbot.waitUntil(lambda: bool(done), timeout=120000)
    finally:
        QgsApplication.messageLog().messageReceived.disconnect(on_log)
    result = done[0][1]
    assert "has no valid pixels" in (result.error or "")
    # the backend did explain its method on stderr: the prefix the log leaves out still fits
    assert any(ln.startswith(SEGMENT_METHOD_LOG) for ln in result.stderr_tail.splitlines())
    lines = [ln for message, _ in logged for ln in message.splitlines()]
    queued = [m for m, _ in logged if m.startswith("queued segmentation of scene. Method: ")]
    assert len(queued) == 1 and queued[0].split(". Backend: ")[0].endswith(POINTER)
    assert [level for m, level in logged if "has no valid pixels" in m] == [Qgis.Critical]
    method_lines = [ln for ln in lines if POINTER in ln]
    assert len(method_lines) == 1, lines
    assert not [ln for ln in lines if ln.startswith("waterseg: method")], lines
