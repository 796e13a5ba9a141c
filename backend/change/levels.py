"""Optional water-level correction (tide gauge, lake level): positions moved to one level.

A shoreline seen at water level ``h`` on a shore of slope ``tan(beta)`` lies
``(h - reference) / slope`` metres landward of where it would lie at the reference level,
so each position is moved by ``shift = (level - reference) / slope`` towards the water
(CoastSat's tidal correction, positions positive seaward). Nothing is downloaded: levels
come from the user's CSV (``date,level``: one per scene date, or a time series that is
interpolated linearly to each scene's time; a scene outside its time span gets no level and
its position is left out rather than left uncorrected), slopes from one number or a CSV
``transect_id,slope``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from backend.change.dates import date_from_text
from backend.core.errors import UserError


@dataclass(frozen=True)
class WaterLevels:
    """Levels (metres) at times, the reference level, and slopes by transect id (or one)."""

    times: tuple[datetime, ...]
    levels: tuple[float, ...]
    reference: float = 0.0
    slope: float | None = None
    slopes: dict[int, float] | None = None

    def level_at(self, dates: list[datetime]) -> np.ndarray:
        """Water level at each date (T,), NaN outside the levels' time span."""
        base = self.times[0]
        x = np.array([(t - base).total_seconds() for t in self.times])
        q = np.array([(d - base).total_seconds() for d in dates])
        out = np.interp(q, x, np.asarray(self.levels, np.float64))
        out[(q < x.min()) | (q > x.max())] = np.nan
        return out

    def shift(self, dates: list[datetime], transect_ids: np.ndarray) -> np.ndarray:
        """Cross-shore shift in metres (n transects, T dates), NaN where unknown."""
        level = self.level_at(dates)
        if self.slopes is not None:
            slope = np.array([self.slopes.get(int(i), np.nan) for i in transect_ids])
        else:
            slope = np.full(len(transect_ids), float(self.slope))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (level[None, :] - self.reference) / slope[:, None]


LEVELS_FIX = "pass --levels a CSV with rows 'date,level' (YYYY-MM-DD, metres)"
SLOPE_FIX = (
    "pass --slope a number (rise over run, e.g. 0.05) or a CSV with rows 'transect_id,slope'"
)


def _rows(path: Path, fix: str) -> list[list[str]]:
    if not path.is_file():
        raise UserError(f"{path} not found; {fix}")
    with path.open(newline="", encoding="utf-8") as fh:
        return [r for r in csv.reader(fh) if r and r[0].strip() and not r[0].startswith("#")]


def read_levels(
    path: str | Path, slope: str | float, reference: float | None = None
) -> WaterLevels:
    """A levels CSV and a slope (a number, or a CSV ``transect_id,slope``) -> WaterLevels;
    ``reference`` defaults to the mean level."""
    path = Path(path)
    pairs = []
    for i, row in enumerate(_rows(path, LEVELS_FIX), start=1):
        when, _ = date_from_text(row[0])
        try:
            value = float(row[1])
        except (IndexError, ValueError):
            value = None
        if when is None or value is None:
            if i == 1:
                continue  # header
            raise UserError(f"{path} line {i}: expected 'date,level' (metres), got {row!r}")
        pairs.append((when, value))
    if not pairs:
        raise UserError(f"{path} has no 'date,level' rows; add one per date, e.g. 2020-06-01,312.4")
    pairs.sort()
    times, levels = zip(*pairs, strict=True)
    ref = float(np.mean(levels)) if reference is None else float(reference)
    try:
        one = float(slope)
    except (TypeError, ValueError):
        one = None
    if one is not None:
        if one <= 0:
            raise UserError("--slope must be positive (rise over run, e.g. 0.05)")
        return WaterLevels(times, levels, ref, slope=one)
    slopes = {}
    for i, row in enumerate(_rows(Path(slope), SLOPE_FIX), start=1):
        try:
            slopes[int(row[0])] = float(row[1])
        except (IndexError, ValueError):
            if i == 1:
                continue
            raise UserError(
                f"{slope} line {i}: expected 'transect_id,slope', got {row!r}"
            ) from None
    return WaterLevels(times, levels, ref, slopes=slopes)
