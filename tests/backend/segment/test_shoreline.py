"""Shoreline extraction against analytic truths, in pixel and in map coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from backend.segment.georef import GeoRef
from backend.segment.shoreline import (
    ContourBuilder,
    build_shoreline,
    chaikin,
    join_segments,
    marching_squares,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _circle_prob(h, w, cx, cy, radius, soft=2.0):
    rows, cols = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    return _sigmoid((radius - np.hypot(cols - cx, rows - cy)) / soft).astype(np.float32)


def _lines_in_strips(prob, step):
    cb = ContourBuilder(prob.shape[1], 0.5)
    for r0 in range(0, prob.shape[0], step):
        cb.add_rows(r0, prob[r0 : r0 + step])
    return cb.lines()


def test_hand_computed_single_cell():
    # 2 x 2 samples: left column water (0.9), right land (0.1) -> one vertical segment at the
    # middle between the sample centres: col = 0.5 + 0.5 = 1.0, rows 0.5 .. 1.5.
    p = np.array([[0.9, 0.1], [0.9, 0.1]])
    ka, kb, xa, xb = marching_squares(p, 0.5, 0, 2)
    assert ka.size == 1
    pts = sorted([tuple(xa[0]), tuple(xb[0])], key=lambda t: t[1])
    np.testing.assert_allclose(pts, [(1.0, 0.5), (1.0, 1.5)])
    # Linear interpolation: 0.8 vs 0.3 crosses 0.5 at 3/5 of the way.
    p = np.array([[0.8, 0.3], [0.8, 0.3]])
    _, _, xa, _ = marching_squares(p, 0.5, 0, 2)
    assert xa[0, 0] == pytest.approx(0.5 + 0.6)


def test_saddle_resolved_by_cell_mean():
    p = np.array([[0.9, 0.1], [0.1, 0.9]])  # mean 0.5 -> wet centre: diagonal water connects
    ka, kb, xa, xb = marching_squares(p, 0.5, 0, 2)
    assert ka.size == 2  # two separate segments cutting off the two dry corners


def test_circle_closed_ring_within_a_fraction_of_a_pixel():
    cx, cy, radius = 40.37, 31.71, 17.23
    prob = _circle_prob(64, 80, cx, cy, radius)
    lines = _lines_in_strips(prob, 7)
    assert len(lines) == 1
    ring = lines[0]
    np.testing.assert_allclose(ring[0], ring[-1])  # closed
    err = np.abs(np.hypot(ring[:, 0] - cx, ring[:, 1] - cy) - radius)
    assert err.max() < 0.05  # pixels
    whole = _lines_in_strips(prob, 64)[0]
    assert len(whole) == len(ring)  # strips join exactly into the same ring


def test_line_ends_at_raster_border_and_never_runs_along_it():
    prob = _circle_prob(50, 50, 0.0, 0.0, 30.0)  # quarter disc in the corner
    lines = _lines_in_strips(prob, 16)
    assert len(lines) == 1
    line = lines[0]
    assert not np.allclose(line[0], line[-1])  # open: ends on the border
    err = np.abs(np.hypot(line[:, 0], line[:, 1]) - 30.0)
    assert err.max() < 0.05


def test_no_line_along_nodata():
    prob = np.full((40, 40), 0.9, np.float32)  # all water
    prob[:, 25:] = 0.1  # land on the right: a coast at col 25.0 (between centres 24.5/25.5)
    prob[:15] = np.nan  # top rows nodata: water next to nodata is NOT a shoreline
    lines = _lines_in_strips(prob, 9)
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0][:, 0], 25.0)
    assert lines[0][:, 1].min() == pytest.approx(15.5)  # starts at the first valid row centre


def test_straight_coast_subpixel_in_utm_map_coordinates():
    x0 = 23.37  # true coast at pixel column 23.37
    h, w = 30, 50
    rows, cols = np.mgrid[0:h, 0:w] + 0.5
    prob = _sigmoid((x0 - cols) * 0.8).astype(np.float32)
    georef = GeoRef(CRS.from_epsg(32632), Affine(10, 0, 500000, 0, -10, 4650000), w, h)
    shore = build_shoreline(_lines_in_strips(prob, 8), georef)
    assert len(shore.lines) == 1
    x = shore.lines[0][:, 0]
    assert np.abs(x - (500000 + 10 * x0)).max() < 0.05 * 10  # within 0.05 px
    ys = shore.lines[0][:, 1]
    assert ys.max() == pytest.approx(4650000 - 5) and ys.min() == pytest.approx(4650000 - 295)
    # UTM 32N near 9 deg E: the geodesic length of 290 m is 290 m / scale factor (k ~ 0.9996)
    assert shore.lengths_m[0] == pytest.approx(290 / 0.9996, rel=2e-4)


def test_epsg4326_length_in_metres():
    """A coast along a meridian in a lon/lat raster: length = meridian arc, in metres."""
    h, w = 200, 20
    d = 1e-4  # degrees per pixel
    lon0, lat0 = 12.0, 42.1
    georef = GeoRef(CRS.from_epsg(4326), Affine(d, 0, lon0, 0, -d, lat0), w, h)
    rows, cols = np.mgrid[0:h, 0:w] + 0.5
    prob = _sigmoid((8.6 - cols) * 0.8).astype(np.float32)
    shore = build_shoreline(_lines_in_strips(prob, 64), georef)
    assert len(shore.lines) == 1
    lat_top, lat_bottom = lat0 - 0.5 * d, lat0 - (h - 0.5) * d
    _, _, truth = Geod(ellps="WGS84").inv(12.00086, lat_top, 12.00086, lat_bottom)
    assert shore.lengths_m[0] == pytest.approx(truth, rel=1e-6)
    # and about 111 km per degree of latitude (199 px x 1e-4 deg = 0.0199 deg ~ 2211 m)
    assert shore.lengths_m[0] == pytest.approx(0.0199 * 111_050, rel=2e-3)
    np.testing.assert_allclose(shore.lines[0][:, 0], lon0 + 8.6 * d, atol=0.05 * d)


def test_min_length_smoothing_and_simplification():
    prob = np.full((60, 60), 0.1, np.float32)
    prob[10:13, 10:13] = 0.9  # a 3-px island: a short ring
    prob[:, 40:] = 0.9  # a long straight coast at col 40
    georef = GeoRef(CRS.from_epsg(32632), Affine(10, 0, 500000, 0, -10, 4650000), 60, 60)
    lines = _lines_in_strips(prob, 20)
    assert len(lines) == 2
    kept = build_shoreline(lines, georef, min_length_m=200)
    assert len(kept.lines) == 1 and kept.lengths_m[0] > 500
    simple = build_shoreline(lines, georef, min_length_m=200, simplify_tolerance=1.0)
    assert len(simple.lines[0]) == 2  # a straight line needs only its end points
    smooth = chaikin(np.array([[0.0, 0], [1, 0], [1, 1]]), 1)
    np.testing.assert_allclose(smooth, [[0, 0], [0.25, 0], [0.75, 0], [1, 0.25], [1, 0.75], [1, 1]])


def test_join_segments_rings_and_paths():
    # a path a-b-c and a triangle ring d-e-f, given out of order and flipped
    ka = np.array([2, 10, 1, 11, 12])
    kb = np.array([3, 11, 2, 12, 10])
    pos = {1: (0, 0), 2: (1, 0), 3: (2, 0), 10: (5, 5), 11: (6, 5), 12: (5, 6)}
    xa = np.array([pos[k] for k in ka], float)
    xb = np.array([pos[k] for k in kb], float)
    lines = join_segments(ka, kb, xa, xb)
    lens = sorted(len(ln) for ln in lines)
    assert lens == [3, 4]  # path of 3 points; ring of 3 points + closing point
    path = next(ln for ln in lines if len(ln) == 3)
    assert {tuple(path[0]), tuple(path[-1])} == {(0.0, 0.0), (2.0, 0.0)}


# ---- oriented segments, chained in numpy (issue 14: the shoreline stage vectorised) ----------


def _canonical(lines):
    """Lines as comparable values, whatever their direction and a ring's starting point."""
    out = []
    for line in lines:
        pts = [tuple(p) for p in np.round(line, 9)]
        if len(pts) > 2 and pts[0] == pts[-1]:
            ring = pts[:-1]
            i = ring.index(min(ring))
            ring = ring[i:] + ring[:i]
            out.append(("ring", min(tuple(ring), tuple([ring[0], *ring[1:][::-1]]))))
        else:
            out.append(("path", min(tuple(pts), tuple(pts[::-1]))))
    return sorted(out)


