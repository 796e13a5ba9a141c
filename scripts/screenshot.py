"""Take the README's screenshot: a QGIS main window (offscreen) with the WaterSeg dock, after a
real "Segment water" run with the default method on a raster layer.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py SCENE.tif docs/images/qgis.png \
        [docs/images/dock.png]

The optional third path gets the whole dock panel on its own (all of its scrolled content), at
the width the dock has in a window of QGIS's default size, 1280 x 800.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_SIZE = (1280, 800)  # QGIS's default window, as scripts/dock_screenshots.py takes it


def main(argv: list[str]) -> int:
    scene, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

    app = QgsApplication([], True)
    app.initQgis()
    from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtWidgets import QMainWindow

    window = QMainWindow()
    canvas = QgsMapCanvas(window)
    bar = QgsMessageBar()  # not shown: the dock has its own message bar
    window.setCentralWidget(canvas)
    bridge = QgsLayerTreeMapCanvasBridge(QgsProject.instance().layerTreeRoot(), canvas)  # noqa: F841

    class Iface:  # the few iface calls the plugin makes
        def mainWindow(self):
            return window

        def mapCanvas(self):
            return canvas

        def addToolBarIcon(self, action):
            pass

        def removeToolBarIcon(self, action):
            pass

        def addPluginToMenu(self, name, action):
            pass

        def removePluginMenu(self, name, action):
            pass

        def messageBar(self):
            return bar

    from plugin.main import WaterSegPlugin

    plugin = WaterSegPlugin(Iface())
    plugin.initGui()
    dock = plugin.dock
    window.addDockWidget(Qt.RightDockWidgetArea, dock)
    dock.show()
    layer = QgsRasterLayer(str(scene), "Sentinel-2 scene")
    renderer = layer.renderer()
    if layer.bandCount() >= 4 and hasattr(renderer, "setRedBand"):  # true colour B4 B3 B2
        renderer.setRedBand(4)
        renderer.setGreenBand(3)
        renderer.setBlueBand(2)
        layer.setDefaultContrastEnhancement()
    QgsProject.instance().addMapLayer(layer)
    canvas.setDestinationCrs(layer.crs())
    canvas.setExtent(layer.extent())
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(tempfile.mkdtemp(prefix="waterseg-shot-"))
    window.resize(QSize(1400, 950))
    window.show()
    window.resizeDocks([dock], [470], Qt.Horizontal)

    def pump(seconds: float, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not until():
            app.processEvents()
            time.sleep(0.02)

    pump(5, until=lambda: not dock.busy_queries())
    dock.check_backend()
    pump(20, until=lambda: not dock.busy_queries())
    task = dock.start_run()
    if task is None:
        print("could not start:", dock.last_message(), file=sys.stderr)
        return 1
    pump(300, until=lambda: not dock.active_tasks())
    canvas.refreshAllLayers()
    pump(3)
    canvas.waitWhileRendering()
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    print(f"wrote {out}")
    if len(argv) > 2:
        dock_out = Path(argv[2]).resolve()
        dock.backendGroup.setCollapsed(True)
        window.resize(*DEFAULT_SIZE)
        window.resizeDocks([dock], [dock.sizeHint().width()], Qt.Horizontal)
        pump(0.5)
        dock.scrollArea.widget().grab().save(str(dock_out))
        print(f"wrote {dock_out}")
    plugin.unload()
    QgsProject.instance().removeAllMapLayers()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
