"""Processing algorithm "Shoreline change through time": its change command line, and a real
run on four real Lake Bracciano dates (one of them in the neighbouring UTM zone) through the
backend's batch and change commands, whose transects are loaded with the rate style."""

from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

pytestmark = [pytest.mark.qgis]

BRACCIANO = Path(__file__).resolve().parents[3] / "shared" / "data" / "sen2dwater" / "bracciano"
DATES = ["2016-07-18", "2017-05-31", "2017-10-16", "2018-04-21"]  # 2018-04-21: EPSG:32633


@pytest.fixture()
def algorithm(plugin, qgis_processing):
    alg = QgsApplication.processingRegistry().algorithmById("waterseg:shorelinechange")
    assert alg is not None, "the provider does not register the shoreline change algorithm"
    return alg


def test_parameters_become_one_change_command(algorithm, tmp_path):
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    params = {
        "BATCH_DIR": str(tmp_path / "batch"),
        "SPACING": 25,
        "LENGTH": 120,
        "CROSSING": 1,
        "MAX_CHANGE": 0,
        "MEDIAN_WINDOW": 7,
        "MEDIAN_THRESHOLD": 20,
        "KEEP_FLAGGED": True,
        "PLOTS": False,
        "OUTPUT_FOLDER": str(tmp_path / "out"),
    }
    (tmp_path / "batch").mkdir()
    args = algorithm.create().change_arguments(params, context)
    assert args == [
        "change",
        "--out-dir",
        str(tmp_path / "out"),
        "--progress",
        "json",
        "--batch-dir",
        str(tmp_path / "batch"),
        "--spacing",
        "25",
        "--length",
        "120",
        "--crossing",
        "seaward",
        "--max-change",
        "0",
        "--median-window",
        "7",
        "--median-threshold",
        "20",
        "--keep-flagged",
        "--plots",
        "overview",
    ]


@pytest.mark.slow
def test_real_bracciano_dates_end_to_end(algorithm, tmp_path):
    import processing

    if not BRACCIANO.is_dir():
        pytest.skip(f"real data not found at {BRACCIANO}")
    layers = [QgsRasterLayer(str(BRACCIANO / f"{d}.tif"), d) for d in DATES]
    assert all(layer.isValid() for layer in layers)
    QgsProject.instance().addMapLayers(layers)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    result = processing.run(
        "waterseg:shorelinechange",
        {"LAYERS": layers, "PLOTS": False, "OUTPUT_FOLDER": str(tmp_path / "out")},
        context=context,
        feedback=feedback,
    )
    transects = result["OUTPUT_TRANSECTS"]
    assert Path(transects).name == "transects.gpkg"
    assert Path(result["OUTPUT_REPORT"]).name == "change_report.html"
    assert (tmp_path / "out" / "overview.png").is_file()
    assert transects in context.layersToLoadOnCompletion()
    assert result["OUTPUT_POSITIONS"] in context.layersToLoadOnCompletion()
    layer = QgsVectorLayer(transects, "transects", "ogr")
    assert layer.isValid() and layer.featureCount() > 50
    assert layer.crs().authid() == "EPSG:32632"  # the CRS most of the dates use
    details = context.layerToLoadOnCompletionDetails(transects)
    details.postProcessor().postProcessLayer(layer, context, feedback)
    assert layer.renderer().type() == "graduatedSymbol"
    assert layer.renderer().classAttribute() == "lrr"
    lrr = [f["lrr"] for f in layer.getFeatures() if f["lrr"] is not None]
    # 2016-07 -> 2018-04 on the real lake: finite rates for nearly every transect
    assert len(lrr) > 0.8 * layer.featureCount()
    del layer
    QgsProject.instance().removeAllMapLayers()


def test_dock_button_opens_the_processing_dialog(plugin, qgis_processing, monkeypatch):
    import processing
    from qgis.PyQt.QtWidgets import QPushButton

    calls = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg, params: calls.append(alg))
    button = plugin.dock.findChild(QPushButton, "changeButton")
    assert button is not None and "Shoreline change" in button.text()
    button.click()
    assert calls == ["waterseg:shorelinechange"]