def _walked(ka, kb, xa, xb):
    from backend.segment.shoreline import _join_by_walking, node_table

    return _join_by_walking(*node_table(ka, kb, xa, xb))


def test_segments_have_the_water_on_their_right_in_pixel_coordinates():
    # a lake with an island: the outer ring runs one way round, the island's the other
    prob = _circle_prob(60, 70, 35.3, 30.6, 20.4) - _circle_prob(60, 70, 33.1, 29.2, 7.7)
    ka, kb, xa, xb = marching_squares(prob, 0.5, 0, 70)
    d = xb - xa
    mid = (xa + xb) / 2
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.hypot(d[:, 0], d[:, 1])[:, None]
    for side, wet in ((1, True), (-1, False)):  # right of a -> b (rows down) is water
        c, r = (mid + side * 0.1 * normal).T - 0.5
        c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
        fc, fr = c - c0, r - r0
        val = (
            prob[r0, c0] * (1 - fc) * (1 - fr)
            + prob[r0, c0 + 1] * fc * (1 - fr)
            + prob[r0 + 1, c0] * (1 - fc) * fr
            + prob[r0 + 1, c0 + 1] * fc * fr
        )
        assert ((val > 0.5) == wet).all()
    lines = join_segments(ka, kb, xa, xb)
    assert len(lines) == 2 and all(np.array_equal(ln[0], ln[-1]) for ln in lines)


