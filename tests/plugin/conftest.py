"""Fixtures for the plugin tests: generated georeferenced rasters, a tiny checkpoint built by
the backend's Python in a subprocess (this QGIS process never imports torch), and a loaded
WaterSegPlugin whose toolbar/menu calls are recorded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EPSG = 32633
ORIGIN = (500000.0, 4600000.0)  # top-left corner, metres
PIXEL = 10.0


def write_raster(
    path: Path,
    bands: int = 4,
    size: tuple[int, int] = (96, 128),
    descriptions: list[str] | None = None,
) -> Path:
    """A georeferenced UTM 33N uint16 GeoTIFF (``bands`` x rows x cols): a 'lake' (dark in B8,
    bright in B3) in the right half, land elsewhere. Returns ``path``."""
    from osgeo import gdal, osr

    rows, cols = size
    yy, xx = np.mgrid[0:rows, 0:cols]
    water = (xx - cols * 0.7) ** 2 + (yy - rows * 0.5) ** 2 < (min(rows, cols) * 0.3) ** 2
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, bands, gdal.GDT_UInt16)
    ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    ds.SetProjection(srs.ExportToWkt())
    rng = np.random.default_rng(0)
    for b in range(1, bands + 1):
        land, wet = (2500, 600) if b % 4 == 0 else (1200, 900 + 100 * (b % 4))
        arr = np.where(water, wet, land) + rng.integers(0, 50, (rows, cols))
        band = ds.GetRasterBand(b)
        band.WriteArray(arr.astype(np.uint16))
        if descriptions:
            band.SetDescription(descriptions[b - 1])
    ds = None
    return path


TINY_MODEL_CODE = """
import sys
import textwrap
import torch
from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
from backend.models import create_model
torch.manual_seed(0)
model = create_model("unet", width=0.125)
ckpt = build_checkpoint(model, "unet", {"width": 0.125}, InputSpec(),
                        metrics={"val": {"iou_mean": 0.5, "f1_water": 0.5}}, loss="ce",
                        # torch.__version__ is a TorchVersion object that weights_only refuses
                        extra={"torch_version": str(torch.__version__)})
save_checkpoint(ckpt, sys.argv[1])
"""


@pytest.fixture(scope="session")
def backend_python() -> str:
    """The backend interpreter (this repository's venv)."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, backend_python) -> Path:
    """A tiny U-Net checkpoint (width 0.125, bands B2 B3 B4 B8), written by the backend."""
    path = tmp_path_factory.mktemp("model") / "tiny-unet.pt"
    done = subprocess.run(
        [backend_python, "-c", TINY_MODEL_CODE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"cannot build a tiny checkpoint: {done.stderr[-300:]}"
    return path


class RecordingIface:
    """Records toolbar and menu entries made through a pytest-qgis iface."""

    def __init__(self, iface, monkeypatch):
        self.toolbar: list = []
        self.menu: list = []
        monkeypatch.setattr(iface, "addToolBarIcon", self.toolbar.append)
        monkeypatch.setattr(iface, "removeToolBarIcon", self.toolbar.remove)
        monkeypatch.setattr(iface, "addPluginToMenu", lambda name, a: self.menu.append((name, a)))
        monkeypatch.setattr(
            iface, "removePluginMenu", lambda name, a: self.menu.remove((name, a)), raising=False
        )


@pytest.fixture()
def recording_iface(qgis_iface, monkeypatch) -> RecordingIface:
    return RecordingIface(qgis_iface, monkeypatch)


@pytest.fixture()
def clean_settings(monkeypatch):
    """Empty WaterSeg settings and no WATERSEG_PYTHON for the test; restored afterwards."""
    from qgis.core import QgsSettings

    monkeypatch.delenv("WATERSEG_PYTHON", raising=False)
    settings = QgsSettings()
    saved = {k: settings.value(k) for k in settings.allKeys() if k.startswith("waterseg/")}
    for k in saved:
        settings.remove(k)
    yield settings
    for k in [k for k in settings.allKeys() if k.startswith("waterseg/")]:
        settings.remove(k)
    for k, v in saved.items():
        settings.setValue(k, v)


def set_method(dock, method: str) -> None:
    """Choose ``method`` in the dock's generated --method combo (the default is auto)."""
    combo = dock.option_widgets["method"]
    combo.setCurrentIndex(combo.findData(method))
    assert combo.currentData() == method


def run_to_the_end(dock, qtbot):
    """Click Segment water and wait for the run -> (task, its successful result)."""
    done = []
    task = dock.start_run()
    assert task is not None, dock.last_message()
    task.completed.connect(lambda *args: done.append(args))
    qtbot.waitUntil(lambda: bool(done), timeout=120000)
    result = done[0][1]
    assert result.ok, (result.error, result.stderr_tail)
    return task, result


def model_method_param() -> dict:
    """The Processing METHOD parameter (an enum: the choice's index) for --method model."""
    from plugin.contract import OPTIONS

    return {"METHOD": OPTIONS["method"]["choices"].index("model")}


@pytest.fixture()
def plugin(qgis_iface, qgis_new_project, recording_iface, clean_settings, qtbot):
    """A loaded WaterSegPlugin (initGui done); unloaded and the project cleared afterwards."""
    from qgis.core import QgsProject

    from plugin.main import WaterSegPlugin

    p = WaterSegPlugin(qgis_iface)
    p.initGui()
    try:
        yield p
        if p.dock is not None:
            for task in p.dock.active_tasks():
                task.cancel()
            qtbot.waitUntil(lambda: not p.dock.active_tasks(), timeout=30000)
    finally:
        p.unload()
        QgsProject.instance().removeAllMapLayers()


@pytest.fixture()
def model_dock(plugin):
    """The loaded plugin's dock with --method model: the bundled-model choice and the model's
    band mapping, as before auto became the default."""
    set_method(plugin.dock, "model")
    return plugin.dock


# The start of a Python script run in a subprocess to load the plugin as QGIS would, in a
# QGIS without torch: a headless QgsApplication and the few iface calls the plugin makes.
HEADLESS_QGIS_PRELUDE = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # QGIS's Python has no torch: 'import torch' raises ImportError
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    from qgis.PyQt.QtWidgets import QMainWindow
    from qgis.gui import QgsMapCanvas

    class Iface:
        def __init__(self):
            self.window = QMainWindow()
            self.canvas = QgsMapCanvas(self.window)
        def mainWindow(self): return self.window
        def mapCanvas(self): return self.canvas
        def addToolBarIcon(self, action): pass
        def removeToolBarIcon(self, action): pass
        def addPluginToMenu(self, name, action): pass
        def removePluginMenu(self, name, action): pass
        def messageBar(self): return None
""")
