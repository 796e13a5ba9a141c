"""SegmentRequest arguments, the band-mapping rule and the automatic choice between the
bundled models (pure Python, worked out by hand; one check against the shipped checkpoints)."""

import json
import subprocess

import pytest

from plugin.request import (
    BUNDLED_MODELS,
    S2_L2A_ORDER,
    SegmentRequest,
    choose_bundled_model,
    explain_bundled_choice,
    guess_band_mapping,
    layer_sentinel2_bands,
    parse_bands,
)

from .conftest import REPO

S2_BANDS = ["B2", "B3", "B4", "B8"]


def test_mapping_by_band_description():
    # the demo scene's 16 bands: B1..B12 with B8A and B10, then QA bands
    names = [
        "B1",
        "B2",
        "B3",
        "B4",
        "B5",
        "B6",
        "B7",
        "B8",
        "B8A",
        "B9",
        "B10",
        "B11",
        "B12",
        "QA10",
        "QA20",
        "QA60",
    ]
    assert guess_band_mapping(S2_BANDS, names) == [2, 3, 4, 8]


def test_mapping_accepts_zero_padded_and_verbose_names():
    names = ["Band 1: B08", "B02 blue", "b03", "B04"]
    assert guess_band_mapping(S2_BANDS, names) == [2, 3, 4, 1]
    assert guess_band_mapping(["B8A"], ["B8", "B8A"]) == [2]


def test_mapping_without_names_uses_order_or_sentinel2_layout():
    assert guess_band_mapping(S2_BANDS, ["Band 1", "Band 2", "Band 3", "Band 4"]) == [1, 2, 3, 4]
    assert guess_band_mapping(S2_BANDS, [""] * 13) == [2, 3, 4, 8]  # L1C stack
    assert guess_band_mapping(S2_BANDS, [""] * 12) == [2, 3, 4, 8]  # L2A stack (no B10)
    assert guess_band_mapping(["B2", "B11"], [""] * 12) == [2, 11]
    assert guess_band_mapping(["B2", "B11"], [""] * 13) == [2, 12]
    # fewer bands than the model: best effort, never beyond the band count
    assert guess_band_mapping(S2_BANDS, ["Gray"]) == [1, 1, 1, 1]


def test_parse_bands():
    assert parse_bands("2,3,4,8") == [2, 3, 4, 8]
    assert parse_bands(" 2 3;4 , 8 ") == [2, 3, 4, 8]
    assert parse_bands("") == []
    with pytest.raises(ValueError, match="band numbers"):
        parse_bands("B2,B3")
    with pytest.raises(ValueError, match="start at 1"):
        parse_bands("0,1")


def test_backend_args_follow_the_segment_contract(tmp_path):
    req = SegmentRequest(
        layer_id="x",
        layer_name="scene",
        input_path="/data/s2 scene.tif",
        out_dir=str(tmp_path),
        bands=[2, 3, 4, 8],
        model_path="/m/a.pt",
        device="cpu",
        overlap=0.5,
        threshold=0.4,
        min_length=30,
        smooth=2,
    )
    args = req.backend_args()
    assert args[:2] == ["segment", "/data/s2 scene.tif"]
    pairs = dict(zip(args[2::1], args[3::1], strict=False))
    assert pairs["--out-dir"] == str(tmp_path)
    assert pairs["--bands"] == "2,3,4,8"
    assert pairs["--device"] == "cpu"
    assert pairs["--overlap"] == "0.5"
    assert pairs["--threshold"] == "0.4"
    assert pairs["--min-length"] == "30"
    assert pairs["--smooth"] == "2"
    assert pairs["--progress"] == "json"
    assert pairs["--model"] == "/m/a.pt"
    assert "--overwrite" in args
    assert req.expected_outputs() == {
        "mask": tmp_path / "s2 scene_water.tif",
        "shoreline_gpkg": tmp_path / "s2 scene_shoreline.gpkg",
    }
    # bundled model and name-based band mapping: no --model, no --bands
    bare = SegmentRequest(layer_id="x", layer_name="s", input_path="a.tif", out_dir="o", bands=[])
    assert "--model" not in bare.backend_args() and "--bands" not in bare.backend_args()


