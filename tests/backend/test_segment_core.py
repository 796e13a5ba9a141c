"""Tiling, blending and streaming inference on arrays with hand-made models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import Cancelled, UserError
from backend.segment.blending import StripAccumulator, discard_margin, tile_weight, window_1d
from backend.segment.inference import TilePredictor, choose_device
from backend.segment.pipeline import ArrayReader, iter_probability_rows, predict_array
from backend.segment.tiling import TileGrid, check_overlap, tile_origins

from .rasters import ConstantModel, ConvModel, NirThresholdModel


def test_tile_origins_cover_with_overlap():
    assert tile_origins(600, 256, 0.25) == [0, 192, 344]
    assert tile_origins(256, 256, 0.25) == [0]
    assert tile_origins(100, 256, 0.25) == [0]
    assert tile_origins(257, 256, 0.25) == [0, 1]
    for length in (300, 511, 1000, 10980):
        starts = tile_origins(length, 256, 0.25)
        assert starts[-1] + 256 == length
        gaps = np.diff(starts)
        assert (gaps <= 192).all()  # neighbours overlap by at least 64 px = 25 %
    assert TileGrid(600, 500, 256, 0.25).count == 3 * 3


def test_overlap_below_a_quarter_is_refused():
    assert check_overlap(0.25) == 0.25
    with pytest.raises(UserError, match="overlap"):
        check_overlap(0.1)


def test_weight_window_positive_at_raster_border_zero_at_interior_edges():
    w = window_1d(256, 0.25, True, False)
    assert w[0] == 1.0 and w[:100].min() == 1.0  # raster border side: flat, > 0
    m = discard_margin(256, 0.25)
    assert m == 16
    assert (w[-m:] == 0).all() and w[-m - 1] > 0  # interior side: tile edge dropped
    assert np.all(np.diff(w[128:]) <= 0)  # monotone ramp down
    w2 = tile_weight(256, 0.25, True, True, True, True)
    assert w2.min() == 1.0  # a single tile covering the raster: all ones
    # Every pixel of two neighbouring tiles (stride 192) has positive total weight.
    a, b = window_1d(256, 0.25, True, False), window_1d(256, 0.25, False, True)
    total = np.zeros(448)
    total[:256] += a
    total[192:] += b
    assert total.min() > 0


def test_accumulator_blends_weighted_mean_and_shifts():
    acc = StripAccumulator(4, 3)
    acc.add(np.full((4, 3), 0.2, np.float32), np.full((4, 3), 1.0, np.float32), 0, 0)
    acc.add(np.full((2, 3), 0.8, np.float32), np.full((2, 3), 3.0, np.float32), 2, 0)
    first = acc.emit(2)
    np.testing.assert_allclose(first, 0.2)
    assert acc.row0 == 2
    second = acc.emit(2)
    np.testing.assert_allclose(second, (0.2 * 1 + 0.8 * 3) / 4)
    assert np.isnan(acc.emit(2)).all()  # nothing added there: NaN, not 0


def test_constant_model_gives_seamless_constant_mosaic():
    x = np.random.default_rng(0).random((4, 600, 500)).astype(np.float32)
    prob = predict_array(x, ConstantModel(0.3), tile=128, overlap=0.25)
    expected = 1 / (1 + np.exp(-0.3))
    assert prob.shape == (600, 500)
    np.testing.assert_allclose(prob, expected, rtol=1e-6)


def test_translation_equivariant_model_same_with_and_without_tiling():
    """A 3x3 conv (receptive field radius 1): tiled + blended == one big forward pass."""
    torch.manual_seed(0)
    model = ConvModel(4, seed=3)
    x = np.random.default_rng(1).normal(size=(4, 600, 500)).astype(np.float32)
    tiled = predict_array(x, model, tile=128, overlap=0.25, batch_size=3)
    with torch.inference_mode():
        whole = torch.softmax(model(torch.from_numpy(x)[None]), 1)[0, 1].numpy()
    r = 2  # beyond the receptive field of the raster border
    np.testing.assert_allclose(tiled[r:-r, r:-r], whole[r:-r, r:-r], atol=2e-5)
    # At the raster border both see the same zero padding, so the whole raster agrees too:
    assert np.abs(tiled - whole).max() < 2e-5


def test_raster_smaller_than_a_tile_is_padded_and_cropped():
    water = np.zeros((4, 37, 50), np.float32)
    water[3] = 0.3
    water[3, :, :20] = 0.02  # left part water (B8 reflectance 0.02)
    prob = predict_array(water, NirThresholdModel(), tile=64)
    assert prob.shape == (37, 50)
    assert (prob[:, :20] > 0.9).all() and (prob[:, 20:] < 0.1).all()


def test_nodata_pixels_are_nan_and_empty_tiles_skipped():
    x = np.full((4, 300, 300), 0.3, np.float32)
    valid = np.ones((300, 300), bool)
    valid[:, :150] = False  # left half nodata: the tiles there hold no valid pixel
    x[:, 10, 200] = np.nan  # a NaN pixel is nodata too
    calls = []

    class Counting(TilePredictor):
        def __call__(self, tiles):
            calls.append(tiles.shape[0])
            return super().__call__(tiles)

    pred = Counting(NirThresholdModel(), "cpu", batch_size=64)
    blocks = list(
        iter_probability_rows(
            ArrayReader(x, valid), pred, lambda r: r.astype(np.float32), tile=64, overlap=0.25
        )
    )
    prob = np.concatenate([b.prob for b in blocks])
    assert prob.shape == (300, 300)
    assert np.isnan(prob[:, :150]).all()
    assert np.isnan(prob[10, 200])
    assert (prob[:, 151:][~np.isnan(prob[:, 151:])] < 0.1).all()
    grid = TileGrid(300, 300, 64, 0.25)
    skipped = sum(1 for x0 in grid.xs if x0 + 64 <= 150) * len(grid.ys)
    assert sum(calls) == grid.count - skipped
    assert skipped > 0


def test_streaming_rows_arrive_in_order_and_cover_the_raster_once():
    x = np.random.default_rng(2).random((4, 333, 70)).astype(np.float32)
    rows = [
        (b.row0, b.prob.shape[0])
        for b in iter_probability_rows(
            ArrayReader(x), TilePredictor(ConstantModel(), "cpu"), lambda r: r, tile=64
        )
    ]
    starts = [r for r, _ in rows]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(h for _, h in rows) == 333
    assert all(h <= 64 for _, h in rows)  # never more than one tile row held


def test_cancel_stops_between_batches():
    x = np.zeros((4, 256, 256), np.float32)
    it = iter_probability_rows(
        ArrayReader(x),
        TilePredictor(ConstantModel(), "cpu", 1),
        lambda r: r,
        tile=64,
        cancelled=lambda: True,
    )
    with pytest.raises(Cancelled):
        next(it)


def test_predictor_handles_tuple_outputs_single_logit_and_size_multiple():
    class TwoHeads(torch.nn.Module):
        size_multiple = 16

        def forward(self, x):
            assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0
            seg = torch.zeros(x.shape[0], 2, *x.shape[2:])
            seg[:, 1] = 2.0
            return seg, torch.zeros_like(seg)

    class OneLogit(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1, *x.shape[2:]), -1.0)

    tiles = np.zeros((3, 4, 20, 30), np.float32)
    p = TilePredictor(TwoHeads(), "cpu", 2)(tiles)
    assert p.shape == (3, 20, 30)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    np.testing.assert_allclose(TilePredictor(OneLogit())(tiles), 1 / (1 + np.exp(1.0)), rtol=1e-6)


def test_device_choice():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            choose_device("cuda")
    with pytest.raises(UserError):
        choose_device("tpu")
