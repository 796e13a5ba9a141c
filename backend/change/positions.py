"""Cross-shore positions: where each date's shoreline crosses each transect.

All transects x one date's shoreline at once: the shoreline is cut into its straight
segments, an STR-tree of the transects pairs each segment with the transects its box
touches, and the crossing of each pair is solved in closed form with numpy. Nothing loops
over transects or pairs in Python; one date is one pass.

Several crossings on one transect (a bay, a pond, a sand bar, a river's far bank) are
resolved by ``rule``:
  ``nearest``  (default) the crossing nearest the baseline (the median shoreline when the
               transects are cast by this tool): the shoreline that the baseline follows,
               not a pond or an island further along;
  ``seaward``  the one farthest towards the water (DSAS's "seaward intersection");
  ``landward`` the one farthest towards the land (DSAS's "landward intersection");
  ``none``     missing when there are two or more.
A transect that a date's mask does not see whole (cloud, nodata, outside the scene: mask
value 255 at any sample along it) is missing on that date, never zero.
"""

from __future__ import annotations

import numpy as np
import shapely

from backend.change.transects import Transects
from backend.core.errors import UserError

RULES = ("nearest", "seaward", "landward", "none")


def segments_of(lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Polylines (k_i, 2) -> their segments' start and end points, float64 (m, 2) each."""
    parts = [np.asarray(ln, np.float64) for ln in lines if len(ln) >= 2]
    if not parts:
        return np.empty((0, 2)), np.empty((0, 2))
    a = np.concatenate([p[:-1] for p in parts])
    b = np.concatenate([p[1:] for p in parts])
    keep = np.any(a != b, axis=1)
    return a[keep], b[keep]


class CrossingFinder:
    """Crossings of many shorelines with one set of transects (the tree is built once)."""

    def __init__(self, transects: Transects):
        self.t = transects
        self.tree = shapely.STRtree(transects.geometries())

    def crossings(self, lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """-> (transect index int64 (k,), distance from the baseline float64 (k,), metres,
        positive towards the water) of every crossing of the polylines with a transect."""
        a, b = segments_of(lines)
        if not len(a):
            return np.empty(0, np.int64), np.empty(0)
        segs = shapely.linestrings(np.stack([a, b], axis=1))
        seg_i, tr_i = self.tree.query(segs, predicate="intersects")
        p = self.t.origin[tr_i]
        r = self.t.end[tr_i] - p
        q = a[seg_i]
        s = b[seg_i] - q
        qp = q - p
        denom = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
        ok = np.abs(denom) > 1e-12  # parallel or collinear: no single crossing
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / denom
            u = (qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]) / denom
        ok &= (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
        tr_i, t = tr_i[ok], t[ok]
        dist = t * self.t.length[tr_i] - self.t.baseline_offset[tr_i]
        # a crossing exactly at a vertex is found on both of its segments: count it once
        key = np.round(dist, 6)
        _, first = np.unique(
            np.stack([tr_i.astype(np.float64), key], axis=1), axis=0, return_index=True
        )
        return tr_i[first].astype(np.int64), dist[first]


def choose(
    tr_i: np.ndarray, dist: np.ndarray, n: int, rule: str = "nearest"
) -> tuple[np.ndarray, np.ndarray]:
    """Crossings -> (position float64 (n,), NaN where none; crossing count int64 (n,))."""
    if rule not in RULES:
        raise UserError(f"unknown crossing rule {rule!r}; choose one of: {', '.join(RULES)}")
    count = np.bincount(tr_i, minlength=n).astype(np.int64)
    pos = np.full(n, np.nan)
    if not len(tr_i):
        return pos, count
    key = {"nearest": np.abs(dist), "seaward": -dist, "landward": dist, "none": dist}[rule]
    order = np.lexsort((key, tr_i))
    first = order[np.r_[True, tr_i[order][1:] != tr_i[order][:-1]]]
    pos[tr_i[first]] = dist[first]
    if rule == "none":
        pos[count > 1] = np.nan
    return pos, count


def unseen(transects: Transects, mask: np.ndarray, transform, step: float) -> np.ndarray:
    """True where a transect has a sample (every ``step`` metres) on nodata/cloud (255) or
    off the mask (uint8 (h, w) on ``transform`` in the working CRS) -> bool (n,)."""
    n = len(transects)
    if n == 0:
        return np.zeros(0, bool)
    k = max(2, int(np.ceil(transects.length.max() / step)) + 1)
    f = np.linspace(0.0, 1.0, k)
    pts = (
        transects.origin[:, None, :]
        + f[None, :, None] * (transects.end - transects.origin)[:, None, :]
    )
    cols, rows = ~transform * (pts[..., 0], pts[..., 1])
    c = np.floor(np.asarray(cols)).astype(np.int64)
    r = np.floor(np.asarray(rows)).astype(np.int64)
    h, w = mask.shape
    inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
    bad = ~inside
    bad[inside] = mask[r[inside], c[inside]] == 255
    return bad.any(axis=1)
