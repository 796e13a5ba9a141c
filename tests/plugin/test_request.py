"""SegmentRequest arguments and outputs, and the bundled-model table of the contract checked
against the shipped checkpoints. (Band mapping and the bundled-model choice are the backend's:
tests/backend/segment/test_plan.py.)"""

import json
import subprocess

import pytest

from plugin.contract import BUNDLED_MODELS
from plugin.request import SegmentRequest, parse_bands

from .conftest import REPO


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
        layer_name="scene",
        input_path="/data/s2 scene.tif",
        out_dir=str(tmp_path),
        bands=[2, 3, 4, 8],
        model_path="/m/a.pt",
        options={"device": "cpu", "overlap": 0.5, "threshold": 0.4, "min-length": 30, "smooth": 2},
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
    assert "--overwrite" not in args  # never replace results silently (issue 11)
    assert req.expected_outputs() == {
        "mask": tmp_path / "s2 scene_water.tif",
        "shoreline_gpkg": tmp_path / "s2 scene_shoreline.gpkg",
    }
    # bundled model and name-based band mapping: no --model, no --bands
    bare = SegmentRequest(layer_name="s", input_path="a.tif", out_dir="o", bands=[])
    assert "--model" not in bare.backend_args() and "--bands" not in bare.backend_args()


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
