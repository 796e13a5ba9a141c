"""Processing algorithm "Segment water (many scenes)": its batch command line, and a real run
of the backend's batch (embedded Dask cluster, tiny model) whose merged shoreline is queued
for loading and whose failed scene is counted, not fatal."""

import csv
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

from .conftest import write_raster

pytestmark = [pytest.mark.qgis]


@pytest.fixture()
def algorithm(plugin, qgis_processing):
    alg = QgsApplication.processingRegistry().algorithmById("waterseg:segmentwatermany")
    assert alg is not None, "the provider does not register the many-scenes algorithm"
    return alg


def test_parameters_become_one_batch_command(algorithm, tmp_path):
    layer = QgsRasterLayer(str(write_raster(tmp_path / "a.tif")), "a")
    QgsProject.instance().addMapLayer(layer)
    (tmp_path / "more").mkdir()
    params = {
        "LAYERS": [layer],
        "FOLDER": str(tmp_path / "more"),
        "MODEL": "",
        "WORKERS": 2,
        "SCHEDULER": "tcp://10.0.0.1:8786",
        "FORCE": True,
        "MERGE_CRS": "EPSG:3857",
        "OUTPUT_FOLDER": str(tmp_path / "out"),
    }
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    alg = algorithm.create()
    assert alg.batch_arguments(params, context) == [
        "batch",
        str(tmp_path / "a.tif"),
        str(tmp_path / "more"),
        "--out-dir",
        str(tmp_path / "out"),
        "--progress",
        "json",
        "--merge-shoreline",
        "--merge-crs",
        "EPSG:3857",
        "--scheduler",
        "tcp://10.0.0.1:8786",
        "--workers",
        "2",
        "--force",
    ]


@pytest.mark.slow
def test_many_scenes_run_loads_the_merged_shoreline(algorithm, tmp_path, tiny_model):
    import processing

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for name in ("s1", "s2"):
        write_raster(scenes / f"{name}.tif", size=(64, 64))
    (scenes / "broken.tif").write_text("not a raster")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    result = processing.run(
        "waterseg:segmentwatermany",
        {
            "FOLDER": str(scenes),
            "MODEL": str(tiny_model),
            "WORKERS": 2,
            "SCHEDULER": "local",
            "OUTPUT_FOLDER": str(tmp_path / "out"),
        },
        context=context,
        feedback=feedback,
    )
    assert result["FAILED"] == 1
    report = Path(result["OUTPUT_REPORT"]).read_text().splitlines()
    rows = {r["scene"]: r for r in csv.DictReader(report)}
    assert {k: r["status"] for k, r in rows.items()} == {
        "broken": "failed",
        "s1": "done",
        "s2": "done",
    }
    merged = result["OUTPUT_SHORELINE"]
    assert Path(merged).name == "batch_shoreline.gpkg"
    assert merged in context.layersToLoadOnCompletion()
    layer = QgsVectorLayer(merged, "merged", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:4326"
    assert "scene" in layer.fields().names()


def test_plugin_never_imports_dask():
    """Dask is the backend's dependency only: the plugin starts 'batch' as a subprocess."""
    import ast

    plugin_dir = Path(__file__).resolve().parents[2] / "plugin"
    for path in plugin_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not {n.split(".")[0] for n in names} & {"dask", "distributed"}, path
