"""A raster whose bands have no names (a VRT from gdalbuildvrt, made here from generated
single-band GeoTIFFs with a real CRS): the dock and Processing offer the mapping of the bands
the chosen method reads, and mixed-adaptive runs end to end with the user's mapping."""

from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsProcessingFeedback, QgsProject, QgsRasterLayer

from .conftest import EPSG, ORIGIN, PIXEL, run_to_the_end, set_method

pytestmark = [pytest.mark.qgis, pytest.mark.slow]

# Sentinel-2-like values (land, water) of each band of the stack, in stack order.
STACK = {"B2": (900, 700), "B3": (1000, 900), "B4": (1100, 600), "B8": (2500, 300),
         "B11": (2000, 100), "B12": (1500, 80)}  # fmt: skip


def unnamed_vrt(folder: Path, size=(48, 64)) -> Path:
    """``folder``/stack.vrt: six bands B2 B3 B4 B8 B11 B12 (a round lake) stacked by
    gdal.BuildVRT(separate=True) from one described GeoTIFF each; the VRT loses the names."""
    from osgeo import gdal, osr

    rows, cols = size
    yy, xx = np.mgrid[0:rows, 0:cols]
    water = (xx - cols * 0.6) ** 2 + (yy - rows * 0.5) ** 2 < (min(rows, cols) * 0.3) ** 2
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    files = []
    for name, (land, wet) in STACK.items():
        path = str(folder / f"{name}.tif")
        ds = gdal.GetDriverByName("GTiff").Create(path, cols, rows, 1, gdal.GDT_UInt16)
        ds.SetGeoTransform((ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL))
        ds.SetProjection(srs.ExportToWkt())
        band = ds.GetRasterBand(1)
        band.WriteArray(np.where(water, wet, land).astype(np.uint16))
        band.SetDescription(name)
        ds = None
        files.append(path)
    vrt = folder / "stack.vrt"
    gdal.BuildVRT(str(vrt), files, separate=True).FlushCache()
    check = gdal.Open(str(vrt))
    assert [check.GetRasterBand(i + 1).GetDescription() for i in range(6)] == [""] * 6
    return vrt


def _layer(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), "stack")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def _settle(dock, qtbot) -> None:
    qtbot.waitUntil(lambda: not dock.busy_queries(), timeout=60000)


def _rows(dock) -> list[str]:
    form = dock.bandsForm
    return [form.itemAt(i, form.LabelRole).widget().text() for i in range(form.rowCount())]


def test_dock_maps_an_unnamed_vrt_by_hand_and_runs_mixed_adaptive(plugin, tmp_path, qtbot):
    dock = plugin.dock
    dock.layerCombo.setLayer(_layer(unnamed_vrt(tmp_path)))
    dock.outDirWidget.setFilePath(str(tmp_path / "out"))
    _settle(dock, qtbot)
    # auto cannot tell the bands: says so, with the fix, and starts nothing
    assert dock.modelInfoLabel.text().startswith("Cannot use this layer with method auto:")
    assert dock.start_run() is None
    assert dock.last_message().endswith("choose a method and map its bands (Band mapping).")
    set_method(dock, "mixed-adaptive")
    _settle(dock, qtbot)
    assert _rows(dock) == ["B3", "B8", "B11"]
    assert dock.band_mapping() == [-1, -1, -1]  # no names: nothing to prefill
    assert dock.modelInfoLabel.text() == (
        "Method: mixed-adaptive (NDWI+MNDWI, threshold per scene), no model; the layer's bands "
        "have no names: map B3 B8 B11 below"
    )
    assert dock.start_run() is None  # unmapped: refused with the fix
    assert dock.last_message() == (
        "Map every mixed-adaptive band (B3 B8 B11) to a band of the layer (Band mapping)."
    )
    for combo, band in zip(dock.band_combos, (2, 4, 5), strict=True):
        combo.setBand(band)
    task, _ = run_to_the_end(dock, qtbot)
    args = task.request.backend_args()
    assert args[args.index("--method") + 1] == "mixed-adaptive"
    assert args[args.index("--bands") + 1] == "2,4,5"
    mask = tmp_path / "out" / "stack_water.tif"
    from osgeo import gdal

    water = gdal.Open(str(mask)).ReadAsArray()
    assert 0.15 < (water == 1).mean() < 0.5  # the lake, not everything or nothing


def test_dock_prefills_the_mapping_from_band_names(plugin, tmp_path, qtbot):
    """The same stack with names (a GeoTIFF that keeps them): rows prefilled, nothing to do."""
    from osgeo import gdal

    vrt = unnamed_vrt(tmp_path)
    named = tmp_path / "named.tif"
    gdal.Translate(str(named), str(vrt)).FlushCache()
    ds = gdal.Open(str(named), gdal.GA_Update)
    for i, name in enumerate(STACK):
        ds.GetRasterBand(i + 1).SetDescription(name)
    ds = None
    dock = plugin.dock
    dock.layerCombo.setLayer(_layer(named))
    set_method(dock, "mixed-adaptive")
    _settle(dock, qtbot)
    assert _rows(dock) == ["B3", "B8", "B11"] and dock.band_mapping() == [2, 4, 5]


@pytest.mark.parametrize("bands", ["2,4,5", "B11=5, B3=2, B8=4"])
def test_processing_runs_mixed_adaptive_on_an_unnamed_vrt(plugin, tmp_path, qgis_processing, bands):
    import processing

    from plugin.contract import OPTIONS

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.infos: list[str] = []

        def pushInfo(self, info):  # noqa: N802 (QGIS API)
            self.infos.append(info)

    feedback = Feedback()
    layer = _layer(unnamed_vrt(tmp_path))
    result = processing.run(
        "waterseg:segmentwater",
        {
            "INPUT": layer,
            "BANDS": bands,
            "METHOD": OPTIONS["method"]["choices"].index("mixed-adaptive"),
            "OUTPUT_MASK": str(tmp_path / "result" / "mask.tif"),
            "OUTPUT_SHORELINE": str(tmp_path / "result" / "coast.gpkg"),
        },
        feedback=feedback,
    )
    assert Path(result["OUTPUT_MASK"]).is_file()
    assert (
        "Method: mixed-adaptive (NDWI+MNDWI, threshold per scene); what each method does: "
        "docs/segment.md (Methods)" in feedback.infos
    )


def test_band_names_in_processing_say_what_is_missing():
    from plugin.algorithm import parse_band_mapping

    assert parse_band_mapping("B3=2,b8=4,B11=5", "mixed-adaptive") == [2, 4, 5]
    assert parse_band_mapping("3, 8", "ndwi") == [3, 8]
    with pytest.raises(ValueError, match=r"mixed-adaptive reads B3 B8 B11: map B11 \(e.g."):
        parse_band_mapping("B3=2,B8=4", "mixed-adaptive")
    with pytest.raises(ValueError, match="B4 is not read"):
        parse_band_mapping("B3=2,B8=4,B4=3", "ndwi")
    with pytest.raises(ValueError, match="need a method that says which bands"):
        parse_band_mapping("B3=2", "auto")
