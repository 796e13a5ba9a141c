"""``segment --method``: a classical water index through the same engine as a model (mask,
shoreline at the index's zero), numpy only; the option's choices are the indices the engine
knows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from backend.baselines import INDEX_BANDS, ndwi
from backend.contract import option

from .rasters import run_backend, water_scene, write_raster

UTM33 = CRS.from_epsg(32633)


def test_method_choices_are_the_engine_indices():
    assert option("method")["choices"] == ["model", *INDEX_BANDS]
    assert option("method")["default"] == "model"


def test_ndwi_method_writes_the_index_mask_and_shoreline(tmp_path):
    yy, xx = np.mgrid[0:80, 0:96]
    water = (xx - 60) ** 2 + (yy - 40) ** 2 < 25**2
    scene = water_scene(water)
    raster = write_raster(
        tmp_path / "lake.tif", scene, crs=UTM33, descriptions=["B2", "B3", "B4", "B8"]
    )
    done = run_backend(
        "segment", raster, "--out-dir", tmp_path / "out", "--method", "ndwi", "--progress", "text"
    )
    assert done.returncode == 0, done.stderr
    assert "Using the classical index ndwi (B3 B8" in done.stderr
    with rasterio.open(tmp_path / "out" / "lake_water.tif") as src:
        mask = src.read(1)
    expected = (ndwi(scene[1], scene[3]) > 0).astype(np.uint8)
    np.testing.assert_array_equal(mask, expected)
    assert (tmp_path / "out" / "lake_shoreline.gpkg").is_file()


def test_index_bands_are_planned_like_a_model(tmp_path):
    raster = write_raster(tmp_path / "four.tif", water_scene(np.zeros((32, 32), bool)), crs=UTM33)
    plan = json.loads(run_backend("plan", raster, "--method", "ndwi", "--json").stdout)
    assert plan["model"]["file"] == "" and plan["model"]["bands"] == ["B3", "B8"]
    assert plan["bands"] == [2, 4] and plan["band_rule"] == "layout-4"
    done = run_backend("plan", raster, "--method", "mndwi")
    assert done.returncode == 2 and "B11" in done.stderr and "--bands" in done.stderr


@pytest.mark.parametrize("method", sorted(INDEX_BANDS))
def test_every_index_runs_on_a_swir_stack(tmp_path, method):
    scene = water_scene(np.zeros((24, 24), bool))
    six = np.concatenate([scene, scene[2:]])  # B11, B12 stand-ins
    raster = write_raster(
        tmp_path / "six.tif", six, crs=UTM33, descriptions=["B2", "B3", "B4", "B8", "B11", "B12"]
    )
    done = run_backend(
        "segment", raster, "--out-dir", tmp_path, "--method", method, "--model", "x.pt"
    )
    assert done.returncode == 0, done.stderr
    assert "--model ignored" in done.stderr
