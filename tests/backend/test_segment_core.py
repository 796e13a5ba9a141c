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


class _EdgeAwareModel:
    """A numpy 'model' whose output depends on where a pixel sits in its tile (a box blur
    with zero padding): a tile placed one pixel off, or blended with the wrong weight, changes
    the mosaic. Deterministic per tile, whatever the batch."""

    batch_size = 3

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        m = tiles.mean(axis=1)
        padded = np.pad(m, ((0, 0), (2, 2), (2, 2)))
        t = m.shape[-1]
        blur = sum(padded[:, i : i + t, j : j + t] for i in range(5) for j in range(5)) / 25
        return (1 / (1 + np.exp(-blur))).astype(np.float32)


def _whole_array_blend(x, valid, model, tile, overlap):
    """The mosaic by its definition: every tile (nodata filled with the tile's own valid band
    means) predicted, weighted and summed into full-size arrays, row by row, left to right."""
    from backend.segment.pipeline import _fill_invalid

    h, w = x.shape[1:]
    grid = TileGrid(h, w, tile, overlap)
    acc = np.zeros((h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for y in grid.ys:
        todo = []
        for x0 in grid.xs:
            v = valid[y : y + tile, x0 : x0 + tile]
            if v.any():
                t = x[:, y : y + tile, x0 : x0 + tile].copy()
                _fill_invalid(t, v)
                todo.append((x0, t))
        for b in range(0, len(todo), model.batch_size):
            chunk = todo[b : b + model.batch_size]
            for (x0, _), p in zip(chunk, model(np.stack([t for _, t in chunk])), strict=True):
                wt = tile_weight(tile, overlap, y == 0, y + tile >= h, x0 == 0, x0 + tile >= w)
                acc[y : y + tile, x0 : x0 + tile] += wt * p
                wsum[y : y + tile, x0 : x0 + tile] += wt
    out = np.full((h, w), np.nan, np.float32)
    np.divide(acc, wsum, out=out, where=wsum > 0)
    out[~valid] = np.nan
    return out


@pytest.mark.parametrize("block_tiles", [1, 2, 3, 8, 1000])
def test_blocks_of_tiles_blend_bit_for_bit_like_the_whole_array(monkeypatch, block_tiles):
    # Issue 14: reading in blocks of tiles (memory flat in the raster width) must not change a
    # single bit of the mosaic, whatever the block width, with and without nodata.
    import backend.segment.pipeline as pipeline

    monkeypatch.setattr(pipeline, "BLOCK_TILES", block_tiles)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 230, 410)).astype(np.float32)
    x += np.linspace(-3, 3, 410, dtype=np.float32)
    valid = np.ones((230, 410), bool)
    valid[:, :70] = False  # a nodata border: whole tiles skipped, others partly filled
    valid[150:, 300:] = False
    model = _EdgeAwareModel()
    want = _whole_array_blend(x, valid, model, 64, 0.25)
    got = np.concatenate(
        [
            b.prob
            for b in iter_probability_rows(
                ArrayReader(x, valid), model, lambda r: r.astype(np.float32), tile=64
            )
        ]
    )
    np.testing.assert_array_equal(got, want)  # bit for bit, NaN where nodata
    assert np.isfinite(got[valid]).all()


def test_read_blocks_cover_each_tile_once_and_share_only_the_overlap():
    from backend.segment.pipeline import BLOCK_TILES, read_blocks

    xs = tile_origins(10980, 256, 0.25)
    blocks = read_blocks(xs, 256, 10980)
    assert [x for _, _, group in blocks for x in group] == xs
    assert all(len(group) <= BLOCK_TILES for _, _, group in blocks)
    assert blocks[0][0] == 0 and blocks[-1][1] == 10980
    for (c0, c1, group), (n0, _, _) in zip(blocks, blocks[1:], strict=False):
        assert c1 == group[-1] + 256 and c0 == group[0]
        assert 0 < c1 - n0 <= 256  # the next block starts inside this one's last tile
    assert max(c1 - c0 for c0, c1, _ in blocks) <= BLOCK_TILES * 256
