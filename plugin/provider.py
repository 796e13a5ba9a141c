"""The "WaterSeg" Processing provider (batch dialog, graphical modeller, qgis_process)."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithm import SegmentWaterAlgorithm
from .backend_process import PLUGIN_ROOT
from .batch_algorithm import SegmentManyScenesAlgorithm
from .change_algorithm import ShorelineChangeAlgorithm


class WaterSegProvider(QgsProcessingProvider):
    """Holds the "Segment water", "Segment water (many scenes)" and "Shoreline change through
    time" algorithms."""

    def id(self) -> str:
        return "waterseg"

    def name(self) -> str:
        return "WaterSeg"

    def longName(self) -> str:  # noqa: N802 (QGIS API)
        return "WaterSeg: water-land segmentation and shoreline extraction"

    def icon(self) -> QIcon:
        return QIcon(str(PLUGIN_ROOT / "resources" / "icons" / "waterseg.svg"))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        self.addAlgorithm(SegmentWaterAlgorithm())
        self.addAlgorithm(SegmentManyScenesAlgorithm())
        self.addAlgorithm(ShorelineChangeAlgorithm())
