"""``plan``: band names, band mapping and the bundled-model choice, made once, without torch;
``segment`` on the same GeoTIFFs (UTM 33N) maps the bands the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from rasterio.crs import CRS

from backend.core import paths
from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint, sha256_of
from backend.core.errors import UserError
from backend.models import create_model
from backend.segment.bands import RasterBands, map_bands, normalise_band_name
from backend.segment.plan import choose_bundled_model, make_plan
from tests.backend.rasters import run_backend, water_scene, write_raster
from tests.band_names import MODEL_METHOD, NAMED

UTM33 = CRS.from_epsg(32633)
RGBN = ["B2", "B3", "B4", "B8"]
SWIR = ["B2", "B3", "B4", "B8", "B11", "B12"]


@pytest.mark.parametrize(
    ("text", "band"),
    [
        ("B04", "B4"),
        ("B4", "B4"),
        ("b8a", "B8A"),
        ("Band 4 (red)", "B4"),
        ("red (B4)", "B4"),
        ("nir", "B8"),
        ("NIR", "B8"),
        ("red", "B4"),
        ("Red", "B4"),
        ("green", "B3"),
        ("blue", "B2"),
        ("SWIR1", "B11"),
        ("swir1", "B11"),
        ("SWIR2", "B12"),
        ("nir (B8)", "B8"),
        ("Near infrared", "B8"),
        ("coastal", "B1"),
        ("Red edge 1", None),
        ("Band 3", None),
        ("Band 2: B03", "B3"),  # QGIS's "Band N: description"
        ("QA60", None),
    ],
)
def test_band_names_are_recognised(text, band):
    assert normalise_band_name(text) == band


def _scene(path, descriptions, dtype=np.uint16, bands=None):
    data = water_scene(np.zeros((48, 64), bool), dtype=dtype)
    if bands is not None:
        data = np.concatenate([data] * 2)[:bands]
    return write_raster(path, data, crs=UTM33, descriptions=descriptions)


@pytest.mark.parametrize("case", sorted(NAMED))
def test_plan_and_segment_map_named_bands_the_same(tmp_path, case):
    """The issue's bug: ``red (B4) ...`` must not be read as B2 B3 B4 B8 by position."""
    names, expected = NAMED[case]
    raster = _scene(tmp_path / f"{case}.tif", names)
    plan = run_backend("plan", raster, "--json", *MODEL_METHOD)
    assert plan.returncode == 0, plan.stderr
    answer = json.loads(plan.stdout)
    assert answer["bands"] == expected and answer["band_rule"] == "descriptions"
    assert answer["model"]["key"] == "rgbn" and answer["model"]["why"].startswith("Using")
    if not (paths.MODELS_DIR / "waterseg-rgbn.pt").is_file():
        pytest.skip("bundled rgbn model not installed")
    seg = run_backend(
        "segment", raster, "--out-dir", tmp_path / "out", "--progress", "text", *MODEL_METHOD
    )
    assert seg.returncode == 0, seg.stderr
    assert f"bands {expected} (descriptions)" in seg.stderr
    names_only = run_backend("plan", "--band-names", json.dumps(names), "--json", *MODEL_METHOD)
    assert json.loads(names_only.stdout)["bands"] == expected


def test_swir_names_choose_the_swir_model(tmp_path):
    names = ["blue", "green", "red", "nir", "SWIR1", "SWIR2"]
    raster = _scene(tmp_path / "six.tif", names, bands=6)
    answer = json.loads(run_backend("plan", raster, "--json", *MODEL_METHOD).stdout)
    assert answer["model"]["key"] == "default" and answer["bands"] == [1, 2, 3, 4, 5, 6]


NAMES_16 = [f"B{i}" for i in range(1, 9)] + ["B8A", "B9", "B10", "B11", "B12"]
NAMES_16 += ["QA10", "QA20", "QA60"]


