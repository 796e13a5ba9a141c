"""Outliers of cross-shore position series: spikes and departures from a running median.

Positions are float64 (n transects, T dates), NaN missing, dates in time order. Both filters
compare a date with its valid neighbours on the same transect (missing dates skipped), are
vectorised over all transects, and return what they removed so it can be reported.

- ``spikes`` (CoastSat's "maximum cross-shore change" idea): a position that jumps more
  than ``max_change`` metres away from both its previous and its next valid position, in
  the same direction, is a spike (out and back). The first and the last date, which have one
  neighbour, are spikes when they differ by more than ``max_change`` in the same direction
  from both of their two nearest valid dates. Repeated until none is left.
- ``median``: a position farther than ``threshold`` metres from the median of the ``window``
  valid positions centred on it (fewer at the ends of the series) is removed.
"""

from __future__ import annotations

import numpy as np

KEPT, SPIKE, MEDIAN = 0, 1, 2
REASONS = {SPIKE: "spike", MEDIAN: "median"}


def _neighbours(valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the previous and next valid date of each cell (-1 / T when none), (n, T)."""
    n, T = valid.shape
    cols = np.broadcast_to(np.arange(T), (n, T))
    prev = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    prev = np.concatenate([np.full((n, 1), -1), prev[:, :-1]], axis=1)
    nxt = np.minimum.accumulate(np.where(valid, cols, T)[:, ::-1], axis=1)[:, ::-1]
    nxt = np.concatenate([nxt[:, 1:], np.full((n, 1), T)], axis=1)
    return prev, nxt


def _take(p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """p[row, idx] with NaN where idx is out of range."""
    T = p.shape[1]
    ok = (idx >= 0) & (idx < T)
    out = np.take_along_axis(p, np.clip(idx, 0, T - 1), axis=1)
    return np.where(ok, out, np.nan)


def spikes(p: np.ndarray, max_change: float) -> np.ndarray:
    """Cells removed as spikes (module docstring), bool (n, T); ``max_change`` <= 0: none."""
    removed = np.zeros(p.shape, bool)
    if max_change <= 0 or p.size == 0:
        return removed
    p = p.copy()
    for _ in range(p.shape[1]):
        valid = ~np.isnan(p)
        prev, nxt = _neighbours(valid)
        T = p.shape[1]
        prev2 = _take(np.broadcast_to(prev, p.shape).astype(np.float64), prev)
        prev2 = np.where(np.isnan(prev2), -1, prev2).astype(np.int64)
        nxt2 = _take(np.broadcast_to(nxt, p.shape).astype(np.float64), nxt)
        nxt2 = np.where(np.isnan(nxt2), T, nxt2).astype(np.int64)
        has_prev, has_next = prev >= 0, nxt < T
        a = np.where(has_prev & has_next, prev, np.where(has_prev, prev, nxt))
        b = np.where(has_prev & has_next, nxt, np.where(has_prev, prev2, nxt2))
        da, db = p - _take(p, a), p - _take(p, b)
        with np.errstate(invalid="ignore"):
            new = (
                valid
                & (np.abs(da) > max_change)
                & (np.abs(db) > max_change)
                & (np.sign(da) == np.sign(db))
            )
        if not new.any():
            break
        removed |= new
        p[new] = np.nan
    return removed


def median(p: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """Cells farther than ``threshold`` from their running median of ``window`` valid dates,
    bool (n, T); ``window`` < 3 or ``threshold`` <= 0: none."""
    if window < 3 or threshold <= 0 or p.size == 0:
        return np.zeros(p.shape, bool)
    valid = ~np.isnan(p)
    order = np.argsort(~valid, axis=1, kind="stable")  # valid dates first, in time order
    packed = np.take_along_axis(p, order, axis=1)
    count = valid.sum(axis=1)
    half = window // 2
    padded = np.pad(packed, ((0, 0), (half, half)), constant_values=np.nan)
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(views, axis=2)
        far = np.abs(packed - med) > threshold
    far &= np.arange(p.shape[1])[None, :] < count[:, None]
    out = np.zeros(p.shape, bool)
    np.put_along_axis(out, order, far, axis=1)
    return out


def remove_outliers(
    p: np.ndarray, max_change: float, window: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes first, then the running median on what is left -> (cleaned positions with NaN
    where removed, reason int8 (n, T): KEPT, SPIKE or MEDIAN)."""
    reason = np.zeros(p.shape, np.int8)
    s = spikes(p, max_change)
    reason[s] = SPIKE
    clean = np.where(s, np.nan, p)
    m = median(clean, window, threshold)
    reason[m] = MEDIAN
    return np.where(m, np.nan, clean), reason
