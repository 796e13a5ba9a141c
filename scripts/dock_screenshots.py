"""Screenshots of the WaterSeg dock in an offscreen QGIS main window of 1280 x 800 (QGIS's
default), one per state the dock must show right (issue #22): what will run for the default
method, for the learned model, and for a raster without band names mapped by hand.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/dock_screenshots.py SCENE.tif OUT_DIR

writes OUT_DIR/dock-auto-index.png, dock-model.png, dock-unnamed-vrt.png and, with gdal2tiles
installed, dock-xyz.png (the scene as an XYZ tile source, rendered): the whole window, the
dock at the width QGIS gives it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

SIZE = (1280, 800)


def xyz_tiles(scene: Path, work: Path) -> Path | None:
    """An XYZ tile tree (zoom 10-14) of ``scene``'s true colour (B4 B3 B2 stretched to 8 bits)
    made by gdal2tiles in ``work``; None when gdal2tiles is not installed."""
    import shutil
    import subprocess

    from osgeo import gdal

    tool = shutil.which("gdal2tiles.py") or shutil.which("gdal2tiles")
    if tool is None:
        return None
    src = gdal.Open(str(scene))
    names = [src.GetRasterBand(i + 1).GetDescription() for i in range(src.RasterCount)]
    bands = [names.index(b) + 1 for b in ("B4", "B3", "B2")]
    rgb = str(work / "rgb.tif")
    gdal.Translate(
        rgb, src, bandList=bands, outputType=gdal.GDT_Byte, scaleParams=[[200, 1800, 0, 255]]
    )
    subprocess.run(
        [tool, "-q", "--xyz", "-z", "10-14", "-w", "none", rgb, str(work / "tiles")], check=True
    )
    return work / "tiles"


def main(argv: list[str]) -> int:
    scene, out_dir = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    from offscreen_qgis import QgisWindow, close, pump, start_qgis
    from osgeo import gdal
    from qgis.core import QgsProject, QgsRasterLayer

    app = start_qgis()
    qgis = QgisWindow()
    window, canvas = qgis.window, qgis.canvas
    plugin = qgis.load_plugin()
    dock = plugin.dock
    window.resize(*SIZE)
    window.show()
    dock.outDirWidget.setFilePath(tempfile.mkdtemp(prefix="waterseg-shot-"))

    def settle() -> None:
        pump(app, 0.3)
        pump(app, 60, until=lambda: not dock.busy_queries())
        pump(app, 0.5)

    def shot(name: str) -> None:
        canvas.refreshAllLayers()
        pump(app, 1)
        canvas.waitWhileRendering()
        path = out_dir / name
        window.grab().save(str(path))
        print(f"wrote {path}")

    def set_method(name: str) -> None:
        combo = dock.option_widgets["method"]
        combo.setCurrentIndex(combo.findData(name))

    out_dir.mkdir(parents=True, exist_ok=True)
    layer = qgis.add_true_colour(scene, "Sentinel-2 scene")
    dock.layerCombo.setLayer(layer)
    settle()
    shot("dock-auto-index.png")

    set_method("model")
    settle()
    shot("dock-model.png")

    # the scene's B2 B3 B4 B8 B11 B12 as a VRT from gdalbuildvrt: the band names are lost
    work = Path(tempfile.mkdtemp(prefix="waterseg-vrt-"))
    src = gdal.Open(str(scene))
    names = [src.GetRasterBand(i + 1).GetDescription() for i in range(src.RasterCount)]
    singles = []
    for name in ("B2", "B3", "B4", "B8", "B11", "B12"):
        single = str(work / f"{name}.vrt")
        gdal.Translate(single, src, bandList=[names.index(name) + 1], format="VRT")
        singles.append(single)
    gdal.BuildVRT(str(work / "stack.vrt"), singles, separate=True).FlushCache()
    QgsProject.instance().removeAllMapLayers()
    vrt = qgis.add_true_colour(work / "stack.vrt", "stack.vrt (no band names)")
    dock.layerCombo.setLayer(vrt)
    set_method("mixed-adaptive")
    settle()
    for combo, band in zip(dock.band_combos, (2, 4, 5), strict=True):
        combo.setBand(band)
    pump(app, 0.5)
    shot("dock-unnamed-vrt.png")

    # the scene as an XYZ tile source (gdal2tiles, zoom 10-14, file:// URLs), rendered
    tiles = xyz_tiles(scene, work)
    if tiles is not None:
        from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform

        QgsProject.instance().removeAllMapLayers()
        url = f"file://{tiles.as_posix()}/{{z}}/{{x}}/{{y}}.png"
        xyz = QgsRasterLayer(f"type=xyz&url={url}&zmin=10&zmax=14", "XYZ tiles", "wms")
        QgsProject.instance().addMapLayer(xyz)
        mercator = QgsCoordinateReferenceSystem("EPSG:3857")
        canvas.setDestinationCrs(mercator)
        to_map = QgsCoordinateTransform(
            QgsRasterLayer(str(scene), "s").crs(), mercator, QgsProject.instance()
        )
        canvas.setExtent(to_map.transformBoundingBox(QgsRasterLayer(str(scene), "s").extent()))
        dock.layerCombo.setLayer(xyz)
        set_method("auto")
        settle()
        shot("dock-xyz.png")

    close(app, plugin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
