"""The synthetic Sentinel-2 demo scene: fast, deterministic, plausible, written as GeoTIFFs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio

from backend.core.water_indices import ndwi_water_mask
from backend.datasets.synthetic import SPECTRA, generate_scene, make_demo_scene


@pytest.fixture(scope="module")
def scene():
    return generate_scene(size=1024, seed=0)


def test_scene_is_fast_and_deterministic():
    t0 = time.perf_counter()
    a = generate_scene(size=256, seed=7)
    assert time.perf_counter() - t0 < 5
    b = generate_scene(size=256, seed=7)
    c = generate_scene(size=256, seed=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.truth, b.truth)
    assert not np.array_equal(a.image, c.image)


def test_scene_classes_nodata_and_dtypes(scene):
    img, truth = scene.image, scene.truth
    assert img.shape == (6, 1024, 1024) and img.dtype == np.uint16
    assert truth.shape == (1024, 1024) and truth.dtype == np.uint8
    assert set(np.unique(truth).tolist()) == {0, 1, 255}
    nodata = truth == 255
    # nodata border: exactly the pixels where every band is 0; valid pixels are never 0
    assert np.array_equal(nodata, (img == 0).all(axis=0))
    assert (img[:, ~nodata] >= 1).all()
    assert 0.02 < nodata.mean() < 0.2
    # the south-east corner is nodata, the north-west corner is sea
    assert truth[-1, -1] == 255 and truth[0, 0] == 1
    water = (truth == 1).mean() / (1 - nodata.mean())
    assert 0.2 < water < 0.5


def test_scene_reflectances_are_plausible(scene):
    refl = scene.image.astype(np.float32) / 10000
    b2, b3, b4, b8, b11, b12 = refl
    sea = np.zeros_like(scene.truth, bool)
    sea[:, :150] = scene.truth[:, :150] == 1  # open sea along the west edge
    assert np.median(b8[sea]) < 0.03 and np.median(b2[sea]) > np.median(b4[sea])
    land = scene.truth == 0
    assert np.median(b8[land]) > 0.15 > np.median(b4[land])  # mostly vegetated land
    # water absorbs SWIR: B11/B12 near zero on the open sea, well above it on land
    assert np.median(b11[sea]) < 0.01 and np.median(b12[sea]) < 0.01
    assert np.median(b11[land]) > 0.1 and np.median(b12[land]) > 0.05
    # 20 m bands: one value per 2 x 2 block (before noise), so neighbours are correlated
    assert np.corrcoef(b11[0::2, 0::2].ravel(), b11[0::2, 1::2].ravel())[0, 1] > 0.99
    # sand is bright in every band, vegetation has its red edge
    assert min(SPECTRA["dry_sand"]) > 0.15
    assert SPECTRA["crop"][3] > 5 * SPECTRA["crop"][2]
    # NDWI works on this scene, but not perfectly (mixed pixels, urban shadows, metal roofs)
    valid = scene.truth != 255
    ndwi = ndwi_water_mask(scene.image, bands=scene.bands)
    agreement = (ndwi[valid] == scene.truth[valid]).mean()
    assert 0.98 < agreement < 0.9999


def test_scene_geotiffs_have_crs_transform_and_band_names(tmp_path):
    image_path, truth_path = make_demo_scene(tmp_path, size=256, seed=1)
    with rasterio.open(image_path) as src:
        assert src.crs.to_epsg() == 32633
        assert (src.transform.a, src.transform.e) == (10.0, -10.0)
        assert src.transform.b == src.transform.d == 0
        assert src.descriptions == ("B2", "B3", "B4", "B8", "B11", "B12")
        assert src.nodata == 0 and src.dtypes == ("uint16",) * 6
        data = src.read()
    with rasterio.open(truth_path) as src:
        assert src.crs.to_epsg() == 32633 and src.nodata == 255 and src.dtypes == ("uint8",)
        truth = src.read(1)
    scene = generate_scene(size=256, seed=1)
    assert np.array_equal(data, scene.image) and np.array_equal(truth, scene.truth)
