"""Transects: straight lines across the shore, cast normal to a baseline or read from a file.

A transect runs from its land end (``origin``) to its water end (``end``); positions along it
are measured in metres from where it crosses the baseline, positive towards the water
(``baseline_offset`` is that crossing's distance from the origin). Transects are numbered
1, 2, ... along each baseline in its drawing order, baselines one after the other.

Casting (:func:`cast_transects`): stations every ``spacing`` metres along each baseline line
(a closed line, such as a lake's shore, is walked all round); each transect is normal to the
chord between the baseline points ``smoothing`` metres before and after its station, so a
wiggly baseline gives smoothly turning transects. Where two transects of one baseline still cross, the
chords of both are doubled (up to 6 times); transects that cross after that are dropped and
counted. Orientation: the side a ``water_share`` function calls wetter is the water side.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import shapely

from backend.core.errors import UserError

# A half-chord of half a closed line's length would join a station's two chord ends into one
# point (no direction); 0.4 keeps a ring's chords well defined.
MAX_HALF_CHORD = 0.4
WaterShare = Callable[[np.ndarray], np.ndarray]  # points (m, 2) -> water share 0..1 or NaN


@dataclass
class Transects:
    """``n`` straight transects. Arrays: origin, end float64 (n, 2) map coordinates (land end,
    water end); baseline_offset float64 (n,) metres from origin to the baseline;
    transect_id, baseline_id int64 (n,)."""

    origin: np.ndarray
    end: np.ndarray
    baseline_offset: np.ndarray
    transect_id: np.ndarray
    baseline_id: np.ndarray
    dropped: int = 0  # cast transects dropped because they still crossed a neighbour
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.origin)

    @property
    def length(self) -> np.ndarray:
        return np.hypot(*(self.end - self.origin).T)

    @property
    def direction(self) -> np.ndarray:
        """Unit vectors land -> water, float64 (n, 2)."""
        return (self.end - self.origin) / self.length[:, None]

    def geometries(self) -> np.ndarray:
        """Shapely LineStrings, one per transect."""
        return shapely.linestrings(np.stack([self.origin, self.end], axis=1))

    def point_at(self, distance: np.ndarray) -> np.ndarray:
        """Map coordinates at ``distance`` metres from the baseline (shape (n, ...) -> (n, ..., 2))."""
        d = np.asarray(distance, np.float64) + self.baseline_offset.reshape(
            (-1,) + (1,) * (np.ndim(distance) - 1)
        )
        shape = (-1,) + (1,) * (np.ndim(distance) - 1) + (2,)
        return self.origin.reshape(shape) + d[..., None] * self.direction.reshape(shape)


def _stations(length: float, spacing: float, closed: bool) -> np.ndarray:
    if closed:
        n = max(1, int(np.floor(length / spacing)))
        return np.arange(n) * (length / n)  # evenly all round
    n = int(np.floor(length / spacing)) + 1
    if n < 1 or length <= 0:
        return np.empty(0)
    return (length - (n - 1) * spacing) / 2.0 + np.arange(n) * spacing


def _normals(line: shapely.LineString, s: np.ndarray, half: np.ndarray, closed: bool) -> np.ndarray:
    """Unit normals (right of the drawing direction) from the chord s-half .. s+half."""
    total = line.length
    a, b = s - half, s + half
    if closed:
        a, b = np.mod(a, total), np.mod(b, total)
    else:
        a, b = np.clip(a, 0, total), np.clip(b, 0, total)
    pa = shapely.get_coordinates(shapely.line_interpolate_point(line, a))
    pb = shapely.get_coordinates(shapely.line_interpolate_point(line, b))
    t = pb - pa
    t /= np.maximum(np.hypot(*t.T), 1e-12)[:, None]
    return np.stack([t[:, 1], -t[:, 0]], axis=1)


def _crossing_pairs(origin: np.ndarray, end: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Index pairs (k, 2), i < j, of transects of one ``group`` (baseline) that intersect
    each other. Transects of two baselines (a river's banks) may meet in the water."""
    geoms = shapely.linestrings(np.stack([origin, end], axis=1))
    tree = shapely.STRtree(geoms)
    pairs = tree.query(geoms, predicate="intersects")
    keep = (pairs[0] < pairs[1]) & (group[pairs[0]] == group[pairs[1]])
    return pairs[:, keep].T


def orient(
    origin: np.ndarray, end: np.ndarray, water_share: WaterShare, samples: int = 8
) -> np.ndarray:
    """True where a transect should be flipped: its origin half is wetter than its end half
    (mean ``water_share`` of ``samples`` points on each half; NaN ignored)."""
    f = (np.arange(samples) + 0.5) / samples
    d = end - origin
    near = origin[:, None, :] + (0.5 * f)[None, :, None] * d[:, None, :]
    far = origin[:, None, :] + (0.5 + 0.5 * f)[None, :, None] * d[:, None, :]
    n = len(origin)
    wet_near = water_share(near.reshape(-1, 2)).reshape(n, samples)
    wet_far = water_share(far.reshape(-1, 2)).reshape(n, samples)
    with warnings.catch_warnings():  # all-NaN halves (off the raster): not flipped
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(wet_near, axis=1) > np.nanmean(wet_far, axis=1)


