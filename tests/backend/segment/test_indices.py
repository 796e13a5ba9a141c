"""``segment --method``: a water index through the same engine as a model (mask, shoreline at
the index's threshold), numpy only; the option's choices are auto, model and the indices the
engine knows; auto (the default) picks an adaptive index or the model from the bands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

from backend.core import paths
from backend.core.contract import option
from backend.core.water_indices import ADAPTIVE_INDICES, INDEX_BANDS, dark_object_haze, ndwi
from backend.segment.plan import AUTO, AUTO_INDICES, MODEL
from tests.backend.rasters import run_backend, tiny_checkpoint, water_scene, write_raster

UTM33 = CRS.from_epsg(32633)


def test_method_choices_are_the_engine_indices():
    """auto and model are the only choices that are not an index the engine knows."""
    # new methods go at the end: Processing stores an enum's index in saved models and scripts
    assert option("method")["choices"] == [AUTO, MODEL, *INDEX_BANDS, *ADAPTIVE_INDICES]
    assert option("method")["choices"][:6] == [
        "auto",
        "model",
        "ndwi",
        "mndwi",
        "awei_sh",
        "wi2015",
    ]
    assert option("method")["default"] == AUTO
    assert [name for name, _ in AUTO_INDICES] == list(ADAPTIVE_INDICES)


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


@pytest.mark.parametrize("method", sorted([*INDEX_BANDS, *ADAPTIVE_INDICES]))
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


# ---- --method auto (the default) ------------------------------------------------------------

SIX = ["B2", "B3", "B4", "B8", "B11", "B12"]


def _six_band_scene(path):
    """A B2 B3 B4 B8 B11 B12 uint16 GeoTIFF (UTM 33N) -> (path, data). B11 is below B3 on a
    lake and on scattered wet pixels, above it elsewhere; B8 is drawn independently, so MNDWI
    and NDWI disagree on many pixels. No pixel has B3 == B11 or B3 == B8 (no index of 0)."""
    rng = np.random.default_rng(0)
    h, w = 40, 56
    yy, xx = np.mgrid[0:h, 0:w]
    wet = ((xx - 36) ** 2 + (yy - 20) ** 2 < 14**2) | (rng.random((h, w)) < 0.2)
    b3 = rng.integers(600, 1400, (h, w)).astype(np.float64)
    b11 = b3 * np.where(wet, rng.uniform(0.2, 0.8, (h, w)), rng.uniform(1.25, 3.0, (h, w)))
    b8 = b3 * np.where(rng.random((h, w)) < 0.5, 0.5, 2.0)
    data = np.rint(np.stack([0.9 * b3, b3, 1.1 * b3, b8, b11, 0.7 * b11])).astype(np.uint16)
    return write_raster(path, data, crs=UTM33, descriptions=SIX), data


def _normalised_difference_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return ((a - b) / (a + b) > 0).astype(np.uint8)


def _mask(path):
    with rasterio.open(path) as src:
        assert src.crs == UTM33
        return src.read(1)


def test_auto_runs_the_mixed_adaptive_index_on_a_raster_with_b3_b8_and_b11(tmp_path):
    raster, data = _six_band_scene(tmp_path / "six.tif")
    plan = json.loads(run_backend("plan", raster, "--json").stdout)  # default method
    assert plan["method"] == "mixed-adaptive" and plan["model"]["file"] == ""
    assert plan["model"]["bands"] == ["B3", "B8", "B11"] and plan["bands"] == [2, 4, 5]
    assert plan["band_rule"] == "descriptions"
    why = (
        "Using the mean of NDWI and MNDWI (B3 B8 B11; water above a threshold set for each "
        "raster from its water/land edges), no model: chosen "
    )
    assert plan["model"]["why"].startswith(why + "automatically, the raster has B3 and B8 and B11")
    text = run_backend("plan", raster)
    assert text.returncode == 0 and f"why        {why}" in text.stdout
    done = run_backend("segment", raster, "--out-dir", tmp_path / "out", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert f"method: {why}" in done.stderr and "waterseg: model: " not in done.stderr
    assert "bands [2, 4, 5] (descriptions)" in done.stderr
    assert "six.tif: mean of NDWI and MNDWI: water where the index > " in done.stderr


def _offset_lake(path, descriptions, nodata=None, frame=0):
    """A lake whose NDWI and MNDWI are +0.7 on water and +0.1 on land (+-0.02 noise): a scene
    where the fixed threshold 0 calls everything water. ``frame`` px of ``nodata`` around."""
    rng = np.random.default_rng(3)
    h, w = 72, 88
    yy, xx = np.mgrid[0:h, 0:w]
    lake = (xx - 50) ** 2 + (yy - 34) ** 2 < 20**2
    index = np.where(lake, 0.7, 0.1) + rng.uniform(-0.02, 0.02, (h, w))
    b3 = np.full((h, w), 1000.0)
    other = b3 * (1 - index) / (1 + index)  # (b3 - other) / (b3 + other) = index
    # B2 at 0.03: surface reflectance, so no haze is removed (see test_haze_* below)
    bands = {"B2": 0.3 * b3, "B3": b3, "B4": 1.1 * b3, "B8": other, "B11": other, "B12": other}
    data = np.rint(np.stack([bands[d] for d in descriptions])).astype(np.uint16)
    if frame:
        data[:, :frame] = data[:, -frame:] = nodata
        data[:, :, :frame] = data[:, :, -frame:] = nodata
    return write_raster(path, data, crs=UTM33, descriptions=descriptions, nodata=nodata), lake


@pytest.mark.parametrize("method", ["mixed-adaptive", "mndwi-adaptive", "ndwi-adaptive"])
def test_adaptive_methods_find_the_lake_where_the_fixed_threshold_calls_all_water(tmp_path, method):
    raster, lake = _offset_lake(tmp_path / "lake.tif", SIX)
    out = tmp_path / method
    done = run_backend("segment", raster, "--out-dir", out, "--method", method)
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stderr.splitlines() if "water where the index > " in ln)
    threshold = float(line.split("water where the index > ")[1].split(",")[0])
    assert 0.15 < threshold <= 0.3, line
    np.testing.assert_array_equal(_mask(out / "lake_water.tif"), lake)
    fixed = run_backend("segment", raster, "--out-dir", tmp_path / "f", "--method", "mndwi")
    assert fixed.returncode == 0 and "100.0% water" in fixed.stderr  # the fixed rule's answer
    assert _mask(tmp_path / "f" / "lake_water.tif").all()


def test_adaptive_threshold_leaves_the_nodata_frame_out(tmp_path):
    raster, lake = _offset_lake(tmp_path / "lake.tif", SIX, nodata=0, frame=6)
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--method", "mndwi-adaptive")
    assert done.returncode == 0, done.stderr
    assert "water where the index > " in done.stderr
    with rasterio.open(tmp_path / "o" / "lake_water.tif") as src:
        mask, nodata = src.read(1), src.nodata
    inner = np.s_[6:-6, 6:-6]
    np.testing.assert_array_equal(mask[inner], lake[inner])
    assert (mask[:6] == nodata).all()


def test_adaptive_method_without_an_edge_says_so_and_uses_zero(tmp_path):
    rng = np.random.default_rng(4)
    b3 = np.full((40, 40), 1000.0)
    index = -0.4 + rng.uniform(-0.02, 0.02, b3.shape)  # land only, no water edge
    other = b3 * (1 - index) / (1 + index)
    data = np.rint(np.stack([b3, other])).astype(np.uint16)
    raster = write_raster(tmp_path / "dry.tif", data, crs=UTM33, descriptions=["B3", "B11"])
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "MNDWI: no clear water/land edge in this raster (edges differ by only" in done.stderr
    assert "water where the index > 0, the fixed threshold" in done.stderr
    assert not _mask(tmp_path / "o" / "dry_water.tif").any()


def test_auto_runs_ndwi_adaptive_on_a_raster_with_b3_and_b8_but_no_b11(tmp_path):
    yy, xx = np.mgrid[0:48, 0:64]
    scene = water_scene((xx - 40) ** 2 + (yy - 24) ** 2 < 16**2)
    raster = write_raster(tmp_path / "four.tif", scene, crs=UTM33, descriptions=SIX[:4])
    plan = json.loads(run_backend("plan", raster, "--json").stdout)
    assert plan["method"] == "ndwi-adaptive" and plan["model"]["file"] == ""
    assert plan["model"]["bands"] == ["B3", "B8"] and plan["bands"] == [2, 4]
    assert "chosen automatically, the raster has B3 and B8" in plan["model"]["why"]
    done = run_backend("segment", raster, "--out-dir", tmp_path / "out", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "method: Using NDWI (B3 B8; water above a threshold set for each" in done.stderr
    expected = _normalised_difference_mask(scene[1], scene[3])
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(_mask(tmp_path / "out" / "four_water.tif"), expected)


@pytest.mark.parametrize("how", ["model", "bands"])
def test_auto_keeps_the_model_when_model_or_bands_is_given(tmp_path, how):
    raster, _ = _six_band_scene(tmp_path / "six.tif")
    if how == "model":
        extra = ["--model", tiny_checkpoint(tmp_path / "tiny.pt")]  # bands B2 B3 B4 B8
        key, file = None, str(tmp_path / "tiny.pt")
    else:
        if not paths.RGBN_MODEL.is_file():
            pytest.skip(f"bundled model {paths.RGBN_MODEL.name} not installed")
        extra = ["--bands", "1,2,3,4"]
        key, file = "rgbn", str(paths.RGBN_MODEL)
    plan = json.loads(run_backend("plan", raster, "--json", *extra).stdout)
    assert plan["method"] == "model" and plan["model"]["key"] == key
    assert plan["model"]["file"] == file and plan["model"]["bands"] == SIX[:4]
    assert plan["bands"] == [1, 2, 3, 4]
    done = run_backend(
        "segment", raster, "--out-dir", tmp_path / "out", "--progress", "text", *extra
    )
    assert done.returncode == 0, done.stderr
    assert "classical index" not in done.stderr
    model_line = next(x for x in done.stderr.splitlines() if x.startswith("waterseg: model: "))
    assert Path(file).name in model_line
    assert (tmp_path / "out" / "six_water.tif").is_file()


def test_auto_gives_a_true_colour_image_the_bundled_rgb_model(tmp_path):
    rgb_model = paths.MODELS_DIR / "waterseg-rgb.pt"
    if not rgb_model.is_file():
        pytest.skip(f"{rgb_model} not installed (scripts/train_rgb.py builds it)")
    image = (np.arange(3 * 40 * 50) % 251).reshape(3, 40, 50).astype(np.uint8)
    raster = write_raster(tmp_path / "photo.tif", image, crs=UTM33)
    plan = json.loads(run_backend("plan", raster, "--json").stdout)
    assert plan["method"] == "model" and plan["model"]["key"] == "rgb"
    assert plan["model"]["file"] == str(rgb_model) and plan["bands"] == [1, 2, 3]
    done = run_backend("segment", raster, "--out-dir", tmp_path / "out", "--progress", "text")
    assert done.returncode == 0, done.stderr
    assert "Using the bundled 3-band model (red green blue)" in done.stderr
    assert "classical index" not in done.stderr
    assert _mask(tmp_path / "out" / "photo_water.tif").shape == (40, 50)


def test_auto_mask_does_not_move_with_the_l2a_offset(tmp_path):
    """Water where MNDWI > 0 is water where B3 > B11: adding the +1000 offset of newer L2A
    products to every band (a forgotten --l2a-offset) leaves the fixed-threshold mask as it
    is (the adaptive methods re-learn their threshold from the shifted values instead)."""
    raster, data = _six_band_scene(tmp_path / "six.tif")
    with rasterio.open(raster) as src:
        profile, descriptions = src.profile, src.descriptions
    shifted = tmp_path / "shifted.tif"
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write((data.astype(np.float64) + 1000).astype(profile["dtype"]))
        dst.descriptions = descriptions
    for name in (raster, shifted):
        done = run_backend(
            "segment",
            name,
            "--out-dir",
            tmp_path / "out",
            "--method",
            "mndwi",
            "--progress",
            "none",
        )
        assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(
        _mask(tmp_path / "out" / "six_water.tif"), _mask(tmp_path / "out" / "shifted_water.tif")
    )


def test_adaptive_threshold_is_learned_on_the_values_the_engine_sees_with_l2a_offset(tmp_path):
    """--l2a-offset subtracts 1000 before the index: the threshold is learned after it too."""
    raster, lake = _offset_lake(tmp_path / "lake.tif", SIX)
    with rasterio.open(raster) as src:
        profile, descriptions, data = src.profile, src.descriptions, src.read()
    shifted = tmp_path / "l2a.tif"
    with rasterio.open(shifted, "w", **profile) as dst:
        dst.write(data + np.uint16(1000))  # a newer L2A product: every value + 1000
        dst.descriptions = descriptions
    done = run_backend(
        "segment", shifted, "--out-dir", tmp_path / "o", "--method", "mndwi-adaptive",
        "--l2a-offset",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(_mask(tmp_path / "o" / "l2a_water.tif"), lake)
    line = next(ln for ln in done.stderr.splitlines() if "water where the index > " in ln)
    assert "no clear water/land edge" not in line
    assert "pass --l2a-offset" not in done.stderr
    # the same file without the flag: said, not silently segmented as is
    forgot = run_backend("segment", shifted, "--out-dir", tmp_path / "f", "--method", "mndwi")
    assert forgot.returncode == 0, forgot.stderr
    assert "WARNING: the darkest 1 % of every band is at or above 1000" in forgot.stderr
    assert "pass --l2a-offset" in forgot.stderr
    plain = run_backend("segment", raster, "--out-dir", tmp_path / "p", "--method", "mndwi")
    assert plain.returncode == 0 and "pass --l2a-offset" not in plain.stderr


def _shaded_toa_scene(path):
    """A top-of-atmosphere (L1C-like) scene: a lake, sunlit vegetation and a hill shadow.

    Surface reflectance (B2, B3, B4, B8, B11): water 0.02 0.03 0.02 0.005 0.002; vegetation
    0.03 0.06 0.04 0.30 0.15; vegetation in shadow (diffuse light only) 0.004 0.006 0.004 0.03
    0.012. Every band then gets the atmosphere's path radiance 0.08 0.05 0.03 0.012 0.002,
    which lifts the shadow's green far above its NIR and SWIR: NDWI 0.46, MNDWI 0.79."""
    h, w = 80, 96
    yy, xx = np.mgrid[0:h, 0:w]
    lake = (xx - 28) ** 2 + (yy - 40) ** 2 < 18**2
    shadow = (xx > 60) & (yy > 10) & (yy < 70) & (xx < 86)
    surface = {
        "water": (0.02, 0.03, 0.02, 0.005, 0.002),
        "veg": (0.03, 0.06, 0.04, 0.30, 0.15),
        "shade": (0.004, 0.006, 0.004, 0.03, 0.012),
    }
    path_radiance = np.array([0.08, 0.05, 0.03, 0.012, 0.002])
    cls = np.where(lake, 0, np.where(shadow, 2, 1))
    table = np.array([surface["water"], surface["veg"], surface["shade"]]) + path_radiance
    rng = np.random.default_rng(5)
    refl = table[cls].transpose(2, 0, 1) * (1 + rng.uniform(-0.03, 0.03, (5, h, w)))
    data = np.rint(refl * 10000).astype(np.uint16)
    names = ["B2", "B3", "B4", "B8", "B11"]
    return write_raster(path, data, crs=UTM33, descriptions=names), lake, shadow


