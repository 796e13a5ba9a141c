"""Shoreline: sub-pixel marching squares on the blended water probability, joined into lines.

The probability grid sample ``P[r, c]`` sits at the pixel centre ``(c + 0.5, r + 0.5)`` in
pixel coordinates. A contour crossing on the edge between two samples is placed by linear
interpolation at ``threshold``; saddle cells are resolved with the cell's mean. Each crossing
is identified by an integer key of its grid edge, so segments from consecutive strips join
exactly, without comparing floats. Cells with a nodata corner produce nothing, so no line
runs along nodata; marching squares never draws along the raster's outer border (lines end
there). Lines are converted to map coordinates with the raster transform; ``length_m`` is the
geodesic length on the CRS's ellipsoid (works for EPSG:4326 as for UTM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.segment.georef import GeoRef

# Rows of cells marching squares works on at a time: its float64 temporaries then take a few
# MB whatever the raster width (a whole 193-row block of a 10980-wide scene would need ~17 MB
# for each of them).
MARCH_ROWS = 32

_Segments = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def marching_squares(prob: np.ndarray, threshold: float, row_offset: int, width: int) -> _Segments:
    """Contour segments of ``prob`` (h, w) float32/64 (NaN = nodata) at ``threshold``.

    Returns ``(key_a, key_b, xy_a, xy_b)``: int64 (S,) edge keys of both ends of each segment
    and float64 (S, 2) their pixel coordinates (col, row) in the whole raster (``row_offset``
    = raster row of ``prob[0]``; ``width`` = raster width, used for the keys). Every segment
    runs from a to b with the water on its right in pixel coordinates (rows down), that is on
    its left on a north-up map, so segments chain head to tail (:func:`join_segments`).

    The cells are done ``MARCH_ROWS`` rows at a time (chunks share their boundary row, so
    every cell is done once); the segments come out in the order of one pass over all rows.
    """
    h = prob.shape[0]
    parts = [
        _march(prob[r : r + MARCH_ROWS + 1], threshold, row_offset + r, width)
        for r in range(0, max(h - 1, 1), MARCH_ROWS)
    ]
    parts = [part for part in parts if part[0].size]
    if len(parts) <= 1:
        return parts[0][:4] if parts else _no_segments()
    combo = np.concatenate([part[4] for part in parts])
    order = np.argsort(combo, kind="stable")  # case by case, rows in order within each case
    ka, kb, xa, xb = (np.concatenate([part[i] for part in parts])[order] for i in range(4))
    return ka, kb, xa, xb


def _no_segments() -> _Segments:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, 2)), np.empty((0, 2))


def _march(
    prob: np.ndarray, threshold: float, row_offset: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`marching_squares` of one chunk, plus each segment's case (the ``combos`` index
    below, int8 (S,)), by which the chunks' segments are put back in one-pass order."""
    p = np.asarray(prob, np.float64)
    h, w = p.shape
    empty = (*_no_segments(), np.empty(0, np.int8))
    if h < 2 or w < 2:
        return empty
    wet = p >= threshold
    tl, tr, bl, br = wet[:-1, :-1], wet[:-1, 1:], wet[1:, :-1], wet[1:, 1:]
    ok = np.isfinite(p)
    cell_ok = ok[:-1, :-1] & ok[:-1, 1:] & ok[1:, :-1] & ok[1:, 1:]
    ct = (tl != tr) & cell_ok
    cb = (bl != br) & cell_ok
    cl = (tl != bl) & cell_ok
    cr = (tr != br) & cell_ok
    n = ct.astype(np.int8) + cb + cl + cr
    if not n.any():
        return empty
    with np.errstate(invalid="ignore"):
        centre_wet = (p[:-1, :-1] + p[:-1, 1:] + p[1:, :-1] + p[1:, 1:]) / 4.0 >= threshold
    saddle = n == 4
    case5 = saddle & tr & bl  # tr, bl wet; tl, br dry
    case10 = saddle & tl & br
    two = n == 2
    pairs_tl_rb = (case5 & centre_wet) | (case10 & ~centre_wet)
    pairs_tr_lb = (case5 & ~centre_wet) | (case10 & centre_wet)

    # Crossing positions on each edge type, for every cell (only used where crossed).
    with np.errstate(invalid="ignore", divide="ignore"):
        fh = (threshold - p[:, :-1]) / (p[:, 1:] - p[:, :-1])  # horizontal edges (h, w-1)
        fv = (threshold - p[:-1, :]) / (p[1:, :] - p[:-1, :])  # vertical edges (h-1, w)

    def edge(kind: str, ii: np.ndarray, jj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keys and (col, row) of the crossing on edge ``kind`` of cells (ii, jj)."""
        if kind in "tb":
            r = ii + (kind == "b")
            f = np.clip(fh[r, jj], 0.0, 1.0)
            gr = r + row_offset
            key = (gr.astype(np.int64) * width + jj) * 2
            xy = np.stack([jj + f + 0.5, gr + 0.5], axis=1)
        else:
            c = jj + (kind == "r")
            f = np.clip(fv[ii, c], 0.0, 1.0)
            gr = ii + row_offset
            key = (gr.astype(np.int64) * width + c) * 2 + 1
            xy = np.stack([c + 0.5, gr + f + 0.5], axis=1)
        return key, xy

    # (edge, edge, cells, the corner whose side tells the orientation: the corner the two
    # edges cut off, or for a straight crossing the top-left one; then the point to use when
    # the crossing lies on that corner (a corner exactly at the threshold): the other corner
    # of a straight crossing, the cell centre, which is on the far side, for a cut corner)
    corners = {"tl": (tl, 0, 0), "tr": (tr, 1, 0), "bl": (bl, 0, 1), "br": (br, 1, 1)}
    combos = [
        ("t", "b", two & ct & cb, "tl", "tr"),
        ("l", "r", two & cl & cr, "tl", "bl"),
        ("t", "l", (two & ct & cl) | pairs_tl_rb, "tl", "centre"),
        ("r", "b", (two & cr & cb) | pairs_tl_rb, "br", "centre"),
        ("t", "r", (two & ct & cr) | pairs_tr_lb, "tr", "centre"),
        ("l", "b", (two & cl & cb) | pairs_tr_lb, "bl", "centre"),
    ]
    ka, kb, xa, xb, case = [], [], [], [], []
    for c, (e1, e2, sel, corner, spare) in enumerate(combos):
        ii, jj = np.nonzero(sel)
        if ii.size == 0:
            continue
        k1, p1 = edge(e1, ii, jj)
        k2, p2 = edge(e2, ii, jj)
        wet_map, dc, dr = corners[corner]
        wet = wet_map[ii, jj]
        col, row = jj + 0.5, ii + row_offset + 0.5
        side = _side(p1, p2, col + dc, row + dr)
        if spare == "centre":
            spare_side, spare_wet = _side(p1, p2, col + 0.5, row + 0.5), ~wet
        else:
            spare_map, sc, sr = corners[spare]
            spare_side, spare_wet = _side(p1, p2, col + sc, row + sr), spare_map[ii, jj]
        on_corner = side == 0
        right = np.where(on_corner, spare_side > 0, side > 0)  # right of a -> b, rows down
        flip = right != np.where(on_corner, spare_wet, wet)
        k1, k2 = np.where(flip, k2, k1), np.where(flip, k1, k2)
        p1, p2 = np.where(flip[:, None], p2, p1), np.where(flip[:, None], p1, p2)
        ka.append(k1)
        kb.append(k2)
        xa.append(p1)
        xb.append(p2)
        case.append(np.full(ii.size, c, np.int8))
    if not ka:
        return empty
    return tuple(np.concatenate(a) for a in (ka, kb, xa, xb, case))


def _side(a: np.ndarray, b: np.ndarray, col, row) -> np.ndarray:
    """Cross product (b - a) x (point - a) per segment: > 0 when the point (col, row) is on
    the right of a -> b in pixel coordinates (rows down), 0 on the line."""
    d = b - a
    return d[:, 0] * (row - a[:, 1]) - d[:, 1] * (col - a[:, 0])


def join_segments(
    key_a: np.ndarray, key_b: np.ndarray, xy_a: np.ndarray, xy_b: np.ndarray
) -> list[np.ndarray]:
    """Chain segments sharing edge keys into polylines: list of float64 (n, 2) arrays.

    Every key joins at most two segments, so chains are open paths or closed rings (a closed
    ring repeats its first point at the end). Segments oriented head to tail, as
    :func:`marching_squares` emits them, are chained in numpy by pointer jumping; any other
    input (a key that two segments leave or two enter) is chained by walking.
    """
    if key_a.size == 0:
        return []
    u, v, coords = node_table(key_a, key_b, xy_a, xy_b)
    n = coords.shape[0]
    if np.bincount(u, minlength=n).max() > 1 or np.bincount(v, minlength=n).max() > 1:
        return _join_by_walking(u, v, coords)
    return _join_oriented(u, v, coords)


def node_table(
    key_a: np.ndarray, key_b: np.ndarray, xy_a: np.ndarray, xy_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segments as a graph: (start node, end node) of each segment, and float64 (N, 2) node
    coordinates, one node per distinct edge key."""
    keys, inv = np.unique(np.concatenate([key_a, key_b]), return_inverse=True)
    coords = np.empty((keys.size, 2))
    coords[inv] = np.concatenate([xy_a, xy_b])
    return inv[: key_a.size], inv[key_a.size :], coords


def _chain_ends(nxt: np.ndarray, value: np.ndarray, combine) -> tuple[np.ndarray, np.ndarray]:
    """Pointer jumping: fold ``value`` along ``nxt`` (-1 = end) with ``combine`` until every
    node has seen the rest of its chain (on a ring: the whole ring) -> (value, last node)."""
    ptr = np.where(nxt < 0, np.arange(nxt.size, dtype=nxt.dtype), nxt)
    for _ in range(max(1, int(np.ceil(np.log2(nxt.size))) + 1)):
        value = combine(value, value.take(ptr))
        ptr = ptr.take(ptr)
    return value, ptr


def _join_oriented(u: np.ndarray, v: np.ndarray, coords: np.ndarray) -> list[np.ndarray]:
    n = coords.shape[0]
    idx = np.arange(n, dtype=np.int32)
    nxt = np.full(n, -1, np.int32)
    nxt[u] = v
    # Rings have no end: cut each at its smallest node, which becomes its head. A node whose
    # chain ends has, after the jumps, a last node without successor; on a ring it has not.
    smallest, last = _chain_ends(nxt, idx, np.minimum)
    ring_head = (nxt.take(last) >= 0) & (smallest == idx)
    prv = np.full(n, -1, np.int32)
    prv[v] = u
    nxt[prv[ring_head]] = -1
    # Distance of every node to the end of its chain, and that end: order within a chain.
    dist, tail = _chain_ends(nxt, (nxt >= 0).astype(np.int32), np.add)
    order = np.lexsort((-dist, tail))
    tail = tail[order]
    first = np.r_[True, tail[1:] != tail[:-1]]
    pts = coords[order]
    keep = first.copy()  # drop a point equal to the one before it in its chain
    keep[1:] |= np.any(np.abs(np.diff(pts, axis=0)) > 1e-12, axis=1)
    chain = np.cumsum(first)[keep] - 1
    pts, heads = pts[keep], order[first]
    bounds = np.r_[np.flatnonzero(np.diff(chain)) + 1, len(chain)]
    begins = np.r_[0, bounds[:-1]]
    # close each ring: its first point again at its end
    closed = ring_head[heads] & (bounds - begins > 2)
    pts = np.insert(pts, bounds[closed], pts[begins[closed]], axis=0)
    ends = (bounds + np.cumsum(closed)).tolist()
    return [pts[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True) if b - a >= 2]


def _join_by_walking(u: np.ndarray, v: np.ndarray, coords: np.ndarray) -> list[np.ndarray]:
    """Chains of segments of any orientation, node by node (a Python loop)."""
    n = coords.shape[0]
    node = np.concatenate([u, v])
    other = np.concatenate([v, u])
    order = np.argsort(node, kind="stable")
    node, other = node[order], other[order]
    first = np.ones(node.size, bool)
    first[1:] = node[1:] != node[:-1]
    nb = np.full((n, 2), -1, np.int64)
    nb[node[first], 0] = other[first]
    nb[node[~first], 1] = other[~first]
    degree = (nb >= 0).sum(axis=1)

    nb_l = nb.tolist()
    visited = np.zeros(n, bool)
    lines: list[np.ndarray] = []

    def walk(start: int) -> list[int]:
        path = [start]
        visited[start] = True
        prev, cur = -1, start
        while True:
            a, b = nb_l[cur]
            nxt = b if a == prev else a  # the neighbour we did not come from
            if nxt < 0:
                break
            if visited[nxt]:
                if nxt == start and len(path) > 2:
                    path.append(start)
                break
            path.append(nxt)
            visited[nxt] = True
            prev, cur = cur, nxt
        return path

    for start in np.nonzero(degree == 1)[0].tolist():
        if not visited[start]:
            lines.append(coords[walk(start)])
    for start in np.nonzero(degree == 2)[0].tolist():
        if not visited[start]:
            lines.append(coords[walk(start)])
    return [_dedupe(line) for line in lines if len(line) >= 2]


def _dedupe(line: np.ndarray) -> np.ndarray:
    keep = np.ones(len(line), bool)
    keep[1:] = np.any(np.abs(np.diff(line, axis=0)) > 1e-12, axis=1)
    return line[keep]


class ContourBuilder:
    """Streams finished probability rows in, collects contour segments across strips.

    ``add_rows(row0, prob)`` with prob float32 (h, W), NaN = nodata, rows in order;
    ``lines()`` -> polylines in pixel coordinates (col, row), float64 (n, 2).
    """

    def __init__(self, width: int, threshold: float = 0.5):
        self.width = width
        self.threshold = threshold
        self._last: np.ndarray | None = None
        self._last_row = -1
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add_rows(self, row0: int, prob: np.ndarray) -> None:
        if prob.shape[0] == 0:
            return
        if self._last is not None and self._last_row == row0 - 1:
            block, offset = np.vstack([self._last[None], prob]), row0 - 1
        else:
            block, offset = prob, row0
        seg = marching_squares(block, self.threshold, offset, self.width)
        if seg[0].size:
            self._parts.append(seg)
        self._last = np.array(prob[-1], copy=True)
        self._last_row = row0 + prob.shape[0] - 1

    def lines(self) -> list[np.ndarray]:
        if not self._parts:
            return []
        ka, kb, xa, xb = (np.concatenate([p[i] for p in self._parts]) for i in range(4))
        return join_segments(ka, kb, xa, xb)


def chaikin(line: np.ndarray, iterations: int) -> np.ndarray:
    """Chaikin corner cutting, float64 (n, 2) -> (m, 2); open lines keep their end points."""
    closed = len(line) > 3 and np.allclose(line[0], line[-1])
    for _ in range(iterations):
        if len(line) < 3:
            break
        p, q = line[:-1], line[1:]
        cut = np.empty((2 * len(p), 2))
        cut[0::2] = 0.75 * p + 0.25 * q
        cut[1::2] = 0.25 * p + 0.75 * q
        line = np.vstack([cut, cut[:1]]) if closed else np.vstack([line[:1], cut, line[-1:]])
    return line


def simplify(line: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker simplification with ``tolerance`` in the line's units."""
    if tolerance <= 0 or len(line) < 3:
        return line
    import shapely

    simple = shapely.simplify(shapely.linestrings(line), tolerance, preserve_topology=False)
    return np.asarray(shapely.get_coordinates(simple))


def lengths_m(lines: list[np.ndarray], georef: GeoRef) -> list[float]:
    """Geodesic length in metres of each map-coordinate polyline (n, 2).

    Projected and geographic CRSs: vertices are transformed to longitude/latitude on the
    CRS's own datum and measured on its ellipsoid. No CRS: planar length in map units.
    """
    if not lines:
        return []
    if georef.crs is None:
        return [float(np.hypot(*np.diff(ln, axis=0).T).sum()) for ln in lines]
    from pyproj import CRS, Transformer

    crs = CRS.from_wkt(georef.crs.to_wkt())
    geod = crs.get_geod()
    allxy = np.concatenate(lines)
    if crs.is_geographic:
        # GDAL rasters in a geographic CRS use x = longitude, y = latitude (GIS order)
        lon, lat = allxy[:, 0], allxy[:, 1]
    else:
        tr = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
        lon, lat = tr.transform(allxy[:, 0], allxy[:, 1])
    out, i = [], 0
    for ln in lines:
        n = len(ln)
        out.append(float(geod.line_length(lon[i : i + n], lat[i : i + n])))
        i += n
    return out


@dataclass
class Shoreline:
    """Shoreline polylines in map coordinates with their geodesic lengths in metres."""

    lines: list[np.ndarray]
    lengths_m: list[float]


def build_shoreline(
    pixel_lines: list[np.ndarray],
    georef: GeoRef,
    *,
    min_length_m: float = 0.0,
    smooth: int = 0,
    simplify_tolerance: float = 0.0,
) -> Shoreline:
    """Pixel-space polylines -> map coordinates, smoothed (Chaikin ``smooth`` iterations),
    simplified (``simplify_tolerance`` in map units), lines shorter than ``min_length_m``
    metres dropped."""
    lines = []
    for ln in pixel_lines:
        if smooth:
            ln = chaikin(ln, smooth)
        x, y = georef.pixel_to_map(ln[:, 0], ln[:, 1])
        mxy = np.stack([x, y], axis=1)
        if simplify_tolerance > 0:
            mxy = simplify(mxy, simplify_tolerance)
        if len(mxy) >= 2:
            lines.append(mxy)
    lengths = lengths_m(lines, georef)
    if min_length_m > 0:
        keep = [i for i, L in enumerate(lengths) if L >= min_length_m]
        lines = [lines[i] for i in keep]
        lengths = [lengths[i] for i in keep]
    return Shoreline(lines, lengths)