@pytest.mark.parametrize(
    ("names", "choice", "bands"),
    [
        (["B2", "B3", "B4", "B8"], "rgbn", [1, 2, 3, 4]),
        (["Band 1", "Band 2", "Band 3", "Band 4"], "rgbn", [1, 2, 3, 4]),  # QGIS's names
        (["B2", "B3", "B4", "B8", "B11", "B12"], "default", [1, 2, 3, 4, 5, 6]),
        (["B08", "B02 blue", "b03", "B04", "B12 swir2", "Band 6: B11"], "default", None),
        (["B8", "B2", "B3", "B4", "B12", "B11"], "default", [2, 3, 4, 1, 6, 5]),
        (["B2", "B3", "B4", "B8", "B11"], "rgbn", [1, 2, 3, 4]),  # B12 missing
        (NAMES_16, "default", [2, 3, 4, 8, 12, 13]),  # the demo scene's stack with QA bands
        ([""] * 13, "default", [2, 3, 4, 8, 12, 13]),  # unnamed L1C stack
        ([""] * 12, "default", [2, 3, 4, 8, 11, 12]),  # unnamed L2A stack
        (["Band 1"] * 12, "default", [2, 3, 4, 8, 11, 12]),
        ([f"B{i}" for i in range(1, 9)] + ["B8A", "B9", "QA10", "QA20"], "rgbn", [2, 3, 4, 8]),
        ([""] * 6, None, None),  # 6 unnamed bands: no layout says which they are
        ([""] * 3, None, None),  # 3 unnamed 16-bit bands, no RGB model installed
    ],
)
def test_bundled_model_choice_worked_out_by_hand(names, choice, bands):
    raster = RasterBands(len(names), tuple(names), (), "uint16")
    if choice is None:
        with pytest.raises(UserError, match="--bands"):
            make_plan(raster)
        return
    plan = make_plan(raster)
    assert plan.model.key == choice
    if bands is not None:
        assert plan.mapping.indexes == bands


def test_names_that_miss_a_model_band_stop_with_the_fix():
    with pytest.raises(UserError, match=r"missing B8: .*--bands"):
        map_bands(RGBN, 4, ["red", "green", "blue", "elevation"])


def test_unnamed_bands_are_guessed_by_layout_and_said(tmp_path):
    raster = _scene(tmp_path / "plain.tif", None)
    answer = json.loads(run_backend("plan", raster, "--json", *MODEL_METHOD).stdout)
    assert answer["bands"] == [1, 2, 3, 4] and answer["band_rule"] == "layout-4"
    assert "no band descriptions: assuming" in answer["band_note"]
    seg = run_backend(
        "segment", raster, "--out-dir", tmp_path / "out", "--progress", "text", *MODEL_METHOD
    )
    assert seg.returncode == 0, seg.stderr
    assert "no band descriptions: assuming the 10 m Sentinel-2 order" in seg.stderr
    twelve = map_bands(SWIR, 12, [None] * 12)
    assert twelve.indexes == [2, 3, 4, 8, 11, 12] and "L2A" in twelve.note


def test_a_band_used_twice_is_refused_unless_allowed(tmp_path):
    raster = _scene(tmp_path / "plain.tif", None)
    done = run_backend("plan", raster, "--bands", "3,2,1,1", "--model", paths.RGBN_MODEL)
    assert done.returncode == 2 and "more than once" in done.stderr
    assert "fake NIR" in done.stderr and "--allow-duplicate-bands" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    ok = run_backend(
        "plan", raster, "--bands", "3,2,1,1", "--model", paths.RGBN_MODEL, "--allow-duplicate-bands"
    )
    assert ok.returncode == 0, ok.stderr
    seg = run_backend("segment", raster, "--bands", "3,2,1,1", "--out-dir", tmp_path / "o")
    assert seg.returncode == 2 and "more than once" in seg.stderr


