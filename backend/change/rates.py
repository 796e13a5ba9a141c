"""Shoreline-change statistics per transect, as DSAS (Himmelstoss et al. 2021, DSAS 5.1
user guide) and QSCAT define them; every formula is in docs/change.md.

Inputs: positions float64 (n transects, T dates) in metres from the baseline, positive
towards the water, NaN missing; times float64 (T,) in decimal years; uncertainty float64
(T,) or (n, T) in metres (one standard deviation of a position). Everything is computed
for all transects at once with masked sums (no loop over transects).

Signs follow DSAS: positive = the shoreline moved towards the water (accretion, or a falling
lake), negative = towards the land (erosion, a rising lake).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as _st

FIELDS = (
    "n_dates",
    "date_first",
    "date_last",
    "sce",
    "nsm",
    "epr",
    "epr_unc",
    "lrr",
    "lrr_r2",
    "lrr_se",
    "lrr_se_slope",
    "lrr_ci95",
    "lrr_intercept",
    "wlr",
    "wlr_r2",
    "wlr_se",
    "wlr_se_slope",
    "wlr_ci95",
    "wlr_intercept",
)


def _regression(y: np.ndarray, t: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted least squares y = a + b t per row (w = 0 where missing) -> slope, intercept
    (at t = 0), R², standard error of the estimate, of the slope, and the slope's 95 % CI."""
    n = (w > 0).sum(axis=1)
    sw = w.sum(axis=1)
    y0 = np.where(w > 0, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = (w * t).sum(axis=1) / sw
        ym = (w * y0).sum(axis=1) / sw
        dt = t - tm[:, None]
        dy = y0 - ym[:, None]
        sxx = (w * dt**2).sum(axis=1)
        sxy = (w * dt * dy).sum(axis=1)
        syy = (w * dy**2).sum(axis=1)
        slope = sxy / sxx
        intercept = ym - slope * tm
        resid = np.where(w > 0, y0 - intercept[:, None] - slope[:, None] * t, 0.0)
        sse = (w * resid**2).sum(axis=1)
        dof = n - 2
        r2 = np.where(syy > 0, 1.0 - sse / syy, np.nan)
        se = np.sqrt(sse / dof)
        se_slope = se / np.sqrt(sxx)
        tcrit = _st.t.ppf(0.975, np.maximum(dof, 1))
    ok2 = (n >= 2) & (sxx > 0)
    ok3 = ok2 & (dof >= 1)
    nan = np.nan
    return {
        "slope": np.where(ok2, slope, nan),
        "intercept": np.where(ok2, intercept, nan),
        "r2": np.where(ok3, r2, nan),
        "se": np.where(ok3, se, nan),
        "se_slope": np.where(ok3, se_slope, nan),
        "ci95": np.where(ok3, tcrit * se_slope, nan),
    }


def change_statistics(
    positions: np.ndarray, years: np.ndarray, uncertainty: np.ndarray | float
) -> dict[str, np.ndarray]:
    """Positions (n, T), years (T,), uncertainty (T,) | (n, T) | scalar -> a dict of (n,)
    arrays named by :data:`FIELDS` (metres, years, metres per year; NaN where too few dates:
    NSM/EPR need 2, LRR/WLR 2 for the rate and 3 for R², errors and intervals).

    ``date_first``/``date_last`` are the decimal years of the oldest and youngest valid
    dates."""
    p = np.asarray(positions, np.float64)
    t = np.asarray(years, np.float64)
    sigma = np.broadcast_to(np.asarray(uncertainty, np.float64), p.shape)
    valid = ~np.isnan(p)
    n, T = p.shape
    count = valid.sum(axis=1)
    any_ = count > 0
    first = np.argmax(valid, axis=1)
    last = T - 1 - np.argmax(valid[:, ::-1], axis=1)
    rows = np.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sce = np.nanmax(p, axis=1) - np.nanmin(p, axis=1)
    nsm = np.where(count >= 2, p[rows, last] - p[rows, first], np.nan)
    span = t[last] - t[first]
    with np.errstate(invalid="ignore", divide="ignore"):
        epr = np.where(span > 0, nsm / span, np.nan)
        epr_unc = np.where(span > 0, np.hypot(sigma[rows, first], sigma[rows, last]) / span, np.nan)
    ols = _regression(p, t, valid.astype(np.float64))
    with np.errstate(divide="ignore"):
        weights = np.where(valid & (sigma > 0), 1.0 / np.where(sigma > 0, sigma, 1.0) ** 2, 0.0)
    wls = _regression(p, t, weights)
    out = {
        "n_dates": count,
        "date_first": np.where(any_, t[first], np.nan),
        "date_last": np.where(any_, t[last], np.nan),
        "sce": np.where(any_, sce, np.nan),
        "nsm": nsm,
        "epr": epr,
        "epr_unc": epr_unc,
    }
    for prefix, fit in (("lrr", ols), ("wlr", wls)):
        out[prefix] = fit["slope"]
        out[f"{prefix}_r2"] = fit["r2"]
        out[f"{prefix}_se"] = fit["se"]
        out[f"{prefix}_se_slope"] = fit["se_slope"]
        out[f"{prefix}_ci95"] = fit["ci95"]
        out[f"{prefix}_intercept"] = fit["intercept"]
    return out


def default_uncertainty(
    pixel_size: np.ndarray, cloud_share: np.ndarray, factor: float = 2.0
) -> np.ndarray:
    """Per-date position uncertainty in metres (T,): the pixel size, grown with the share of
    the scene hidden by cloud or shadow: ``pixel * (1 + factor * share)``. A sub-pixel
    shoreline of a clear 10 m scene is good to about one pixel (CoastSat and others measure
    ~10 m RMSE on Sentinel-2); cloud edges and haze make it worse."""
    share = np.nan_to_num(np.asarray(cloud_share, np.float64), nan=0.0)
    return np.asarray(pixel_size, np.float64) * (1.0 + factor * np.clip(share, 0.0, 1.0))
