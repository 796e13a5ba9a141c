"""Weight windows and the strip accumulator that blends overlapping tiles."""

import numpy as np

from backend.segment.blending import StripAccumulator, discard_margin, tile_weight, window_1d


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
