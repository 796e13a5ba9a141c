"""``--cloud-mask auto|none``: the product's SCL or QA60 flags become nodata (255), the
shoreline does not follow them, and the log says how much was masked. The fixture is a lake
under a field of cumulus clouds whose shadows (dark in NIR and SWIR, like water) are cast
sideways, as the sun casts them."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from osgeo import ogr
from rasterio.crs import CRS

from backend.segment.clouds import CloudBand, cloud_band_for, find_cloud_band

from .rasters import run_backend, write_raster

UTM32 = CRS.from_epsg(32632)
BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


def test_scl_classes_and_qa60_bits_by_hand():
    scl = CloudBand(7, "SCL")
    values = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert scl.flagged(values).tolist() == [v in (3, 8, 9, 10) for v in values]
    qa = CloudBand(16, "QA60")
    # 1024 = bit 10 (opaque), 2048 = bit 11 (cirrus), 3072 = both, 512 / 4096 = other bits
    assert qa.flagged(np.array([0, 512, 1024, 2048, 3072, 4096, 1024.0])).tolist() == [
        False,
        False,
        True,
        True,
        True,
        False,
        True,
    ]


def test_the_cloud_band_is_found_by_description_scl_first():
    assert find_cloud_band(["B2", "B3", "QA60", "SCL"]) == CloudBand(4, "SCL")
    assert find_cloud_band(["B2", "qa_60"]) == CloudBand(2, "QA60")
    assert find_cloud_band(["B2", "B3", None, ""]) is None
    assert cloud_band_for("none", ["SCL"]) is None
    with pytest.raises(ValueError, match="auto, none"):
        cloud_band_for("s2cloudless", ["SCL"])


def _cumulus(shape, seed=0, cover=0.18):
    """A cumulus field: random noise smoothed at three scales (fractal-like), thresholded to
    ``cover`` of the pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    field = np.zeros(shape)
    for cell, weight in ((24, 1.0), (8, 0.5), (3, 0.25)):
        coarse = rng.normal(size=(h // cell + 2, w // cell + 2))
        field += weight * np.kron(coarse, np.ones((cell, cell)))[:h, :w]
    return field > np.quantile(field, 1 - cover)


def _cloudy_scene(path, cloud_band="SCL"):
    """A lake (rows 60..119, cols 30..149) under clouds, shadows cast 12 px down-right."""
    h, w = 200, 180
    lake = np.zeros((h, w), bool)
    lake[60:120, 30:150] = True
    cloud = _cumulus((h, w))
    shadow = np.zeros((h, w), bool)
    shadow[12:, 12:] = cloud[:-12, :-12]
    shadow &= ~cloud
    spectra = {  # reflectance x 10000: B2 B3 B4 B8 B11 B12
        "land": (600, 900, 1000, 3000, 2500, 1500),
        "water": (900, 800, 500, 300, 150, 100),
        "shadow": (350, 300, 250, 250, 180, 120),  # dark everywhere: water to NDWI/MNDWI
        "cloud": (5000, 5000, 5000, 5200, 3800, 3000),
    }
    data = np.empty((6, h, w), np.uint16)
    for name, where in (
        ("land", np.ones((h, w), bool)),
        ("water", lake),
        ("shadow", shadow),
        ("cloud", cloud),
    ):
        for b, value in enumerate(spectra[name]):
            data[b][where] = value
    if cloud_band == "SCL":
        flags = np.where(lake, 6, 4)  # water / vegetation
        flags[shadow] = 3
        flags[cloud] = 9
    else:  # QA60: clouds only, shadows unflagged
        flags = np.where(cloud, 1024, 0)
    stack = np.concatenate([data, flags[None].astype(np.uint16)])
    raster = write_raster(path, stack, crs=UTM32, descriptions=[*BANDS, cloud_band])
    return raster, lake, cloud, shadow


def _mask(path):
    with rasterio.open(path) as src:
        return src.read(1)


def test_scl_clouds_and_shadows_become_nodata_and_are_reported(tmp_path):
    raster, lake, cloud, shadow = _cloudy_scene(tmp_path / "scene.tif")
    flagged = cloud | shadow
    assert 0.2 < flagged.mean() < 0.45 and (shadow & ~lake).sum() > 2000
    done = run_backend("segment", raster, "--out-dir", tmp_path / "auto", "--progress", "text")
    assert done.returncode == 0, done.stderr
    line = "cloud mask from SCL band 7 (classes 3 cloud shadow, 8 cloud (medium probability)"
    assert line in done.stderr
    assert f"{100 * flagged.mean():.1f} % of the raster is nodata" in done.stderr
    mask = _mask(tmp_path / "auto" / "scene_water.tif")
    np.testing.assert_array_equal(mask[flagged], 255)
    np.testing.assert_array_equal(mask[~flagged], lake[~flagged])

    # without the mask the shadows are water: the false water this option exists for
    off = run_backend("segment", raster, "--out-dir", tmp_path / "none", "--cloud-mask", "none")
    assert off.returncode == 0, off.stderr
    assert "cloud mask" not in off.stderr
    unmasked = _mask(tmp_path / "none" / "scene_water.tif")
    assert unmasked[shadow & ~lake].all()


def test_no_shoreline_is_drawn_along_cloud_edges(tmp_path):
    raster, lake, cloud, shadow = _cloudy_scene(tmp_path / "scene.tif")
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--min-length", "0")
    assert done.returncode == 0, done.stderr
    with rasterio.open(raster) as src:
        inverse = ~src.transform
    ds = ogr.Open(str(tmp_path / "o" / "scene_shoreline.gpkg"))
    points = []
    for feature in ds.GetLayerByName("shoreline"):
        geom = feature.GetGeometryRef()
        points += [inverse * geom.GetPoint_2D(i) for i in range(geom.GetPointCount())]
    assert points
    cols, rows = np.array(points).T
    # every vertex lies on the lake's outline (rows 60 / 120, cols 30 / 150, within a pixel),
    # none on the outline of a cloud or a shadow out on the land
    on_rows = (np.abs(rows - 60) <= 1) | (np.abs(rows - 120) <= 1)
    on_cols = (np.abs(cols - 30) <= 1) | (np.abs(cols - 150) <= 1)
    assert (on_rows | on_cols).all()


def test_qa60_masks_clouds_but_cannot_mask_shadows(tmp_path):
    raster, lake, cloud, shadow = _cloudy_scene(tmp_path / "qa.tif", cloud_band="QA60")
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "cloud mask from QA60 band 7 (bits 10 opaque cloud, 11 cirrus)" in done.stderr
    mask = _mask(tmp_path / "o" / "qa_water.tif")
    np.testing.assert_array_equal(mask[cloud], 255)
    assert mask[shadow & ~lake].mean() > 0.9  # QA60 has no shadow flag: they stay water


def test_a_raster_without_a_cloud_band_says_it_is_not_masked(tmp_path):
    raster, *_ = _cloudy_scene(tmp_path / "s.tif")
    with rasterio.open(raster) as src:
        six = src.read(list(range(1, 7)))
    plain = write_raster(tmp_path / "plain.tif", six, crs=UTM32, descriptions=BANDS)
    done = run_backend("segment", plain, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "no cloud mask: the raster has no SCL or QA60 band" in done.stderr
