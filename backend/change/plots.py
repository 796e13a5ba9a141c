"""Figures of a change analysis (matplotlib, Agg): one per transect and one overview.

Per transect: position against date, the dates used (dots), removed as outliers (red
crosses) and left out by quality flags (grey), the LRR line and its 95 % interval.
Overview: the transects on a map coloured by LRR (diverging: blue towards the water, red
towards the land), and the series of all transects (each minus its own mean) with their
median and interquartile band per date.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

from backend.change.pipeline import ChangeResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def _dates(result: ChangeResult) -> list[datetime]:
    return [s.date for s in result.scenes]


def transect_plot(result: ChangeResult, i: int, path: Path, plt=None) -> Path:
    """The time series of transect ``i`` (row index) -> PNG at ``path``."""
    plt = plt or _plt()
    dates = np.array(_dates(result))
    raw, pos = result.raw[i], result.positions[i]
    st = {k: v[i] for k, v in result.stats.items()}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    used = np.isfinite(pos)
    removed = result.reason[i] > 0
    excluded = ~result.used & np.isfinite(raw)
    ax.errorbar(
        dates[used],
        pos[used],
        yerr=result.uncertainty[used],
        fmt="o",
        ms=4,
        color="#1f4e79",
        elinewidth=0.6,
        label="used",
    )
    if removed.any():
        ax.plot(dates[removed], raw[removed], "x", color="#c0392b", label="outlier removed")
    if excluded.any():
        ax.plot(dates[excluded], raw[excluded], "o", mfc="none", color="0.6", label="flagged date")
    if np.isfinite(st["lrr"]):
        years = result.years
        x = np.linspace(np.nanmin(years[used]), np.nanmax(years[used]), 50)
        fit = st["lrr_intercept"] + st["lrr"] * x
        ax.plot(
            _to_dates(x),
            fit,
            color="k",
            lw=1,
            label=f"LRR {st['lrr']:+.2f} ± {st['lrr_ci95']:.2f} m/yr (95 %)",
        )
        if np.isfinite(st["lrr_ci95"]):
            xm = np.nanmean(years[used])
            ym = st["lrr_intercept"] + st["lrr"] * xm
            lo = ym + (st["lrr"] - st["lrr_ci95"]) * (x - xm)
            hi = ym + (st["lrr"] + st["lrr_ci95"]) * (x - xm)
            ax.fill_between(
                _to_dates(x), np.minimum(lo, hi), np.maximum(lo, hi), color="0.5", alpha=0.2
            )
    tid = int(result.transects.transect_id[i])
    ax.set_title(
        f"Transect {tid}: NSM {st['nsm']:+.1f} m, EPR {st['epr']:+.2f} m/yr, n = {int(st['n_dates'])}",
        fontsize=10,
    )
    ax.set_ylabel("position (m, + towards water)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _to_dates(years: np.ndarray) -> list[datetime]:
    from datetime import timedelta

    out = []
    for y in years:
        base = int(np.floor(y))
        start, end = datetime(base, 1, 1), datetime(base + 1, 1, 1)
        out.append(start + timedelta(seconds=float(y - base) * (end - start).total_seconds()))
    return out


def overview_plot(result: ChangeResult, path: Path, title: str = "") -> Path:
    """Map of the transects by LRR + the median series of all transects -> PNG."""
    plt = _plt()
    from matplotlib.collections import LineCollection
    from matplotlib.colors import TwoSlopeNorm

    t = result.transects
    lrr = result.stats["lrr"]
    fig, (ax_map, ax_ts) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1, 1.5]}
    )
    for line in result.baselines:
        ax_map.plot(line[:, 0], line[:, 1], color="0.4", lw=0.8)
    finite = lrr[np.isfinite(lrr)]
    lim = float(np.nanpercentile(np.abs(finite), 95)) if finite.size else 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-max(lim, 1e-6), vmax=max(lim, 1e-6))
    segs = np.stack([t.origin, t.end], axis=1)
    lc = LineCollection(segs, cmap="RdBu", norm=norm, linewidths=2)
    lc.set_array(np.nan_to_num(lrr))
    ax_map.add_collection(lc)
    ax_map.autoscale()
    ax_map.set_aspect("equal")
    ax_map.set_xticks([])
    ax_map.set_yticks([])
    fig.colorbar(lc, ax=ax_map, shrink=0.8, label="LRR (m/yr, + towards water)")
    ax_map.set_title(
        f"{len(t)} transects, median LRR {np.nanmedian(lrr) if finite.size else np.nan:+.2f} m/yr",
        fontsize=10,
    )

    dates = np.array(_dates(result))
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            anomaly = result.positions - np.nanmean(result.positions, axis=1, keepdims=True)
            flagged_raw = result.raw - np.nanmean(result.positions, axis=1, keepdims=True)
            med = np.nanmedian(anomaly, axis=0)
            q1, q3 = np.nanpercentile(anomaly, [25, 75], axis=0)
            fmed = np.nanmedian(flagged_raw, axis=0)
    ok = np.isfinite(med)
    ax_ts.fill_between(
        dates[ok], q1[ok], q3[ok], color="#1f4e79", alpha=0.2, label="interquartile range"
    )
    ax_ts.plot(dates[ok], med[ok], "o-", color="#1f4e79", ms=4, label="median of transects")
    bad = ~result.used & np.isfinite(fmed)
    if bad.any():
        ax_ts.plot(
            dates[bad],
            fmed[bad],
            "s",
            mfc="none",
            color="0.55",
            label="flagged dates (left out): median",
        )
    ax_ts.axhline(0, color="0.3", lw=0.6)
    ax_ts.set_ylabel("position minus the transect's mean (m, + towards water)")
    ax_ts.grid(alpha=0.3)
    ax_ts.legend(fontsize=8, loc="best")
    corrected = "water-level corrected" if result.corrected else "not corrected for water level"
    ax_ts.set_title(
        f"{int(result.used.sum())} of {len(dates)} dates used; {corrected}", fontsize=10
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def all_plots(
    result: ChangeResult, out_dir: Path, which: str = "all", title: str = ""
) -> dict[str, Path]:
    """``which``: all (overview + one per transect in plots/), overview, none."""
    paths: dict[str, Path] = {}
    if which == "none":
        return paths
    paths["overview_png"] = overview_plot(result, out_dir / "overview.png", title)
    if which == "all":
        folder = out_dir / "plots"
        folder.mkdir(exist_ok=True)
        plt = _plt()
        for i, tid in enumerate(result.transects.transect_id):
            transect_plot(result, i, folder / f"transect_{int(tid):04d}.png", plt)
        paths["plots_dir"] = folder
    return paths
