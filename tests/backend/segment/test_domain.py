"""Out of domain, said out loud (issue 21 item 5): a learned model on pixels far coarser than
it learned from, and a raster without a CRS, each get a warning in the log and the done event;
a raster without a CRS gets its shoreline lengths in pixels (``length_px``)."""

from __future__ import annotations

import json

import numpy as np
from osgeo import ogr
from rasterio.transform import Affine

from tests.backend.rasters import UTM_ORIGIN, run_backend, write_raster


def _rgb_lake(h: int = 96, w: int = 96) -> np.ndarray:
    """An 8-bit true-colour lake (dark blue) in green fields, (3, h, w) uint8."""
    yy, xx = np.mgrid[0:h, 0:w]
    lake = (xx - w // 2) ** 2 + (yy - h // 2) ** 2 < (h // 4) ** 2
    rgb = np.where(
        lake, np.array([20, 40, 70])[:, None, None], np.array([90, 120, 60])[:, None, None]
    )
    return rgb.astype(np.uint8)


def _done(stdout: str) -> dict:
    return next(e for e in map(json.loads, stdout.splitlines()) if e.get("event") == "done")


def test_a_300_m_true_colour_raster_is_segmented_with_a_warning(tmp_path):
    coarse = Affine(300.0, 0, UTM_ORIGIN[0], 0, -300.0, UTM_ORIGIN[1])
    raster = write_raster(
        tmp_path / "landsat_rgb.tif",
        _rgb_lake(),
        transform=coarse,
        descriptions=["red", "green", "blue"],
    )
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "json")
    assert done.returncode == 0, done.stderr
    assert "m pixels, 30x coarser than the 10 m pixels the model learned from" in done.stderr
    assert any("30x coarser" in w for w in _done(done.stdout)["warnings"])
    ten = write_raster(tmp_path / "s2_rgb.tif", _rgb_lake(), descriptions=["red", "green", "blue"])
    done = run_backend("segment", ten, "--out-dir", tmp_path / "t", "--progress", "json")
    assert done.returncode == 0 and "coarser than" not in done.stderr


def test_a_raster_without_a_crs_is_warned_and_measured_in_pixels(tmp_path):
    h, w = 64, 64
    yy, xx = np.mgrid[0:h, 0:w]
    lake = (xx - 32) ** 2 + (yy - 32) ** 2 < 14**2
    b3 = np.full((h, w), 800)
    other = np.where(lake, 100, 2500)
    data = np.stack([b3, other]).astype(np.uint16)
    raster = write_raster(
        tmp_path / "nocrs.tif",
        data,
        crs=None,
        transform=Affine.identity(),
        descriptions=["B3", "B8"],
    )
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "json")
    assert done.returncode == 0, done.stderr
    assert "WARNING: the raster has no CRS" in done.stderr
    assert any("no CRS" in w for w in _done(done.stdout)["warnings"])
    ds = ogr.Open(str(tmp_path / "o" / "nocrs_shoreline.gpkg"))
    defn = ds.GetLayer(0).GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    assert "length_px" in fields and "length_m" not in fields
    lengths = [f.GetField("length_px") for f in ds.GetLayer(0)]
    assert 2 * np.pi * 13 < sum(lengths) < 2 * np.pi * 15  # a circle of radius 14 px


def test_a_vrt_whose_source_is_missing_names_the_file(tmp_path):
    from osgeo import gdal

    b3 = write_raster(tmp_path / "b3.tif", np.full((1, 32, 32), 900, np.uint16))
    b8 = write_raster(tmp_path / "b8.tif", np.full((1, 32, 32), 300, np.uint16))
    vrt = tmp_path / "stack.vrt"
    gdal.BuildVRT(str(vrt), [str(b3), str(b8)], separate=True).FlushCache()
    b8.unlink()
    done = run_backend("segment", vrt, "--out-dir", tmp_path / "o", "--bands", "1,2")
    assert done.returncode == 2, done.stderr
    assert f"is a VRT whose source file {b8} is missing" in done.stderr
    assert "corrupt" not in done.stderr
