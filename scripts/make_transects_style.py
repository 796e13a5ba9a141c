"""Write resources/styles/transects_rate.qml: transects coloured by their linear regression
rate (field ``lrr``, m/yr) on a diverging ramp, red towards the land (erosion, a rising
lake), blue towards the water (accretion, a falling lake), white around zero; no rate: grey.

Run with QGIS's Python: ``QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/make_transects_style.py``.
"""

from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsGraduatedSymbolRenderer,
    QgsLineSymbol,
    QgsRendererRange,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

OUT = Path(__file__).resolve().parents[1] / "resources" / "styles" / "transects_rate.qml"
# (lower, upper, colour, label): ColorBrewer RdBu, 9 classes, symmetric about zero
CLASSES = [
    (-1e9, -10, "#b2182b", "< -10 m/yr (landward)"),
    (-10, -5, "#d6604d", "-10 to -5"),
    (-5, -2, "#f4a582", "-5 to -2"),
    (-2, -0.5, "#fddbc7", "-2 to -0.5"),
    (-0.5, 0.5, "#f7f7f7", "-0.5 to 0.5 (stable)"),
    (0.5, 2, "#d1e5f0", "0.5 to 2"),
    (2, 5, "#92c5de", "2 to 5"),
    (5, 10, "#4393c3", "5 to 10"),
    (10, 1e9, "#2166ac", "> 10 m/yr (towards water)"),
]


def main() -> None:
    app = QgsApplication([], False)
    app.initQgis()
    layer = QgsVectorLayer("LineString?crs=EPSG:32632&field=lrr:double", "transects", "memory")
    ranges = []
    for lo, hi, colour, label in CLASSES:
        symbol = QgsLineSymbol.createSimple({"line_width": "0.8", "capstyle": "round"})
        symbol.setColor(QColor(colour))
        ranges.append(QgsRendererRange(lo, hi, symbol, label))
    renderer = QgsGraduatedSymbolRenderer("lrr", ranges)
    renderer.setMode(QgsGraduatedSymbolRenderer.Custom)
    layer.setRenderer(renderer)
    message, ok = layer.saveNamedStyle(str(OUT))
    print(OUT, ok, message)
    del layer
    app.exitQgis()


if __name__ == "__main__":
    main()
