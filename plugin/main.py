"""WaterSegPlugin: what QGIS loads. Adds the toolbar button, the Plugins menu entry, the dock
and the Processing provider in initGui; removes all of them in unload."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .backend_process import PLUGIN_ROOT

MENU = "&WaterSeg"
ICON = PLUGIN_ROOT / "resources" / "icons" / "waterseg.svg"


class WaterSegPlugin:
    """The QGIS plugin object (created by ``classFactory(iface)``)."""

    def __init__(self, iface):
        self.iface = iface
        self.action: QAction | None = None
        self.dock = None
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API)
        """Register the "WaterSeg" Processing provider (also called by qgis_process)."""
        if self.provider is None:
            from .provider import WaterSegProvider

            self.provider = WaterSegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        from .dock import WaterSegDock

        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.dock = WaterSegDock(self.iface, main_window)
        self.dock.hide()
        main_window.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.hide()

        self.action = QAction(QIcon(str(ICON)), "WaterSeg: segment water", main_window)
        self.action.setObjectName("WaterSegAction")
        self.action.setToolTip("Open the WaterSeg dock: segment water and draw the shoreline")
        self.dock.setToggleVisibilityAction(self.action)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)

    def unload(self) -> None:
        if self.action is not None:
            self.iface.removeToolBarIcon(self.action)
            self.iface.removePluginMenu(MENU, self.action)
            self.action.deleteLater()
            self.action = None
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.mainWindow().removeDockWidget(self.dock)
            self.dock.setParent(None)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