def test_noisy_map_chains_in_numpy_to_the_same_lines_as_walking(monkeypatch):
    import backend.segment.shoreline as shoreline

    rng = np.random.default_rng(3)
    prob = rng.random((96, 128)).astype(np.float32)  # the worst case: noise around 0.5
    prob[40:60] = np.nan  # nodata rows: chains end there
    segments = marching_squares(prob, 0.5, 0, 128)

    def no_walking(*args):
        raise AssertionError("oriented segments must not need the Python walk")

    monkeypatch.setattr(shoreline, "_join_by_walking", no_walking)
    lines = join_segments(*segments)
    monkeypatch.undo()
    assert len(lines) > 500
    assert _canonical(lines) == _canonical(_walked(*segments))
    rings = [ln for ln in lines if np.array_equal(ln[0], ln[-1])]
    assert rings and all(len(ln) >= 4 for ln in rings)


def test_values_exactly_at_the_threshold_still_chain_like_walking():
    rng = np.random.default_rng(4)
    prob = np.round(rng.random((64, 64)) * 4) / 4  # a quarter of the pixels are exactly 0.5
    segments = marching_squares(prob, 0.5, 0, 64)
    assert _canonical(join_segments(*segments)) == _canonical(_walked(*segments))


def test_the_shoreline_bench_row_counts_what_it_chained():
    from benchmarks.bench_segment import shoreline_rows

    ticks = iter(range(100))
    (row,) = shoreline_rows(repeats=2, size=48, clock=lambda: float(next(ticks)))
    prob = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    segments = marching_squares(prob, 0.5, 0, 48)
    assert row["segments"] == segments[0].size and row["lines"] == len(join_segments(*segments))
    assert row["march_s"] == row["numpy_s"] == 1.0  # each stage is one tick of the fake clock
    assert row["walk_s"] == 1.0


def test_marching_squares_in_row_chunks_gives_the_one_pass_segments(monkeypatch):
    # Issue 14: the cells are done a few rows at a time, so the float64 temporaries do not
    # grow with the raster width; the segments, their order and the lines must not change.
    import backend.segment.shoreline as shoreline

    rng = np.random.default_rng(3)
    p = rng.random((97, 61)).astype(np.float32)
    p[rng.random(p.shape) < 0.05] = np.nan  # nodata cells
    p[p > 0.97] = 0.5  # corners exactly at the threshold
    monkeypatch.setattr(shoreline, "MARCH_ROWS", 10_000)
    one_pass = marching_squares(p, 0.5, 11, 500)
    for rows in (1, 2, 7, 32):
        monkeypatch.setattr(shoreline, "MARCH_ROWS", rows)
        chunked = marching_squares(p, 0.5, 11, 500)
        assert one_pass[0].size > 100
        for a, b in zip(one_pass, chunked, strict=True):
            np.testing.assert_array_equal(a, b)
