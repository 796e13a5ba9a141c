"""The engine benchmark's core on a tiny model: int8 quantisation, the comparison figures and
the interleaved timing (issue 14, item 3)."""

import warnings

import numpy as np
import pytest
import torch

from backend.models import SpectralOptions, create_model
from backend.segment.inference import TilePredictor
from benchmarks.bench_engines import compare, quantize_int8, time_engines, verdict, water_iou

TILE = 64


def _tiles(n: int, seed: int) -> np.ndarray:
    """Reflectance-like tiles (n, 4, 64, 64): smooth fields, water where band 3 is dark."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE] / TILE
    out = np.empty((n, 4, TILE, TILE), np.float32)
    for i in range(n):
        water = np.sin(6 * xx + rng.uniform(0, 6)) + np.cos(5 * yy + rng.uniform(0, 6)) > 0.3
        for b, (wet, dry) in enumerate([(0.09, 0.07), (0.08, 0.09), (0.05, 0.10), (0.03, 0.30)]):
            out[i, b] = np.where(water, wet, dry) + rng.normal(0, 0.01, (TILE, TILE))
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = create_model("unet", width=0.0625, in_channels=4, spectral=SpectralOptions("residual"))
    with torch.no_grad():  # a non-zero index head, so the float part matters too
        model.index_head.weight.normal_(0, 1.0)
    return model.eval()


def test_water_iou_by_hand():
    assert water_iou(np.array([1, 1, 1, 1], bool), np.array([1, 1, 0, 0])) == 0.5
    # 255 (nodata) is ignored: the water pixel matches, nothing else counts
    assert water_iou(np.array([1, 0, 1], bool), np.array([1, 0, 255])) == 1.0


def test_compare_counts_flips_and_iou_change():
    ref = np.array([[0.2, 0.6], [0.7, 0.4]], np.float32)
    prob = np.array([[0.55, 0.6], [0.45, 0.4]], np.float32)  # two pixels cross 0.5
    truth = np.array([[0, 1], [1, 0]])
    out = compare(ref, prob, truth)
    assert out["flips"] == 2 and out["pixels"] == 4
    assert out["max_abs"] == pytest.approx(0.35)
    assert out["iou_ref"] == 1.0 and out["iou"] == pytest.approx(1 / 3)
    assert out["iou_change_points"] == pytest.approx(-200 / 3)


def test_int8_is_close_to_fp32_but_not_identical(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        q = quantize_int8(tiny, _tiles(6, seed=1))
    assert type(q.spectral) is type(tiny.spectral)  # the index layer stays float
    assert any("quantized" in type(m).__module__ for m in q.net.modules())
    tiles = _tiles(4, seed=2)
    fp32 = TilePredictor(tiny, "cpu", 2)
    int8 = TilePredictor(q, "cpu", 2, fuse=False, channels_last=False)
    a, b = fp32(tiles), int8(tiles)
    diff = np.abs(a - b)
    assert 0 < diff.max() < 0.02, diff.max()  # quantised, yet calibrated on similar tiles
    out = compare(a, b)
    assert out["flips"] == int(np.count_nonzero((a > 0.5) != (b > 0.5)))
    assert out["max_abs"] == pytest.approx(float(diff.max()))

    best = time_engines({"torch": fp32, "int8": int8}, tiles, repeats=2)
    assert set(best) == {"torch", "int8"}
    assert all(0 < s < 5 for s in best.values())  # seconds per 64 px tile


def test_verdict_needs_speed_and_neutral_masks():
    def row(model, speed, flips, iou=None):
        acc = {"flips": flips, "max_abs": 0.0, "pixels": 10}
        if iou is not None:
            acc["iou_change_points"] = iou
        return {"model": model, "speedup_vs_torch": {"torch": 1.0, "ort": speed},
                "accuracy": {"scene": {"ort": acc}}}  # fmt: skip

    assert verdict([row("a", 1.2, 0), row("b", 1.3, 3, iou=0.05)])["ort"] == "ship"
    assert verdict([row("a", 1.2, 0), row("b", 1.05, 0)])["ort"].startswith("not shipped: b")
    assert "flip" in verdict([row("a", 1.5, 3)])["ort"]  # flips and no labels: not neutral
    assert "flip" in verdict([row("a", 1.5, 3, iou=-0.2)])["ort"]
