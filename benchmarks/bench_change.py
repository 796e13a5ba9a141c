"""``change``'s core without any file: crossings and statistics for 1,000 transects x 100 dates.

A round lake 5 km in radius (a 20,000-vertex ring) with 1,000 transects cast on it; 100
dates of shorelines (5,000-vertex rings, radius shrinking 1 m a date, each jittered by a
metre). Timed separately: casting the transects, the crossings of all dates (one vectorised
pass per date: segments x STR-tree x closed-form intersection), outlier removal, and the
DSAS statistics (SCE, NSM, EPR, LRR, WLR), best of 3 runs.

    python -m benchmarks change [--transects 1000] [--dates 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _ring(r: float, n: int, phase: float = 0.0) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + phase
    xy = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    return np.vstack([xy, xy[:1]])


def run(transects: int = 1000, dates: int = 100, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` seconds of each stage."""
    import shapely

    from backend.change.outliers import remove_outliers
    from backend.change.positions import CrossingFinder, choose
    from backend.change.rates import change_statistics
    from backend.change.transects import cast_transects

    rng = np.random.default_rng(0)
    radius = 5000.0
    base = _ring(radius, 20000)
    spacing = shapely.linestrings(base).length / transects
    shores = [
        [_ring(radius - k + rng.normal(0, 1.0), 5000, rng.uniform(0, 0.001))] for k in range(dates)
    ]
    years = 2016.0 + np.arange(dates) / 12.0

    def lake(xy: np.ndarray) -> np.ndarray:
        return (np.hypot(*xy.T) < radius).astype(np.float32)

    best: dict[str, float] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        t = cast_transects([base], spacing=spacing, length=300.0, water_share=lake)
        t1 = time.perf_counter()
        finder = CrossingFinder(t)
        pos = np.empty((len(t), dates))
        for j, lines in enumerate(shores):
            tr, d = finder.crossings(lines)
            pos[:, j], _ = choose(tr, d, len(t))
        t2 = time.perf_counter()
        clean, _ = remove_outliers(pos, 40.0, 5, 30.0)
        t3 = time.perf_counter()
        stats = change_statistics(clean, years, 10.0)
        t4 = time.perf_counter()
        for key, seconds in (
            ("cast_s", t1 - t0),
            ("crossings_s", t2 - t1),
            ("outliers_s", t3 - t2),
            ("statistics_s", t4 - t3),
        ):
            best[key] = min(best.get(key, np.inf), seconds)
    assert len(t) == transects and np.isfinite(pos).all()
    assert abs(np.median(stats["lrr"]) - 12.0) < 0.5  # 1 m a date, 12 dates a year
    best["total_s"] = sum(best.values())
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks change")
    p.add_argument("--transects", type=int, default=1000)
    p.add_argument("--dates", type=int, default=100)
    args = p.parse_args(argv or [])
    best = run(args.transects, args.dates)
    print(f"{args.transects} transects x {args.dates} dates (best of 3):")
    for key, seconds in best.items():
        print(f"  {key[:-2]:<11} {seconds:7.3f} s")
    pairs = args.transects * args.dates
    print(f"  {pairs / best['crossings_s']:,.0f} transect-date crossings per second")


if __name__ == "__main__":
    main()