def cast_transects(
    baselines: list[np.ndarray],
    spacing: float,
    length: float,
    *,
    landward: float | None = None,
    smoothing: float | None = None,
    water_share: WaterShare | None = None,
) -> Transects:
    """Transects normal to ``baselines`` (map-coordinate polylines (k, 2); first == last
    vertex: closed) every ``spacing`` metres, ``length`` metres long with ``landward`` of them
    (default half) on the land side; ``smoothing``: half-chord for the normal direction
    (default ``max(spacing, length / 4)``). Without ``water_share`` the water side is the
    right of the baseline's drawing direction."""
    if spacing <= 0 or length <= 0:
        raise UserError(
            f"--spacing {spacing:g} and --length {length:g}: both must be positive (metres)"
        )
    landward = length / 2.0 if landward is None else float(landward)
    if not 0 <= landward <= length:
        raise UserError(
            f"--landward {landward:g} m must lie within --length {length:g} m; pass a value "
            f"from 0 to {length:g} (default half)"
        )
    smoothing = max(spacing, length / 4.0) if smoothing is None else float(smoothing)
    stations, halves, owner = [], [], []
    lines = []
    for b, coords in enumerate(baselines):
        coords = np.asarray(coords, np.float64)
        if len(coords) < 2:
            continue
        closed = len(coords) > 3 and np.allclose(coords[0], coords[-1])
        line = shapely.linestrings(coords)
        s = _stations(line.length, spacing, closed)
        if not len(s):
            continue
        lines.append((line, closed))
        stations.append(s)
        halves.append(np.full(len(s), min(smoothing, MAX_HALF_CHORD * line.length)))
        owner.append(np.full(len(s), b))
    if not stations:
        raise UserError("no baseline long enough for one transect; lower --spacing")
    ids = np.concatenate(owner)
    points = np.concatenate(
        [
            shapely.get_coordinates(shapely.line_interpolate_point(line, s))
            for (line, _), s in zip(lines, stations, strict=True)
        ]
    )
    half = np.concatenate(halves)
    splits = np.cumsum([len(s) for s in stations])[:-1]

    def compute(half_now: np.ndarray) -> np.ndarray:
        parts = np.split(half_now, splits)
        return np.concatenate(
            [
                _normals(line, s, h, closed)
                for (line, closed), s, h in zip(lines, stations, parts, strict=True)
            ]
        )

    normal = compute(half)
    if water_share is not None:
        flip = orient(
            points - normal * landward, points + normal * (length - landward), water_share
        )
        normal[flip] *= -1
    for _ in range(6):
        origin = points - normal * landward
        end = points + normal * (length - landward)
        pairs = _crossing_pairs(origin, end, ids)
        if not len(pairs):
            break
        bad = np.unique(pairs)
        maxima = np.concatenate(
            [
                np.full(len(s), MAX_HALF_CHORD * line.length)
                for (line, _), s in zip(lines, stations, strict=True)
            ]
        )
        half[bad] = np.minimum(half[bad] * 2.0, maxima[bad])
        fresh = compute(half)
        flip = np.einsum("ij,ij->i", normal, fresh) < 0  # keep each transect's water side
        normal = np.where(flip[:, None], -fresh, fresh)
    origin = points - normal * landward
    end = points + normal * (length - landward)
    keep = np.hypot(*normal.T) > 0.5  # a chord of no length gives no direction: dropped
    pairs = _crossing_pairs(origin[keep], end[keep], ids[keep])
    pairs = np.flatnonzero(keep)[pairs] if len(pairs) else pairs
    while len(pairs):
        counts = np.bincount(pairs.ravel(), minlength=len(points))
        worst = int(np.argmax(counts))
        keep[worst] = False
        pairs = pairs[(pairs != worst).all(axis=1)]
    notes = []
    if (~keep).any():
        notes.append(
            f"{int((~keep).sum())} transect(s) dropped: crossing a neighbour or no direction"
        )
    tid = np.arange(1, int(keep.sum()) + 1)
    return Transects(
        origin=origin[keep],
        end=end[keep],
        baseline_offset=np.full(int(keep.sum()), landward),
        transect_id=tid,
        baseline_id=ids[keep] + 1,
        dropped=int((~keep).sum()),
        notes=notes,
    )


def transects_from_lines(
    lines: list[np.ndarray],
    ids: list[int] | None = None,
    baseline: list[np.ndarray] | None = None,
) -> Transects:
    """User transects (polylines (k, 2), drawn from land to water: first vertex = land end,
    as DSAS casts them) -> Transects, straight from first to last vertex. Positions are
    measured from the transect's crossing with ``baseline`` when it has one, else from its
    first vertex."""
    keep = [i for i, c in enumerate(lines) if len(c) >= 2]  # a line of one vertex is no transect
    coords = [np.asarray(lines[i], np.float64) for i in keep]
    if ids is not None:  # each line keeps its own id when others are dropped
        ids = [ids[i] for i in keep]
    if not coords:
        raise UserError(
            "the --transects file has no line with two or more vertices; draw each transect "
            "as a line from land to water"
        )
    origin = np.array([c[0] for c in coords])
    end = np.array([c[-1] for c in coords])
    tid = np.asarray(ids if ids is not None else np.arange(1, len(coords) + 1), np.int64)
    same = np.flatnonzero(np.hypot(*(end - origin).T) == 0)
    if len(same):
        raise UserError(
            f"transect {tid[same[0]]} of --transects starts and ends at the same point; redraw "
            "it from land to water"
        )
    offset = np.zeros(len(coords))
    if baseline:
        base = shapely.multilinestrings([np.asarray(b, np.float64) for b in baseline])
        geoms = shapely.linestrings(np.stack([origin, end], axis=1))
        hits = shapely.intersection(geoms, base)
        has = ~shapely.is_empty(hits)
        if has.any():
            pts, index = shapely.get_coordinates(hits[has], return_index=True)
            rows = np.flatnonzero(has)[index]
            dist = shapely.line_locate_point(geoms[rows], shapely.points(pts))
            nearest = np.full(len(coords), np.inf)
            np.minimum.at(nearest, rows, dist)
            offset = np.where(np.isfinite(nearest), nearest, 0.0)
    return Transects(origin, end, offset, tid, np.ones(len(coords), np.int64))
