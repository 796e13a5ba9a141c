"""``--cloud-mask auto|none``: the product's SCL or QA60 flags become nodata (255), the
shoreline does not follow them, and the log says how much was masked. The fixture is a lake
under a field of cumulus clouds whose shadows (dark in NIR and SWIR, like water) are cast
sideways, as the sun casts them."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import ogr
from rasterio.crs import CRS

from backend.segment import s2cloudless
from backend.segment.cli import _cloud_note
from backend.segment.clouds import (
    EMPTY_QA60,
    QA60_GIVES_WAY,
    CloudBand,
    CloudGrid,
    cloud_band_for,
    find_cloud_band,
)
from backend.segment.raster_io import open_raster
from tests.backend.rasters import run_backend, write_raster

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


def test_qa60_clouds_bring_their_shadows_found_from_the_image(tmp_path):
    raster, lake, cloud, shadow = _cloudy_scene(tmp_path / "qa.tif", cloud_band="QA60")
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "json")
    assert done.returncode == 0, done.stderr
    assert "cloud mask from QA60 band 7 (bits 10 opaque cloud, 11 cirrus), with their " in (
        done.stderr
    )
    # the shadows lie 12 px (120 m) down-right: bearing 135 degrees, 0.17 km on 40 m cells
    assert "the clouds moved 0.2 km toward 135 degrees" in done.stderr
    mask = _mask(tmp_path / "o" / "qa_water.tif")
    np.testing.assert_array_equal(mask[cloud], 255)
    # QA60 has no shadow flag: the shadows are found on 40 m cells, so their rims may stay
    assert (mask[shadow & ~lake] == 255).mean() > 0.8
    assert (mask[shadow & ~lake] == 1).mean() < 0.2  # rims of 3 px detail; all water before
    assert (mask[lake & ~cloud & ~shadow] == 1).mean() > 0.97  # the lake is not masked
    events = [json.loads(line) for line in done.stdout.splitlines()]
    done_event = next(e for e in events if e["event"] == "done")
    assert 0.05 < done_event["shadow_fraction"] < 1.5 * (shadow & ~lake).mean()
    assert done_event["cloud_fraction"] == pytest.approx(cloud.mean(), abs=0.005)


def test_the_sun_azimuth_in_the_metadata_steers_the_shadow_search(tmp_path):
    raster, lake, cloud, shadow = _cloudy_scene(tmp_path / "qa.tif", cloud_band="QA60")
    with rasterio.open(raster, "r+") as dst:
        dst.update_tags(MEAN_SOLAR_AZIMUTH_ANGLE="315.0")  # shadows toward 135 degrees
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "toward 135 degrees, the offset that darkens the land most, searched away from the " in (
        done.stderr
    )
    assert "azimuth 315 degrees in the metadata" in done.stderr


def test_a_raster_without_a_cloud_band_says_it_is_not_masked(tmp_path):
    raster, *_ = _cloudy_scene(tmp_path / "s.tif")
    with rasterio.open(raster) as src:
        six = src.read(list(range(1, 7)))
    plain = write_raster(tmp_path / "plain.tif", six, crs=UTM32, descriptions=BANDS)
    done = run_backend("segment", plain, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "no cloud mask: the raster has no SCL or QA60 band" in done.stderr


# --- s2cloudless: 13-band L1C rasters without SCL / QA60 flags ---------------------------------
# The fixtures are 13-band L1C-like GeoTIFFs (uint16 DN = TOA reflectance x 10000, 10 m pixels in
# UTM 32N, band descriptions B1 ... B12) built from the spectra below: a lake and a thick cloud
# over land. The real model gives the cloud spectrum p = 0.998, land 0.011, the lake 0.009.

L1C = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
L1C_SPECTRA = {  # DN, in L1C order
    "land": (1200, 900, 800, 700, 1100, 2200, 2600, 2800, 3000, 1000, 10, 2200, 1300),
    "lake": (1200, 800, 600, 350, 300, 200, 180, 150, 140, 60, 8, 100, 80),
    "cloud": (5000, 4800, 4700, 4700, 4700, 4900, 5000, 5000, 4900, 2500, 300, 3800, 2500),
}
needs_model = pytest.mark.skipif(
    bool(s2cloudless.available()),
    reason=f"s2cloudless cannot run here ({s2cloudless.available()}); run make setup",
)


def _disc(shape, centre, radius):
    y, x = np.ogrid[: shape[0], : shape[1]]
    return (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2


def _l1c_scene(path, shape=(384, 384), extra=None, names=True, offset=0, pixel=10.0):
    """A lake (disc, upper left) and a thick cloud (disc, lower right) over land; ``extra``:
    (description, (H, W) array) bands appended after the 13."""
    lake = _disc(shape, (110, 110), 70)
    cloud = _disc(shape, (270, 270), 100)
    data = np.empty((13, *shape), np.uint16)
    for name, where in (("land", np.ones(shape, bool)), ("lake", lake), ("cloud", cloud)):
        for b, value in enumerate(L1C_SPECTRA[name]):
            data[b][where] = value + offset
    descriptions = list(L1C)
    if extra:
        data = np.concatenate([data, np.stack([a for _, a in extra]).astype(np.uint16)])
        descriptions += [d for d, _ in extra]
    transform = Affine(pixel, 0, 500000.0, 0, -pixel, 4650000.0)
    raster = write_raster(
        path, data, crs=UTM32, transform=transform, descriptions=descriptions if names else None
    )
    return raster, lake, cloud


def _fake_model(monkeypatch, seen=None):
    """s2cloudless without lightgbm: probability 1 where B2 reflectance > 0.3, else 0; the
    inputs it was given are appended to ``seen``."""

    def probability(reflectance, valid):
        if seen is not None:
            seen.append(reflectance)
        return ((reflectance[1] > 0.3) & valid).astype(np.float32)

    monkeypatch.setattr(s2cloudless, "probability", probability)
    monkeypatch.setattr(s2cloudless, "available", lambda: "")


def test_disk_and_post_processing_worked_by_hand():
    # the disk of s2cloudless's cv2_disk(2) (cv2.circle, filled)
    assert s2cloudless.disk(2).astype(int).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]
    prob = np.zeros((7, 7))
    prob[3, 3] = 1.0  # averaged over the 5-pixel disk of radius 1: 0.2 <= 0.4, clear
    assert not s2cloudless.flags_from_probability(prob, 0.4, 1, 0).any()
    prob[2:5, 2:5] = 1.0  # a 3 x 3 block: its centre averages 1, its edges 4/5, corners 3/5
    flags = s2cloudless.flags_from_probability(prob, 0.4, 1, 0)
    inner = np.zeros((7, 7), bool)
    inner[2:5, 2:5] = True  # the block itself; outside it, at most 1/5 (next to an edge)
    np.testing.assert_array_equal(flags, inner)
    dilated = s2cloudless.flags_from_probability(prob, 0.4, 1, 1)
    assert dilated.sum() == 9 + 4 * 3 and not dilated[1, 1] and dilated[1, 2]
    edge = np.zeros((3, 3))
    edge[0, 0] = 1.0  # reflected at the border as cv2.BORDER_REFLECT: the corner's disk holds
    avg = s2cloudless.flags_from_probability(edge, 0.5, 1, 0)  # itself 3 times: 3/5 = 0.6
    assert avg[0, 0] and avg.sum() == 1  # (BORDER_REFLECT_101 would give 1/5 = 0.2)


def test_grid_lookup_is_nearest_and_does_not_depend_on_the_strip_layout():
    rng = np.random.default_rng(3)
    grid = CloudGrid(rng.random((5, 7)) > 0.5, "test")
    h, w = 83, 101
    whole = grid.flags_in(0, h, 0, w, (h, w))
    rows, cols = np.arange(h), np.arange(w)  # a pixel takes the cell its centre falls in
    expected = grid.flags[np.floor((rows + 0.5) * 5 / h).astype(int)][
        :, np.floor((cols + 0.5) * 7 / w).astype(int)
    ]
    np.testing.assert_array_equal(whole, expected)
    for cuts in ([0, 17, 50, 83], [0, 1, 2, 40, 41, 83], list(range(0, 84, 1))):
        strips = [grid.flags_in(a, b, 0, w, (h, w)) for a, b in zip(cuts, cuts[1:], strict=False)]
        np.testing.assert_array_equal(np.concatenate(strips), whole)
    np.testing.assert_array_equal(grid.flags_in(10, 30, 20, 60, (h, w)), whole[10:30, 20:60])
    # a resampled whole-raster read at the grid's own size is the grid
    np.testing.assert_array_equal(grid.flags_in(0, 5, 0, 7, (5, 7)), grid.flags)


def test_raster_reads_take_the_grid_flags_whatever_the_strips(tmp_path, monkeypatch):
    _fake_model(monkeypatch)
    raster, lake, cloud = _l1c_scene(tmp_path / "l1c.tif", shape=(300, 260))
    with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
        assert isinstance(source.cloud, CloudGrid)
        # the 160 m pass (19 x 17 cells) looked up on the 40 m grid of the small-cloud pass
        assert source.cloud.flags.shape == (75, 65)  # ceil(300 / 4), ceil(260 / 4): 40 m
        _, whole = source.read_strip(0, 300)
        parts = [source.read_strip(a, b)[1] for a, b in ((0, 7), (7, 123), (123, 124), (124, 300))]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        assert whole[lake].all()
        assert (~whole[cloud]).mean() > 0.95  # the cloud, dilated: nodata
        _, coarse = source.read_decimated(300 * 260 // 16)  # an overview read: the same flags
        assert abs((~coarse).mean() - (~whole).mean()) < 0.05


@needs_model
def test_s2cloudless_masks_a_cloud_over_land_and_keeps_the_lake(tmp_path):
    raster, lake, cloud = _l1c_scene(tmp_path / "l1c.tif")
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "cloud mask from s2cloudless (Sinergise's LightGBM model" in done.stderr
    assert "on a 24 x 24 grid of 160 m cells, and small clouds on 40 m cells" in done.stderr
    mask = _mask(tmp_path / "o" / "l1c_water.tif")
    assert (mask[cloud] == 255).all()  # the whole cloud, and a dilated rim of land around it
    assert (mask == 255).sum() < 2.0 * cloud.sum()
    np.testing.assert_array_equal(mask[lake], 1)  # the lake is not blanked
    nodata = (mask == 255).mean()
    assert f"{100 * nodata:.1f} % of the raster is nodata" in done.stderr


@needs_model
def test_the_real_model_flags_nothing_on_the_real_clear_l1c_scene(demo_scene):
    with open_raster(demo_scene, ["B3", "B8"], cloud_mask="auto") as source:
        assert isinstance(source.cloud, CloudGrid)  # its QA60 band is empty: s2cloudless runs
        assert source.cloud.flags.shape == (80, 80)  # the 40 m grid of the small-cloud pass
        assert source.cloud_fraction() == 0.0
        assert "the QA60 band flags nothing" in source.cloud.describe()
    # the model file is read with lightgbm: the s2cloudless package (cv2, sentinelhub) never runs
    assert not {"s2cloudless", "cv2", "sentinelhub"} & set(sys.modules)


def test_lightgbm_missing_is_one_log_line_and_no_mask(tmp_path, monkeypatch):
    raster, *_ = _l1c_scene(tmp_path / "l1c.tif", shape=(64, 64))
    args = argparse.Namespace(cloud_mask="auto")
    s2cloudless.load_model.cache_clear()
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm -> ImportError
    try:
        with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
            assert source.cloud is None
            note = _cloud_note(source, args)
        assert note.startswith("no cloud mask: the raster has no SCL or QA60 band; s2cloudless ")
        assert "cannot run: lightgbm is not installed (run make setup)" in note
        monkeypatch.delitem(sys.modules, "lightgbm")
        monkeypatch.setattr(s2cloudless, "MODEL_FILE", "not-there.txt")
        s2cloudless.load_model.cache_clear()
        with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
            assert source.cloud is None
            assert "model file is not installed (s2cloudless==1.7.3; run make setup)" in (
                _cloud_note(source, args)
            )
    finally:
        s2cloudless.load_model.cache_clear()


def test_scl_takes_precedence_over_s2cloudless_and_s2cloudless_over_qa60(tmp_path, monkeypatch):
    seen = []
    _fake_model(monkeypatch, seen)
    shape = (96, 96)
    scl = np.where(_disc(shape, (20, 70), 10), 9, 4)
    raster, *_ = _l1c_scene(tmp_path / "scl.tif", shape=shape, extra=[("SCL", scl)])
    with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
        assert source.cloud == CloudBand(14, "SCL") and not seen
        _, valid = source.read_strip(0, 96)
        np.testing.assert_array_equal(~valid, scl == 9)  # the SCL flags, not the model's
    qa = np.where(_disc(shape, (20, 70), 10), 1024, 0)
    raster, *_ = _l1c_scene(tmp_path / "qa.tif", shape=shape, extra=[("QA60", qa)])
    with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
        assert isinstance(source.cloud, CloudGrid) and len(seen) == 2  # 160 m and 40 m passes
        assert QA60_GIVES_WAY in _cloud_note(source, argparse.Namespace(cloud_mask="auto"))
    seen.clear()
    empty = np.zeros(shape)
    raster, *_ = _l1c_scene(tmp_path / "empty.tif", shape=shape, extra=[("QA60", empty)])
    with open_raster(raster, ["B3", "B8"], cloud_mask="auto") as source:
        assert isinstance(source.cloud, CloudGrid) and len(seen) == 2
        assert EMPTY_QA60 in _cloud_note(source, argparse.Namespace(cloud_mask="auto"))
    with open_raster(raster, ["B3", "B8"], cloud_mask="none") as source:
        assert source.cloud is None and len(seen) == 2


def test_s2cloudless_inputs_bands_offset_and_grid_size(tmp_path, monkeypatch):
    seen = []
    _fake_model(monkeypatch, seen)
    # unnamed 13 bands: the L1C layout; values with the +1000 of baseline 04.00, 20 m pixels
    raster, *_ = _l1c_scene(tmp_path / "u.tif", shape=(80, 48), names=False, offset=1000, pixel=20)
    with open_raster(raster, ["B3", "B8"], cloud_mask="auto", extra_offset=-1000.0) as source:
        assert isinstance(source.cloud, CloudGrid)
        assert source.cloud.flags.shape == (40, 24)  # the 40 m grid: 2 pixels a cell
        assert "grid of 160 m cells, and small clouds on 40 m cells" in source.cloud.describe()
    land_b1 = L1C_SPECTRA["land"][0] / 10000  # B1 of land, the offset taken off
    assert seen[0].shape == (10, 10, 6)  # 160 m / 20 m = 8 pixels a cell
    assert seen[1].shape == (10, 40, 24) and np.isclose(seen[1][0].min(), land_b1)
    # 12 bands without B10 (an L2A stack): no s2cloudless, and the log says why
    with rasterio.open(raster) as src:
        twelve = np.delete(src.read(), L1C.index("B10"), axis=0)
    names = [b for b in L1C if b != "B10"]
    l2a = write_raster(tmp_path / "l2a.tif", twelve, crs=UTM32, descriptions=names)
    with open_raster(l2a, ["B3", "B8"], cloud_mask="auto") as source:
        assert source.cloud is None and "and B10 is missing" in source.cloud_why_not
    assert s2cloudless.grid_step(10.0) == 16 and s2cloudless.grid_step(60.0) == 3
    assert s2cloudless.grid_step(300.0) == 1


def test_setup_installs_the_s2cloudless_release_the_backend_names(repo_root):
    pins = (repo_root / "requirements-nodeps.txt").read_text().splitlines()
    assert s2cloudless.PACKAGE in pins  # the --no-deps pins of setup.sh and Install backend
    setup = (repo_root / "scripts" / "setup.sh").read_text()
    assert "requirements-nodeps.txt" in setup and '--no-deps "${pins[@]}"' in setup
