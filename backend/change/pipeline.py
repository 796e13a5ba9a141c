"""Dated scenes -> transects, positions, outliers, statistics: the change analysis in order.

Each step is a function of the previous step's result; :func:`analyse` runs them. Writing
files is :mod:`backend.change.outputs`' job, drawing :mod:`backend.change.plots`'.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backend.change import baseline as bl
from backend.change.crs import transform_xy, working_crs
from backend.change.dates import decimal_years
from backend.change.levels import WaterLevels
from backend.change.outliers import remove_outliers
from backend.change.positions import CrossingFinder, choose, unseen
from backend.change.rates import change_statistics, default_uncertainty
from backend.change.scenes import Scene, flag_quality
from backend.change.transects import Transects, cast_transects, transects_from_lines
from backend.change.vectors import read_lines
from backend.core.errors import UserError
from backend.segment.progress import NullReporter, Reporter


@dataclass(frozen=True)
class ChangeOptions:
    """What the analysis does; the CLI's options map one to one onto these fields."""

    spacing: float = 50.0
    length: float = 300.0
    landward: float | None = None
    smoothing: float | None = None
    min_baseline_length: float = 500.0
    baseline: str | None = None
    transects: str | None = None
    transect_id_field: str = "transect_id"
    crossing: str = "nearest"
    max_change: float = 40.0
    median_window: int = 5
    median_threshold: float = 30.0
    max_cloud: float = 0.5
    max_shadow: float = 0.05
    jump_z: float = 3.5
    jump_min: float = 0.015
    keep_flagged: bool = False
    coherent: bool = True
    uncertainty: float | None = None
    crs: str | None = None
    levels: WaterLevels | None = None


@dataclass
class ChangeResult:
    """Everything the outputs need. Float64 (n, T), NaN missing: measured (as the shoreline
    crossed), raw (+ the level shift), positions (raw after outliers and flags); reason int8
    (n, T) (outliers module); used bool (T,)."""

    scenes: list[Scene]
    crs: str
    transects: Transects
    baselines: list[np.ndarray]
    years: np.ndarray
    raw: np.ndarray
    measured: np.ndarray
    positions: np.ndarray
    crossings: np.ndarray
    unseen: np.ndarray
    reason: np.ndarray
    used: np.ndarray
    uncertainty: np.ndarray
    stats: dict[str, np.ndarray]
    corrected: bool
    shift: np.ndarray
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _lines_in(path: str, crs: str) -> list[np.ndarray]:
    lines, src, _ = read_lines(path)
    if not lines:
        return []
    if not src:
        return lines
    flat = transform_xy(np.concatenate(lines), src, crs)
    return np.split(flat, np.cumsum([len(ln) for ln in lines])[:-1])


def _mask_crs(path: str) -> str:
    import rasterio

    with rasterio.open(path) as src:
        return src.crs.to_wkt() if src.crs else ""


def _pixel_size(path: str | None) -> float:
    if not path:
        return 10.0
    import rasterio

    with rasterio.open(path) as src:
        return float((abs(src.transform.a) + abs(src.transform.e)) / 2.0)


def build_transects(
    opts: ChangeOptions, crs: str, share: bl.WaterShare | None
) -> tuple[Transects, list[np.ndarray]]:
    """User transects, or transects cast on the user's baseline or the median shoreline."""
    baselines = _lines_in(opts.baseline, crs) if opts.baseline else []
    if opts.transects:
        lines, src, ids = read_lines(opts.transects, opts.transect_id_field)
        if src and lines:
            flat = transform_xy(np.concatenate(lines), src, crs)
            lines = np.split(flat, np.cumsum([len(ln) for ln in lines])[:-1])
        use_ids = (
            ids if all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids) else None
        )
        return transects_from_lines(lines, use_ids, baselines or None), baselines
    if not baselines:
        if share is None:
            raise UserError("no water masks to draw the median shoreline; pass --baseline")
        baselines = bl.median_shoreline(share, min_length=opts.min_baseline_length)
        if not baselines:
            raise UserError(
                "the median shoreline has no line of --min-baseline-length "
                f"{opts.min_baseline_length} m or more; lower it or pass --baseline"
            )
    t = cast_transects(
        baselines,
        opts.spacing,
        opts.length,
        landward=opts.landward,
        smoothing=opts.smoothing,
        water_share=share,
    )
    return t, baselines


