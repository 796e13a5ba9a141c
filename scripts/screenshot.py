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
from pathlib import Path

DEFAULT_SIZE = (1280, 800)  # QGIS's default window, as scripts/dock_screenshots.py takes it


def main(argv: list[str]) -> int:
    scene, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    from offscreen_qgis import QgisWindow, close, pump, start_qgis
    from qgis.PyQt.QtCore import QSize, Qt

    app = start_qgis()
    qgis = QgisWindow()
    window, canvas = qgis.window, qgis.canvas
    plugin = qgis.load_plugin()
    dock = plugin.dock
    layer = qgis.add_true_colour(scene, "Sentinel-2 scene")
    dock.layerCombo.setLayer(layer)
    dock.outDirWidget.setFilePath(tempfile.mkdtemp(prefix="waterseg-shot-"))
    window.resize(QSize(1400, 950))
    window.show()
    window.resizeDocks([dock], [470], Qt.Horizontal)

    pump(app, 5, until=lambda: not dock.busy_queries())
    dock.check_backend()
    pump(app, 20, until=lambda: not dock.busy_queries())
    task = dock.start_run()
    if task is None:
        print("could not start:", dock.last_message(), file=sys.stderr)
        return 1
    pump(app, 300, until=lambda: not dock.active_tasks())
    canvas.refreshAllLayers()
    pump(app, 3)
    canvas.waitWhileRendering()
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    print(f"wrote {out}")
    if len(argv) > 2:
        dock_out = Path(argv[2]).resolve()
        dock.backendGroup.setCollapsed(True)
        window.resize(*DEFAULT_SIZE)
        window.resizeDocks([dock], [dock.sizeHint().width()], Qt.Horizontal)
        pump(app, 0.5)
        dock.scrollArea.widget().grab().save(str(dock_out))
        print(f"wrote {dock_out}")
    close(app, plugin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
