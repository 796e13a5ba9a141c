"""scripts/peers.py: scoring, the results table and CoastSat's features, on tiny hand-made
arrays (no scratch venv, no peers installed; `make peers` runs the real thing)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "peers.py"
_SPEC = importlib.util.spec_from_file_location("peers", _PATH)
peers = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(peers)


def test_score_by_hand():
    # truth 1 1 0 0 / pred 1 0 0 0: water IoU 1 / 2, land IoU 2 / 3, mean 7 / 12
    s = peers.score(np.array([[1, 0, 0, 0]]), np.array([[1, 1, 0, 0]]))
    assert s["iou_water"] == pytest.approx(0.5)
    assert s["iou_land"] == pytest.approx(2 / 3)
    assert s["iou_mean"] == pytest.approx(7 / 12)


def test_table_shows_scores_mean_and_why_a_peer_failed():
    per = {
        "a": {"iou_water": 0.5, "iou_land": 1.0, "iou_mean": 0.75},
        "b": {"iou_water": 1.0, "iou_land": 0.5, "iou_mean": 0.5},
    }
    ok = peers.method_row("NDWI > 0", per)
    assert ok["mean"]["iou_mean"] == pytest.approx(0.625)
    failed = peers.method_row("coastsat", None, error="Traceback ...\nImportError: no joblib")
    table = peers.markdown_table([ok, failed], ["a", "b"])
    lines = table.splitlines()
    assert lines[0] == "| method | a | b | mean |"
    assert lines[2] == "| NDWI > 0 | 75.00 | 50.00 | **62.50** |"
    assert lines[3].startswith("| coastsat | not run: ImportError: no joblib |")


def test_coastsat_features_by_hand():
    # 3 x 3 image, bands B G R NIR SWIR; the centre's 3 x 3 window of band 0 holds 0..8:
    # std = sqrt(mean(x^2) - mean^2) = sqrt(204 / 9 - 16) = sqrt(60 / 9)
    im = np.ones((3, 3, 5))
    im[:, :, 0] = np.arange(9.0).reshape(3, 3)
    im[:, :, 1] = 0.3  # G
    im[:, :, 3] = 0.1  # NIR
    f = peers.coastsat_features(im)
    assert f.shape == (9, 20)
    centre = f[4]
    assert centre[0] == 4.0
    assert centre[5] == pytest.approx(-0.5)  # ND(NIR, G) = (0.1 - 0.3) / 0.4
    assert centre[10] == pytest.approx(math.sqrt(60 / 9))
    # G is constant: variance ~ 0, rounding may make it negative and the std NaN (CoastSat
    # then sets it to 1e-9, as the worker does)
    assert np.nan_to_num(centre[11]) == pytest.approx(0.0, abs=1e-6)


def test_remove_small_keeps_objects_of_min_size_8_connected():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = True  # 1 px: removed
    mask[2:4, 1:6] = True  # 10 px: kept
    mask[4, 0] = True  # diagonal neighbour of the block: joins it (8-connected)
    out = peers._remove_small(mask, 10)
    assert not out[0, 0] and out[2:4, 1:6].all() and out[4, 0]
