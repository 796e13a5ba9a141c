"""The plugin loads into (pytest-qgis's) QGIS, adds its action, dock and provider, and unloads
without leaving any of them behind; it also loads when torch cannot be imported."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QDockWidget

from .conftest import HEADLESS_QGIS_PRELUDE

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.qgis


def _flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


def test_load_and_unload_cleanly(qgis_iface, recording_iface, clean_settings, qgis_new_project):
    from plugin.main import MENU, WaterSegPlugin

    main_window = qgis_iface.mainWindow()
    registry = QgsApplication.processingRegistry()
    plugin = WaterSegPlugin(qgis_iface)
    plugin.initGui()

    assert [a.objectName() for a in recording_iface.toolbar] == ["WaterSegAction"]
    assert recording_iface.menu == [(MENU, plugin.action)]
    assert not plugin.action.icon().isNull()
    docks = [d for d in main_window.findChildren(QDockWidget) if d.objectName() == "WaterSegDock"]
    assert docks == [plugin.dock] and main_window.dockWidgetArea(plugin.dock) != 0
    assert plugin.dock.windowTitle() == "WaterSeg"
    assert registry.providerById("waterseg") is not None
    alg = registry.algorithmById("waterseg:segmentwater")
    assert alg is not None and alg.displayName() == "Segment water"

    main_window.show()  # offscreen, but docks only count as visible in a shown window
    try:
        plugin.action.trigger()  # the toolbar button opens the dock ...
        assert plugin.dock.isUserVisible() and plugin.action.isChecked()
        plugin.action.trigger()  # ... and closes it
        assert not plugin.dock.isUserVisible() and not plugin.action.isChecked()
    finally:
        main_window.hide()

    plugin.unload()
    _flush_deletes()
    assert recording_iface.toolbar == [] and recording_iface.menu == []
    assert not [
        d for d in main_window.findChildren(QDockWidget) if d.objectName() == "WaterSegDock"
    ]
    assert not [a for a in main_window.findChildren(QAction) if a.objectName() == "WaterSegAction"]
    assert registry.providerById("waterseg") is None
    assert registry.algorithmById("waterseg:segmentwater") is None


def test_class_factory_of_the_repository_root(qgis_iface, recording_iface, clean_settings):
    """QGIS imports the plugin folder as a package and calls classFactory(iface)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "waterseg_root", REPO / "__init__.py", submodule_search_locations=[str(REPO)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["waterseg_root"] = module
    try:
        spec.loader.exec_module(module)
        plugin = module.classFactory(qgis_iface)
        plugin.initGui()
        assert plugin.dock is not None
        plugin.unload()
        _flush_deletes()
    finally:
        for name in [
            n for n in sys.modules if n == "waterseg_root" or n.startswith("waterseg_root.")
        ]:
            del sys.modules[name]


LOAD_WITHOUT_TORCH = HEADLESS_QGIS_PRELUDE + textwrap.dedent("""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "waterseg", sys.argv[1] + "/__init__.py", submodule_search_locations=[sys.argv[1]])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["waterseg"] = mod
    spec.loader.exec_module(mod)
    iface = Iface()
    plugin = mod.classFactory(iface)
    plugin.initGui()
    ok = plugin.dock is not None and QgsApplication.processingRegistry().providerById("waterseg") is not None
    plugin.unload()
    assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    print("loaded" if ok else "broken")
    app.exitQgis()
""")


def test_plugin_loads_when_torch_cannot_be_imported(tmp_path):
    script = tmp_path / "load.py"
    script.write_text(LOAD_WITHOUT_TORCH)
    done = subprocess.run(
        [sys.executable, str(script), str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "QT_QPA_PLATFORM": "offscreen",
            "PATH": "/usr/bin:/bin",
            "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile"),
            "HOME": str(tmp_path),
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "loaded"