def _plan_without_torch(*args) -> dict:
    """``plan ARGS --json`` in a Python where ``import torch`` fails; its JSON answer."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from backend.cli import main\n"
        f"rc = main(['plan', *{[str(a) for a in args]!r}, '--json'])\n"
        "assert rc == 0 and sys.modules['torch'] is None\n"
        "assert not [m for m in sys.modules if m.startswith('torch.')]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=paths.REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_plan_never_imports_torch(tmp_path):
    raster = _scene(tmp_path / "a.tif", NAMED["zero-padded"][0])
    model = _plan_without_torch(raster, *MODEL_METHOD)  # the bundled model's band mapping
    assert model["method"] == "model" and model["model"]["key"] == "rgbn"
    assert model["bands"] == [3, 2, 1, 4]
    auto = _plan_without_torch(raster)  # the default, auto: adaptive NDWI on the same raster
    assert auto["method"] == "ndwi-adaptive" and auto["bands"] == [2, 4]


# ---- the third bundled model (RGB), with a fake checkpoint ------------------------------------


@pytest.fixture()
def with_rgb_model(tmp_path, monkeypatch):
    """A models folder with the real bundled models (links) and a tiny fake waterseg-rgb.pt
    (bands red green blue, scale 1/255)."""
    models = tmp_path / "models"
    models.mkdir()
    for entry in ("waterseg-default.pt", "waterseg-rgbn.pt"):
        for name in (entry, entry + ".sha256"):
            if (paths.MODELS_DIR / name).is_file():
                os.symlink(paths.MODELS_DIR / name, models / name)
    torch.manual_seed(0)
    kwargs = {"width": 0.125, "in_channels": 3}
    model = create_model("unet", **kwargs)
    spec = InputSpec(bands=["red", "green", "blue"], scale=1 / 255, tile_size=64)
    rgb = models / "waterseg-rgb.pt"
    save_checkpoint(build_checkpoint(model, "unet", kwargs, spec), rgb)
    (models / "waterseg-rgb.pt.sha256").write_text(f"{sha256_of(rgb)}  {rgb.name}\n")
    monkeypatch.setattr(paths, "MODELS_DIR", models)
    return models


def _rgb(count=3, dtype="uint8", colours=(), names=()):
    return RasterBands(count, tuple(names), tuple(colours), dtype)


def test_rgb_model_for_true_colour_rasters(with_rgb_model):
    cases = [
        _rgb(),  # 8-bit, 3 bands, nothing named
        _rgb(dtype="uint16", colours=("red", "green", "blue")),
        _rgb(count=4, colours=("red", "green", "blue", "alpha")),
        _rgb(dtype="float32", names=("red", "green", "blue")),
    ]
    for raster in cases:
        plan = make_plan(raster)
        assert plan.model.key == "rgb", raster
        assert plan.mapping.indexes == [1, 2, 3], raster
    assert make_plan(_rgb(names=("blue", "green", "red"))).mapping.indexes == [3, 2, 1]
    # a 4-band raster with names is not an RGB image: the rgbn model, as before
    assert make_plan(_rgb(count=4, names=("B2", "B3", "B4", "B8"))).model.key == "rgbn"
    with pytest.raises(UserError, match="cannot tell which"):
        make_plan(_rgb(dtype="uint16"))  # 3 unnamed 16-bit bands: not a guess


def test_without_the_rgb_file_a_3_band_raster_gets_the_clear_error(with_rgb_model):
    (with_rgb_model / "waterseg-rgb.pt").unlink()
    with pytest.raises(UserError, match="has 3 band.*needs 4.*missing B8"):
        choose_bundled_model([_rgb()])
    # an RGBA image without the RGB model: band 4 read as B8, said loudly
    plan = make_plan(_rgb(count=4, colours=("red", "green", "blue", "alpha")))
    assert plan.model.key == "rgbn" and "colour interpretation" in plan.mapping.note


def test_segment_runs_the_rgb_model_on_an_8_bit_image(with_rgb_model, tmp_path, capsys):
    from backend.cli import main

    image = (np.arange(3 * 40 * 50) % 251).reshape(3, 40, 50).astype(np.uint8)
    raster = write_raster(tmp_path / "photo.tif", image, crs=UTM33)
    argv = ["segment", str(raster), "--out-dir", str(tmp_path / "out"), "--progress", "text"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Using the bundled 3-band model (red green blue)" in err
    assert "bands [1, 2, 3] (colour-interpretation)" in err
    assert (tmp_path / "out" / "photo_water.tif").is_file()
    shutil.rmtree(tmp_path / "out")


def test_auto_picks_the_pretrained_encoder_rgb_model_for_true_colour(tmp_path, monkeypatch):
    """RGB v2 (lite0_unet, inputs (x - 127) / 128) bundled as waterseg-rgb.pt: --method auto
    on an 8-bit true-colour raster runs it, and segment writes a mask with it."""
    from backend.cli import main
    from backend.segment.plan import resolve_method

    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    kwargs = {"width": 0.125, "in_channels": 3}
    spec = InputSpec(["red", "green", "blue"], 1 / 255, 0.0, [127 / 255] * 3, [128 / 255] * 3, 64)
    rgb = models / "waterseg-rgb.pt"
    model = create_model("lite0_unet", **kwargs)
    save_checkpoint(build_checkpoint(model, "lite0_unet", kwargs, spec), rgb)
    (models / "waterseg-rgb.pt.sha256").write_text(f"{sha256_of(rgb)}  {rgb.name}\n")
    monkeypatch.setattr(paths, "MODELS_DIR", models)
    raster = _rgb(colours=("red", "green", "blue"))
    assert resolve_method("auto", [raster])[0] == "model"
    plan = make_plan(raster)
    assert plan.model.key == "rgb" and plan.model.file == str(rgb)
    image = (np.arange(3 * 64 * 70) % 251).reshape(3, 64, 70).astype(np.uint8)
    photo = write_raster(tmp_path / "photo.tif", image, crs=UTM33)
    assert (
        main(["segment", str(photo), "--out-dir", str(tmp_path / "out"), "--progress", "none"]) == 0
    )
    assert (tmp_path / "out" / "photo_water.tif").is_file()


def test_band_order_from_the_file_name():
    from backend.segment.bands import bands_in_file_name

    assert bands_in_file_name("/x/S2B_L2A_20190620_S1_B2B3B4.jpg", 3) == ("B2", "B3", "B4")
    assert bands_in_file_name("tile-B04B03B02.tif", 3) == ("B4", "B3", "B2")
    assert bands_in_file_name("t_B2B3B4B8.tif", 4) == ("B2", "B3", "B4", "B8")
    assert bands_in_file_name("t_B2B3B4B8.tif", 3) == ()  # the count must match
    assert bands_in_file_name("mosaic_2023.tif", 3) == ()
    assert bands_in_file_name("t_B2B2B4.tif", 3) == ()  # a band twice is no listing
    assert bands_in_file_name("t_B2B3B14.tif", 3) == ()  # no Sentinel-2 band 14


def test_a_true_colour_jpeg_named_b2b3b4_feeds_red_from_band_3(tmp_path):
    """ESW-style renders store B2, B3, B4 (blue first) in a JPEG whose colour interpretation
    says red, green, blue: the file name decides, and the log says so."""
    import rasterio

    if not (paths.MODELS_DIR / "waterseg-rgb.pt").is_file():
        pytest.skip("bundled waterseg-rgb.pt not installed")
    rgb = np.zeros((3, 64, 64), np.uint8)
    rgb[0], rgb[1], rgb[2] = 200, 120, 40  # B2 blue, B3 green, B4 red
    jpeg = tmp_path / "scene_S1_B2B3B4.jpg"
    with rasterio.open(jpeg, "w", driver="JPEG", width=64, height=64, count=3, dtype="uint8") as ds:
        ds.write(rgb)
    plan = json.loads(run_backend("plan", jpeg, "--json").stdout)
    assert plan["bands"] == [3, 2, 1] and plan["band_rule"] == "file-name"
    assert plan["model"]["key"] == "rgb"
    assert any("file name lists its bands as B2 B3 B4" in w for w in plan["warnings"])
    # a GeoTIFF's own band descriptions beat its file name
    named = write_raster(
        tmp_path / "other_B2B3B4B8.tif",
        water_scene(np.zeros((32, 32), bool)),
        descriptions=["B8", "B4", "B3", "B2"],
    )
    plan = json.loads(run_backend("plan", named, *MODEL_METHOD, "--json").stdout)
    assert plan["band_rule"] == "descriptions" and plan["bands"] == [4, 3, 2, 1]
