"""An offscreen QGIS main window with the WaterSeg plugin loaded, for the screenshot scripts
(scripts/screenshot.py, scripts/dock_screenshots.py). Run them with QT_QPA_PLATFORM=offscreen.

    app = start_qgis()
    qgis = QgisWindow()           # window, canvas, an iface stand-in
    plugin = qgis.load_plugin()   # WaterSegPlugin, its dock docked on the right
    layer = qgis.add_true_colour(path, "Sentinel-2 scene")
    pump(app, 5, until=lambda: not plugin.dock.busy_queries())
    ...
    close(app, plugin)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def start_qgis():
    """A started QgsApplication (GUI enabled, for the offscreen platform)."""
    from qgis.core import QgsApplication

    app = QgsApplication([], True)
    app.initQgis()
    return app


def pump(app, seconds: float, until=lambda: False) -> None:
    """Process Qt events for up to ``seconds``, or until ``until()`` is true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        app.processEvents()
        time.sleep(0.02)


class QgisWindow:
    """A QMainWindow with a map canvas bridged to the project's layer tree, and ``iface``: the
    few QgisInterface calls the plugin makes."""

    def __init__(self):
        from qgis.core import QgsProject
        from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = window = QMainWindow()
        self.canvas = canvas = QgsMapCanvas(window)
        bar = QgsMessageBar()  # not shown: the dock has its own message bar
        window.setCentralWidget(canvas)
        self.bridge = QgsLayerTreeMapCanvasBridge(QgsProject.instance().layerTreeRoot(), canvas)

        class Iface:
            def mainWindow(self):  # noqa: N802 (QGIS API)
                return window

            def mapCanvas(self):  # noqa: N802 (QGIS API)
                return canvas

            def addToolBarIcon(self, action):  # noqa: N802 (QGIS API)
                pass

            def removeToolBarIcon(self, action):  # noqa: N802 (QGIS API)
                pass

            def addPluginToMenu(self, name, action):  # noqa: N802 (QGIS API)
                pass

            def removePluginMenu(self, name, action):  # noqa: N802 (QGIS API)
                pass

            def messageBar(self):  # noqa: N802 (QGIS API)
                return bar

            def activeLayer(self):  # noqa: N802 (QGIS API)
                return None

        self.iface = Iface()

    def load_plugin(self):
        """The WaterSeg plugin, started, its dock on the right of the window and shown."""
        from qgis.PyQt.QtCore import Qt

        from plugin.main import WaterSegPlugin

        plugin = WaterSegPlugin(self.iface)
        plugin.initGui()
        self.window.addDockWidget(Qt.RightDockWidgetArea, plugin.dock)
        plugin.dock.show()
        return plugin

    def add_true_colour(self, path: Path, name: str):
        """Add ``path`` to the project (bands 4 3 2 as red, green, blue when it has 4 or more)
        and zoom the canvas to it, in its CRS."""
        from qgis.core import QgsProject, QgsRasterLayer

        layer = QgsRasterLayer(str(path), name)
        renderer = layer.renderer()
        if layer.bandCount() >= 4 and hasattr(renderer, "setRedBand"):  # true colour
            renderer.setRedBand(4)
            renderer.setGreenBand(3)
            renderer.setBlueBand(2)
            layer.setDefaultContrastEnhancement()
        QgsProject.instance().addMapLayer(layer)
        self.canvas.setDestinationCrs(layer.crs())
        self.canvas.setExtent(layer.extent())
        return layer


def close(app, plugin) -> None:
    """Unload the plugin, remove the layers (or Python crashes at exit) and stop QGIS."""
    from qgis.core import QgsProject

    plugin.unload()
    QgsProject.instance().removeAllMapLayers()
    app.exitQgis()
