"""SegmentRequest arguments and the band-mapping rule (pure Python, worked out by hand)."""

import pytest

from plugin.request import SegmentRequest, guess_band_mapping, parse_bands

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