def analyse(
    scenes: list[Scene], opts: ChangeOptions, reporter: Reporter | None = None
) -> ChangeResult:
    """The whole analysis on dated scenes (date order) -> :class:`ChangeResult`."""
    reporter = reporter or NullReporter()
    if len(scenes) < 2:
        raise UserError(
            f"{len(scenes)} dated scene(s) with a shoreline: change needs two or more; give "
            "more scenes (the log says why any were left out: failed, no shoreline, or undated, "
            "which --dates CSV dates)"
        )
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    flag_quality(scenes, opts.max_cloud, opts.max_shadow, opts.jump_z, opts.jump_min)
    used = np.array([opts.keep_flagged or not s.flags for s in scenes])
    if used.sum() < 2:
        raise UserError("fewer than two dates pass the quality flags; pass --keep-flagged")
    mask_crs = [_mask_crs(s.mask) for s in scenes if s.mask and Path(s.mask).exists()]
    crs = working_crs(mask_crs, opts.crs)
    masks = [
        s.mask for s, u in zip(scenes, used, strict=True) if u and s.mask and Path(s.mask).exists()
    ]
    share = bl.water_share(masks, crs) if masks else None
    clock["baseline_s"] = time.perf_counter() - t0
    transects, baselines = build_transects(opts, crs, share)
    reporter.event("transects", count=len(transects), dropped=transects.dropped)
    clock["transects_s"] = time.perf_counter() - t0 - clock["baseline_s"]

    t1 = time.perf_counter()
    n, T = len(transects), len(scenes)
    raw = np.full((n, T), np.nan)
    count = np.zeros((n, T), np.int64)
    hidden = np.zeros((n, T), bool)
    finder = CrossingFinder(transects)
    for j, s in enumerate(scenes):
        tr_i, dist = finder.crossings(_lines_in(s.shoreline, crs))
        raw[:, j], count[:, j] = choose(tr_i, dist, n, opts.crossing)
        if s.mask and Path(s.mask).exists():
            mask, transform = bl.read_mask(s.mask, crs, bl.mask_grid(s.mask, crs))
            hidden[:, j] = unseen(transects, mask, transform, _pixel_size(s.mask) / 2.0)
        reporter.progress(stage="positions", fraction=(j + 1) / T, done=j + 1, total=T)
    raw[hidden] = np.nan
    clock["positions_s"] = time.perf_counter() - t1

    years = decimal_years([s.date for s in scenes])
    shift = np.zeros((n, T))
    corrected = opts.levels is not None
    if opts.levels is not None:
        shift = opts.levels.shift([s.date for s in scenes], transects.transect_id)
    shifted = raw + shift  # NaN shift (no level for the date): the position is missing
    work = np.where(used[None, :], shifted, np.nan)
    common = common_shift(work) if opts.coherent else np.zeros(T)
    _, reason = remove_outliers(
        work - common[None, :], opts.max_change, opts.median_window, opts.median_threshold
    )
    clean = np.where(reason > 0, np.nan, work)
    if opts.uncertainty is not None:
        sigma = np.full(T, float(opts.uncertainty))
    else:
        sigma = default_uncertainty(
            np.array([_pixel_size(s.mask) for s in scenes]),
            np.array([_cloud_share(s) for s in scenes]),
        )
    t2 = time.perf_counter()
    stats = change_statistics(clean, years, sigma)
    clock["statistics_s"] = time.perf_counter() - t2
    notes = list(transects.notes)
    if not corrected:
        notes.append("positions are not corrected for water level (no --levels CSV)")
    return ChangeResult(
        scenes=scenes,
        crs=crs,
        transects=transects,
        baselines=baselines,
        years=years,
        raw=shifted,
        measured=raw,
        positions=clean,
        crossings=count,
        unseen=hidden,
        reason=reason,
        used=used,
        uncertainty=sigma,
        stats=stats,
        corrected=corrected,
        shift=shift,
        notes=notes,
        seconds={k: round(v, 3) for k, v in clock.items()},
    )


def common_shift(positions: np.ndarray, min_transects: int = 5) -> np.ndarray:
    """The shift the whole shore makes on each date: the median over transects of the
    positions minus each transect's own median, float64 (T,); 0 where fewer than
    ``min_transects`` transects see the date. Outliers are sought in what is left, so a
    change that the shore makes together (a lake level, a tide) is never removed."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        anomaly = positions - np.nanmedian(positions, axis=1, keepdims=True)
        shift = np.nanmedian(anomaly, axis=0)
    seen = np.isfinite(anomaly).sum(axis=0)
    return np.where((seen >= min_transects) & np.isfinite(shift), shift, 0.0)


def _cloud_share(scene: Scene) -> float:
    """The report's cloud + shadow share, else the mask's nodata share (cloud is nodata)."""
    if any(k in scene.quality for k in ("cloud_fraction", "shadow_fraction")):
        return scene.cloud_share
    if not scene.mask or not Path(scene.mask).exists():
        return 0.0
    import rasterio

    with rasterio.open(scene.mask) as src:
        m = src.read(1)
    return float((m == bl.NODATA).mean())
