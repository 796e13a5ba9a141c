"""``segment --dem``: steep slopes are land whatever the method says. The fixture is a valley
in surface reflectance (L2A, so no haze removal helps): a lake on its flat floor and a wooded
slope in deep hill shadow, dark in every band, that the default index calls water. The DEM
comes in another CRS (geographic) at 30 m, as SRTM or the Copernicus DEM do."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from backend.core.errors import UserError
from backend.segment.terrain import Terrain
from tests.backend.rasters import UTM_ORIGIN, run_backend, write_raster

UTM32 = CRS.from_epsg(32632)
BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
H, W = 120, 160  # 10 m pixels: 1.2 x 1.6 km
SPECTRA = {  # L2A reflectance x 10000: B2 B3 B4 B8 B11 B12
    "land": (500, 800, 600, 3000, 2200, 1300),
    "water": (700, 650, 400, 200, 100, 80),
    "shade": (120, 140, 110, 160, 110, 80),  # hill shadow: dark everywhere, NDWI/MNDWI ~ 0
}
SLOPE_DEG = 35.0


def _valley(tmp_path):
    """(raster, dem, lake, shade): the lake in columns 10..59 of rows 30..89 (flat floor at
    100 m), the shaded slope in columns 100..159 rising at 35 degrees to the east."""
    lake = np.zeros((H, W), bool)
    lake[30:90, 10:60] = True
    shade = np.zeros((H, W), bool)
    shade[20:100, 110:160] = True
    data = np.empty((6, H, W), np.uint16)
    for name, where in (("land", np.ones((H, W), bool)), ("water", lake), ("shade", shade)):
        for b, v in enumerate(SPECTRA[name]):
            data[b][where] = v
    raster = write_raster(tmp_path / "valley.tif", data, descriptions=BANDS)
    # the DEM: EPSG:4326, about 30 m cells, covering the raster with a margin
    xs = [UTM_ORIGIN[0] - 200, UTM_ORIGIN[0] + W * 10 + 200]
    ys = [UTM_ORIGIN[1] + 200, UTM_ORIGIN[1] - H * 10 - 200]
    lon, lat = warp_transform(UTM32, CRS.from_epsg(4326), xs, ys)
    dlon, dlat = 30 / (111_320 * math.cos(math.radians(lat[0]))), 30 / 110_570
    w, h = int((lon[1] - lon[0]) / dlon) + 1, int((lat[0] - lat[1]) / dlat) + 1
    transform = Affine(dlon, 0, lon[0], 0, -dlat, lat[0])
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    clon, clat = transform * (cols, rows)
    east, _ = warp_transform(CRS.from_epsg(4326), UTM32, clon.ravel(), clat.ravel())
    east = np.array(east).reshape(h, w) - UTM_ORIGIN[0]  # metres from the raster's west edge
    rise = np.clip(east - 1050.0, 0, None) * math.tan(math.radians(SLOPE_DEG))
    z = (100.0 + rise).astype(np.float32)[None]
    dem = write_raster(tmp_path / "dem.tif", z, crs=CRS.from_epsg(4326), transform=transform)
    return raster, dem, lake, shade


def _mask(path):
    with rasterio.open(path) as src:
        return src.read(1)


def test_steep_shaded_slopes_are_land_with_a_dem_and_the_lake_stays(tmp_path):
    raster, dem, lake, shade = _valley(tmp_path)
    plain = run_backend("segment", raster, "--out-dir", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    before = _mask(tmp_path / "plain" / "valley_water.tif")
    assert before[shade].mean() > 0.9  # the hill shadow is water without the DEM

    done = run_backend(
        "segment", raster, "--out-dir", tmp_path / "dem", "--dem", dem, "--progress", "json"
    )
    assert done.returncode == 0, done.stderr
    after = _mask(tmp_path / "dem" / "valley_water.tif")
    inner = shade.copy()
    inner[:, 110:113] = False  # the foot of the slope: a DEM cell of 30 m straddles it
    assert after[inner].max() == 0  # land on the 35 degree slope
    np.testing.assert_array_equal(after[lake], 1)  # the flat floor keeps its lake
    assert "terrain from DEM dem.tif (aligned to the raster, bilinear): slopes over 20 degrees" in (
        done.stderr
    )
    event = next(json.loads(line) for line in done.stdout.splitlines() if '"event": "done"' in line)
    slope_share = (np.arange(W) >= 105).mean()  # columns east of 1050 m rise
    assert event["steep_fraction"] == pytest.approx(slope_share, abs=0.03)


def test_the_limit_is_in_degrees(tmp_path):
    raster, dem, _, shade = _valley(tmp_path)
    done = run_backend(
        "segment", raster, "--out-dir", tmp_path / "o", "--dem", dem, "--dem-max-slope", "40"
    )
    assert done.returncode == 0, done.stderr
    assert _mask(tmp_path / "o" / "valley_water.tif")[shade].mean() > 0.9  # 35 < 40: unchanged


def test_slope_by_hand_on_a_plane(tmp_path):
    # a plane rising 1 m per 10 m pixel eastwards: 5.71 degrees, in the raster's own CRS
    z = (np.arange(40, dtype=np.float32)[None, None, :] * 1.0).repeat(30, axis=1)
    dem = write_raster(tmp_path / "plane.tif", z)
    with rasterio.open(dem) as src:
        from backend.segment.georef import GeoRef

        georef = GeoRef(src.crs, src.transform, src.width, src.height, None)
    steep_5 = Terrain(dem, georef, max_slope=5.0)
    steep_6 = Terrain(dem, georef, max_slope=6.0)
    try:
        assert steep_5.steep(0, 30)[:, 1:-1].all()  # 5.71 > 5 (the edge columns: one-sided)
        assert not steep_6.steep(0, 30).any()
        assert steep_5.steep(10, 12).shape == (2, 40)
    finally:
        steep_5.close()
        steep_6.close()


def test_dem_errors_name_the_cause_and_the_fix(tmp_path):
    raster, dem, *_ = _valley(tmp_path)
    missing = run_backend("segment", raster, "--out-dir", tmp_path / "a", "--dem", tmp_path / "x")
    assert (
        missing.returncode == 2 and "--dem" in missing.stderr and "no such file" in missing.stderr
    )
    with rasterio.open(dem) as src:
        z = src.read()
    bare = tmp_path / "bare.tif"
    with rasterio.open(
        bare, "w", driver="GTiff", width=z.shape[2], height=z.shape[1], count=1, dtype="float32"
    ) as dst:
        dst.write(z)
    no_crs = run_backend("segment", raster, "--out-dir", tmp_path / "b", "--dem", bare)
    assert no_crs.returncode == 2 and "has no CRS" in no_crs.stderr
    assert "gdal_edit.py -a_srs" in no_crs.stderr
    assert not (tmp_path / "b" / "valley_water.tif").exists()
    with rasterio.open(dem) as src:
        from backend.segment.georef import GeoRef

        flat = GeoRef(None, src.transform, src.width, src.height, None)
    with pytest.raises(UserError, match="the input raster has no CRS"):
        Terrain(dem, flat)


def test_a_dem_elsewhere_changes_nothing_and_says_so(tmp_path):
    raster, _, _, shade = _valley(tmp_path)
    far = Affine(30.0, 0, 700000.0, 0, -30.0, 4900000.0)  # 250 km away, same zone
    dem = write_raster(tmp_path / "far.tif", np.full((1, 50, 50), 500.0, np.float32), transform=far)
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--dem", dem)
    assert done.returncode == 0, done.stderr
    assert "the DEM does not cover the raster: nothing is changed" in done.stderr
    assert _mask(tmp_path / "o" / "valley_water.tif")[shade].mean() > 0.9
