"""Transect casting and positions on shorelines built to move at known rates: curved coast,
closed lake, both banks of a river, a wiggly baseline; vectorised crossings; the rules for
several crossings."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from backend.change.outliers import remove_outliers
from backend.change.positions import CrossingFinder, choose, unseen
from backend.change.rates import change_statistics
from backend.change.transects import Transects, cast_transects, transects_from_lines


def circle(r: float, n: int = 720, c=(0.0, 0.0), closed: bool = True) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=not closed)
    xy = np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], axis=1)
    return np.vstack([xy, xy[:1]]) if closed else xy


def no_crossings(t: Transects) -> bool:
    g = t.geometries()
    pairs = shapely.STRtree(g).query(g, predicate="intersects")
    return bool((pairs[0] == pairs[1]).all())


def positions(t: Transects, shorelines: list[list[np.ndarray]], rule="nearest") -> np.ndarray:
    finder = CrossingFinder(t)
    out = np.full((len(t), len(shorelines)), np.nan)
    for j, lines in enumerate(shorelines):
        tr, d = finder.crossings(lines)
        out[:, j], _ = choose(tr, d, len(t), rule)
    return out


def test_closed_lake_shrinking_at_a_known_rate():
    R, rate = 1000.0, 4.0  # the lake's radius shrinks 4 m/yr: the shore moves to the water
    lake = lambda xy: (np.hypot(*xy.T) < R).astype(np.float32)  # noqa: E731
    t = cast_transects([circle(R)], spacing=50.0, length=200.0, water_share=lake)
    assert len(t) == int(2 * np.pi * R / 50.0)
    assert no_crossings(t)
    # oriented land -> water: the water end is nearer the centre; numbered along the ring
    assert (np.hypot(*t.end.T) < np.hypot(*t.origin.T)).all()
    assert t.transect_id.tolist() == list(range(1, len(t) + 1))
    years = np.array([2016.0, 2017.0, 2018.5, 2019.0, 2021.0, 2022.0])
    shores = [[circle(R - rate * (y - 2016.0), 4000)] for y in years]
    p = positions(t, shores)
    # a 4000-gon is within 0.31 m of its circle: positions exact to that
    assert np.allclose(p, rate * (years - 2016.0)[None, :], atol=0.35)
    s = change_statistics(p, years, 10.0)
    assert np.allclose(s["nsm"], rate * 6.0, atol=0.7)
    assert np.allclose(s["epr"], rate, atol=0.12)
    assert np.allclose(s["lrr"], rate, atol=0.12)


def test_curved_coast_with_noise_gaps_and_an_outlier_date():
    rng = np.random.default_rng(3)
    R = 2000.0  # a bay: water outside an arc of a circle, land inside
    arc = circle(R, 400, closed=False)[:100]  # a quarter circle
    sea = lambda xy: (np.hypot(*xy.T) > R).astype(np.float32)  # noqa: E731
    t = cast_transects([arc], spacing=40.0, length=300.0, water_share=sea)
    assert no_crossings(t)
    assert (np.hypot(*t.end.T) > np.hypot(*t.origin.T)).all()
    years = 2016.0 + np.arange(20) * 0.3
    rate = -3.0  # erosion: the shore moves inland
    shores = []
    for k, y in enumerate(years):
        r = R + rate * (y - 2016.0) + rng.normal(0, 2.0)
        if k == 7:
            r += 80.0  # one outlier date: 80 m towards the water
        line = circle(r, 6000, closed=False)[:1500]
        if k == 3:
            line = line[: len(line) // 2]  # a gap: half of the coast is missing on one date
        shores.append([line])
    p = positions(t, shores)
    assert np.isnan(p[:, 3]).sum() > 0 and np.isfinite(p[:, 3]).sum() > 0
    clean, reason = remove_outliers(p, 40.0, 5, 30.0)
    assert (reason[:, 7] > 0).all() and (reason[:, np.arange(20) != 7] == 0).all()
    s = change_statistics(clean, years, 2.0)
    assert (np.abs(s["lrr"] - rate) <= s["lrr_ci95"]).mean() > 0.9
    assert np.allclose(np.nanmedian(s["lrr"]), rate, atol=0.5)


def test_both_banks_of_a_river_face_the_water():
    x = np.linspace(0, 3000, 601)
    centre = 150 * np.sin(x / 500.0)
    half = lambda yrs: 60.0 + 2.0 * yrs  # noqa: E731 - widening 2 m/yr on each bank
    north, south = np.stack([x, centre + 60], 1), np.stack([x, centre - 60], 1)

    def river(xy):
        c = 150 * np.sin(xy[:, 0] / 500.0)
        return (np.abs(xy[:, 1] - c) < 60).astype(np.float32)

    t = cast_transects([north, south[::-1]], spacing=50.0, length=100.0, water_share=river)
    assert no_crossings(t)
    assert set(t.baseline_id.tolist()) == {1, 2}
    mid_water = river(t.end) == 1
    assert mid_water.all()  # every transect ends in the river
    years = np.array([2016.0, 2018.0, 2020.0, 2022.0])
    shores = [
        [np.stack([x, centre + half(y - 2016)], 1), np.stack([x, centre - half(y - 2016)], 1)]
        for y in years
    ]
    p = positions(t, shores)
    s = change_statistics(p, years, 10.0)
    # the banks move away from the water: negative, about -2 m/yr measured along the
    # (slanted) transects: within 25 % where the river bends
    assert (s["lrr"] < 0).all()
    assert np.nanmedian(s["lrr"]) == pytest.approx(-2.0, rel=0.25)


def test_wiggly_baseline_gives_no_crossing_transects():
    x = np.linspace(0, 2000, 4001)
    wiggly = np.stack([x, 40 * np.sin(x / 30.0) + 15 * np.sin(x / 7.0)], axis=1)
    t = cast_transects([wiggly], spacing=20.0, length=400.0)
    stations = int(shapely.linestrings(wiggly).length // 20.0) + 1  # along the wiggles
    assert len(t) + t.dropped == stations
    assert no_crossings(t)
    assert t.dropped <= 0.02 * stations  # chords widened first; the rest dropped


def test_crossing_rules_and_missing():
    t = transects_from_lines(
        [np.array([[0.0, -100.0], [0.0, 100.0]])], baseline=[np.array([[-50.0, 0.0], [50.0, 0.0]])]
    )
    assert t.baseline_offset[0] == pytest.approx(100.0)
    lines = [np.array([[-10.0, y], [10.0, y]]) for y in (-30.0, 10.0, 60.0)]
    tr, d = CrossingFinder(t).crossings(lines)
    assert sorted(d.tolist()) == pytest.approx([-30.0, 10.0, 60.0])
    for rule, want in (("nearest", 10.0), ("seaward", 60.0), ("landward", -30.0)):
        pos, count = choose(tr, d, 1, rule)
        assert pos[0] == pytest.approx(want) and count[0] == 3
    assert np.isnan(choose(tr, d, 1, "none")[0][0])
    assert np.isnan(choose(np.empty(0, np.int64), np.empty(0), 1)[0][0])  # no crossing: NaN


def test_nodata_on_a_transect_makes_it_unseen():
    from affine import Affine

    t = transects_from_lines(
        [np.array([[5.0, -95.0], [5.0, -5.0]]), np.array([[55.0, -95.0], [55.0, -5.0]])]
    )
    mask = np.zeros((10, 10), np.uint8)
    mask[3, 5] = 255  # a cloud pixel under the second transect (x 50..60, y -30..-40)
    assert unseen(t, mask, Affine(10, 0, 0, 0, -10, 0), 5.0).tolist() == [False, True]
    off = transects_from_lines([np.array([[5.0, -95.0], [5.0, 50.0]])])  # leaves the raster
    assert unseen(off, mask, Affine(10, 0, 0, 0, -10, 0), 5.0).tolist() == [True]


def test_thousand_transects_by_hundred_dates_is_fast():
    import time

    R = 5000.0
    ring = circle(R, 20000)
    t = cast_transects([ring], spacing=shapely.linestrings(ring).length / 1000, length=300.0)
    assert len(t) == 1000
    shores = [[circle(R - k, 5000)] for k in range(100)]
    t0 = time.perf_counter()
    p = positions(t, shores)
    change_statistics(p, 2016 + np.arange(100) / 10.0, 5.0)
    assert (
        time.perf_counter() - t0 < 20.0
    )  # seconds, not minutes (bench: benchmarks/bench_change.py)
    assert np.isfinite(p).all()


def test_user_transect_ids_stay_with_their_lines_when_a_point_is_dropped():
    lines = [
        np.array([[0.0, 0.0], [0.0, 100.0]]),
        np.array([[5.0, 5.0]]),  # one vertex: no transect, dropped
        np.array([[20.0, 0.0], [20.0, 100.0]]),
    ]
    t = transects_from_lines(lines, ids=[7, 8, 9])
    assert t.transect_id.tolist() == [7, 9]
    np.testing.assert_allclose(t.origin[:, 0], [0.0, 20.0])