SWIR_MODEL = list(BUNDLED_MODELS["default"].bands)
NAMES_16 = [f"B{i}" for i in range(1, 9)] + ["B8A", "B9", "B10", "B11", "B12"]
NAMES_16 += ["QA10", "QA20", "QA60"]


@pytest.mark.parametrize(
    "names,choice",
    [
        (["B2", "B3", "B4", "B8"], "rgbn"),
        (["Band 1", "Band 2", "Band 3", "Band 4"], "rgbn"),  # QGIS's generated names
        (["B2", "B3", "B4", "B8", "B11", "B12"], "default"),
        (["B08", "B02 blue", "b03", "B04", "B12 swir2", "Band 6: B11"], "default"),
        (["B2", "B3", "B4", "B8", "B11"], "rgbn"),  # B12 missing
        (NAMES_16, "default"),  # the demo scene's stack with QA bands
        ([""] * 13, "default"),  # unnamed L1C stack
        ([""] * 12, "default"),  # unnamed L2A stack
        (["Band 1"] * 12, "default"),
        ([""] * 6, "rgbn"),  # 6 unnamed bands: no layout says which they are
        ([""] * 3, "rgbn"),
        ([], "rgbn"),
    ],
)
def test_choose_bundled_model(names, choice):
    assert choose_bundled_model(names) == choice


def test_named_bands_win_over_the_band_count():
    # 12 bands, but their names say B11/B12 are not among them
    names = [f"B{i}" for i in range(1, 9)] + ["B8A", "B9", "QA10", "QA20"]
    assert layer_sentinel2_bands(names) == {f"B{i}" for i in range(1, 10)} | {"B8A"}
    assert choose_bundled_model(names) == "rgbn"
    assert layer_sentinel2_bands([""] * 12) == set(S2_L2A_ORDER)
    assert layer_sentinel2_bands([""] * 5) == set()


def test_chosen_model_bands_map_onto_the_layer():
    # what the dock shows after the automatic choice (band numbers worked out by hand)
    assert guess_band_mapping(SWIR_MODEL, [""] * 12) == [2, 3, 4, 8, 11, 12]
    assert guess_band_mapping(SWIR_MODEL, [""] * 13) == [2, 3, 4, 8, 12, 13]
    assert guess_band_mapping(SWIR_MODEL, NAMES_16) == [2, 3, 4, 8, 12, 13]
    shuffled = ["B8", "B2", "B3", "B4", "B12", "B11"]
    assert guess_band_mapping(SWIR_MODEL, shuffled) == [2, 3, 4, 1, 6, 5]
    assert list(BUNDLED_MODELS["rgbn"].bands) == S2_BANDS


def test_explain_bundled_choice_is_one_line_with_the_reason():
    assert explain_bundled_choice(["B2", "B3", "B4", "B8"]) == (
        "Using the bundled 4-band model (B2 B3 B4 B8): the layer has no B11/B12 bands"
    )
    assert explain_bundled_choice(["B2", "B3", "B4", "B8", "B12"]).endswith("has no B11 band")
    assert explain_bundled_choice(["B2", "B3", "B4", "B8", "B11", "B12"]) == (
        "Using the bundled 6-band model (B2 B3 B4 B8 B11 B12): the layer has B11 and B12"
    )
    assert explain_bundled_choice([""] * 13).endswith(
        "13 unnamed bands read as a Sentinel-2 stack with B11 and B12"
    )
    assert "once you pick a raster layer" in explain_bundled_choice([])


@pytest.mark.parametrize("key", sorted(BUNDLED_MODELS))
def test_bundled_model_bands_match_the_checkpoints(key, backend_python):
    """The bands the plugin knows statically are those the shipped checkpoint reads."""
    path = REPO / "resources" / "models" / BUNDLED_MODELS[key].file
    if not path.is_file():
        pytest.skip(f"{path.name} is not installed")
    done = subprocess.run(
        [backend_python, "-m", "backend", "model-info", str(path), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert json.loads(done.stdout)["bands"] == list(BUNDLED_MODELS[key].bands)