def test_dark_object_haze_by_hand():
    valid = np.ones((10, 10), bool)
    green = np.full((10, 10), 0.06, np.float32)
    green[0] = 0.045  # the dark object (a tenth of the pixels): 0.045 - 0.005 = 0.040 of haze
    nir = np.full((10, 10), 0.2, np.float32)
    nir[0] = 0.012  # 0.012 - 0.002 = 0.010 of haze
    toa = dark_object_haze({"B3": green, "B8": nir}, valid, np.full((10, 10), 0.08))
    assert toa.offsets["B3"] == pytest.approx(0.040, abs=1e-6)
    assert toa.offsets["B8"] == pytest.approx(0.010, abs=1e-6)
    assert "top-of-atmosphere reflectance (darkest blue 0.080)" in toa.why
    np.testing.assert_allclose(toa.subtract("B8", np.float32([0.2])), [0.2 - toa.offsets["B8"]])
    surface = dark_object_haze({"B3": green, "B8": nir}, valid, np.full((10, 10), 0.02))
    assert surface.offsets == {} and "surface reflectance" in surface.why
    no_blue = dark_object_haze({"B3": green, "B8": nir}, valid, None)
    assert no_blue.offsets == {} and "no blue band" in no_blue.why


def test_haze_removal_keeps_hill_shadow_out_of_the_water_on_a_toa_scene(tmp_path):
    raster, lake, shadow = _shaded_toa_scene(tmp_path / "toa.tif")
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o", "--method", "auto")
    assert done.returncode == 0, done.stderr
    assert "haze removed by dark-object subtraction (B3 -0.0" in done.stderr
    mask = _mask(tmp_path / "o" / "toa_water.tif")
    np.testing.assert_array_equal(mask, lake)  # the lake, and no shadow
    # Without B2 the level cannot be told: the shadow reads as water, and the log says why.
    with rasterio.open(raster) as src:
        data = src.read()[1:]
    no_blue = write_raster(
        tmp_path / "nb.tif", data, crs=UTM33, descriptions=["B3", "B4", "B8", "B11"]
    )
    done = run_backend("segment", no_blue, "--out-dir", tmp_path / "nb", "--method", "auto")
    assert done.returncode == 0, done.stderr
    assert "no haze correction: the raster has no blue band (B2)" in done.stderr
    assert _mask(tmp_path / "nb" / "nb_water.tif")[shadow].mean() > 0.9


def test_floor_clipped_dark_water_is_water(tmp_path):
    """An L2A product of an older baseline: over dark, clear water Sen2Cor clipped B3, B8 and
    B11 to 1 DN, so NDWI and MNDWI are exactly 0 there, the land side of a threshold >= 0."""
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w]
    lake = (xx - 40) ** 2 + (yy - 32) ** 2 < 16**2
    turbid = lake & (xx < 34)  # the shallow end: ordinary water, well above the floor
    bands = {  # surface reflectance x 10000: vegetation around a lake
        "B2": np.where(lake, 1, 300),
        "B3": np.where(turbid, 500, np.where(lake, 1, 600)),
        "B4": np.where(lake, 1, 400),
        "B8": np.where(turbid, 100, np.where(lake, 1, 3000)),
        "B11": np.where(turbid, 50, np.where(lake, 1, 1500)),
    }
    data = np.stack([bands[b] for b in bands]).astype(np.uint16)
    raster = write_raster(tmp_path / "floor.tif", data, crs=UTM33, descriptions=list(bands))
    done = run_backend("segment", raster, "--out-dir", tmp_path / "o")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(_mask(tmp_path / "o" / "floor_water.tif"), lake)
