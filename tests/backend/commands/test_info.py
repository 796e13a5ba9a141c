"""``python -m backend info`` and ``model-info``: the environment and a checkpoint, as JSON
and as text."""

import json
import subprocess

import pytest

from tests.backend.rasters import tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tile=64)


def test_info_and_model_info_json(ckpt, repo_root, backend_python):
    r = subprocess.run(
        [backend_python, "-m", "backend", "info", "--json"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {"python", "python_version", "torch", "cuda_available", "cuda_devices", "device",
            "default_model", "default_model_ok", "waterseg_version"} <= set(info)  # fmt: skip
    assert info["device"] in ("cpu", "cuda")
    r = subprocess.run(
        [backend_python, "-m", "backend", "model-info", str(ckpt), "--json"],
        cwd=repo_root, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    mi = json.loads(r.stdout)
    assert mi["arch"] == "unet" and mi["width"] == 0.125 and mi["tile_size"] == 64
    assert mi["bands"] == ["B2", "B3", "B4", "B8"] and mi["parameters"] > 1000
    assert mi["scale"] == pytest.approx(1e-4)


def test_model_info_text_shows_headline_metrics_only():
    from backend.commands.info import headline_metrics

    metrics = {
        "val": {"iou_mean": 0.95, "f1_water": 0.97, "iou_land": 0.9, "pixels": 10},
        "loo": {"s1": {"model": {"iou_mean": 0.9}, "ndwi": {"iou_mean": 0.8}}},
        "epoch": 3,
    }
    assert headline_metrics(metrics) == [
        ("val.iou_mean", 0.95),
        ("val.f1_water", 0.97),
        ("loo.s1.model.iou_mean", 0.9),
        ("loo.s1.ndwi.iou_mean", 0.8),
    ]
    assert headline_metrics(None) == []
