"""Spike and running-median outlier removal: what goes, what stays."""

from __future__ import annotations

import numpy as np

from backend.change.outliers import MEDIAN, SPIKE, median, remove_outliers, spikes


def test_spike_out_and_back_is_removed_a_step_is_not():
    nan = np.nan
    p = np.array(
        [
            [0.0, 1.0, 60.0, 2.0, 3.0],  # spike at index 2
            [0.0, 1.0, 60.0, 61.0, 62.0],  # a step: real change, kept
            [0.0, nan, 70.0, nan, 1.0],  # spike between gaps
            [80.0, 1.0, 2.0, 3.0, 4.0],  # first date off both of its next two
            [0.0, 1.0, 2.0, 3.0, -90.0],  # last date off both of its previous two
        ]
    )
    out = spikes(p, 40.0)
    assert out.tolist() == [
        [False, False, True, False, False],
        [False] * 5,
        [False, False, True, False, False],
        [True, False, False, False, False],
        [False, False, False, False, True],
    ]
    assert not spikes(p, 0).any()  # off


def test_median_filter_uses_valid_neighbours_only():
    p = np.array([[0.0, np.nan, 1.0, 2.0, 25.0, 3.0, np.nan, 4.0]])
    out = median(p, 5, 10.0)
    assert out.tolist() == [[False, False, False, False, True, False, False, False]]
    assert not median(p, 0, 10.0).any()


def test_remove_outliers_reports_reasons():
    p = np.array([[0.0, 1.0, 60.0, 2.0, 3.0, 25.0, 4.0, 5.0]])
    clean, reason = remove_outliers(p, 40.0, 5, 10.0)
    assert reason[0, 2] == SPIKE and reason[0, 5] == MEDIAN
    assert np.isnan(clean[0, [2, 5]]).all()
    assert (reason[0, [0, 1, 3, 4, 6, 7]] == 0).all()


def test_a_shift_of_the_whole_shore_is_kept_a_lone_spike_is_not():
    from backend.change.pipeline import common_shift

    rng = np.random.default_rng(0)
    p = rng.normal(0, 2.0, (30, 9))
    p[:, 4] += 60.0  # the lake fell: every transect moved 60 m towards the water on one date
    p[7, 2] += 70.0  # one transect jumped alone
    shift = common_shift(p)
    assert abs(shift[4] - 60.0) < 3.0 and np.abs(np.delete(shift, 4)).max() < 3.0
    _, reason = remove_outliers(p - shift, 40.0, 5, 30.0)
    assert np.argwhere(reason > 0).tolist() == [[7, 2]]
    _, naive = remove_outliers(p, 40.0, 5, 30.0)  # per transect: the real shift is lost
    assert (naive[:, 4] > 0).all()
    assert not common_shift(p[:3]).any()  # too few transects to tell: no shift taken out
