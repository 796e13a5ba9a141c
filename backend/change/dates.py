"""Acquisition dates of scenes: from a user CSV, the raster's metadata, or its file name.

Order of trust (first that gives a date wins; the source is recorded):
  1. a CSV the user gives (``scene,date``: the scene's file name, stem or path);
  2. the raster's metadata: acquisition tags (``DATE_ACQUIRED``, ``SENSING_TIME``,
     ``PRODUCT_START_TIME``, ...), a Sentinel-2 or Landsat product name in any tag,
     ``TIFFTAG_DATETIME``, a band description or band tag ``date``;
  3. the file name: a Sentinel-2 or Landsat product name, ``YYYY-MM-DD``, ``YYYYMMDD``.
A scene for which none of them gives exactly one date is reported as undated; it is never
guessed (two different dates in one name are ambiguous, not a choice).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from backend.core.errors import UserError

# Tags that hold the acquisition time itself (GDAL's Sentinel-2, Landsat MTL, ENVI, ...).
ACQUISITION_KEYS = (
    "ACQUISITION_DATE",
    "ACQUISITIONDATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_START",
    "PRODUCT_START_TIME",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "ACQUISITION_START_TIME",
    "DATE",
)
_S2_PRODUCT = re.compile(r"S2[A-D]_MSI(?:L1C|L2A|L2AP)_(\d{8})T(\d{6})")
_S2_GRANULE = re.compile(r"(?<![0-9A-Za-z])T\d{2}[A-Z]{3}_(\d{8})T(\d{6})")
_LANDSAT = re.compile(r"L[COTEM]0\d_L[12A-Z]{3}_\d{6}_(\d{8})_\d{8}_\d{2}_[A-Z0-9]{2}")
_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?")
_TIFF = re.compile(r"(?<!\d)(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?(?!\d)")


@dataclass(frozen=True)
class SceneDate:
    """A scene's acquisition time (None: undated), where it came from, and why not if not."""

    path: str
    date: datetime | None
    source: str  # "csv", "metadata:<key>", "band:<n>", "name", or "" when undated
    problem: str = ""


def _make(y: str, mo: str, d: str, h=None, mi=None, s=None) -> datetime | None:
    try:
        out = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0))
    except ValueError:
        return None
    return out if 1950 <= out.year <= 2100 else None


def _compact(stamp: str, clock: str | None = None) -> datetime | None:
    return _make(
        stamp[:4],
        stamp[4:6],
        stamp[6:8],
        *((clock[:2], clock[2:4], clock[4:6]) if clock else ()),
    )


def product_date(text: str) -> datetime | None:
    """The acquisition time in a Sentinel-2 or Landsat product or granule name, else None."""
    for pattern in (_S2_PRODUCT, _S2_GRANULE):
        m = pattern.search(text)
        if m:
            return _compact(m.group(1), m.group(2))
    m = _LANDSAT.search(text)
    return _compact(m.group(1)) if m else None


def date_from_text(text: str) -> tuple[datetime | None, str]:
    """One date in free text (a tag value, a band description, a file name) -> (date, problem).

    Product names first (their other stamps are processing dates), then ISO
    ``YYYY-MM-DD[THH:MM[:SS]]``, TIFF ``YYYY:MM:DD HH:MM:SS`` and compact ``YYYYMMDD``. Two
    different days in the text: (None, "ambiguous ...")."""
    found = product_date(text)
    if found:
        return found, ""
    days: dict[tuple[int, int, int], datetime] = {}
    for pattern in (_ISO, _TIFF, _COMPACT):
        for m in pattern.finditer(text):
            g = m.groups()
            dt = _make(*g)
            if dt is not None:
                key = (dt.year, dt.month, dt.day)
                if key not in days or days[key].time() < dt.time():
                    days[key] = dt
    if len(days) > 1:
        listed = ", ".join(sorted(d.strftime("%Y-%m-%d") for d in days.values()))
        return None, f"ambiguous: several dates in {text!r} ({listed})"
    return (next(iter(days.values())), "") if days else (None, "")


def metadata_date(path: str) -> tuple[datetime | None, str, str]:
    """The date in a raster's tags or band descriptions -> (date, source, problem)."""
    from osgeo import gdal

    gdal.UseExceptions()
    try:
        ds = gdal.Open(str(path))
    except RuntimeError as exc:
        return None, "", f"cannot open: {exc}"
    try:
        tags = {str(k).upper(): str(v) for k, v in (ds.GetMetadata() or {}).items()}
        for key in ACQUISITION_KEYS:
            if key in tags:
                dt, problem = date_from_text(tags[key])
                if dt or problem:
                    return dt, f"metadata:{key}", problem
        for key, value in tags.items():
            dt = product_date(value)
            if dt:
                return dt, f"metadata:{key}", ""
        if "TIFFTAG_DATETIME" in tags:
            dt, problem = date_from_text(tags["TIFFTAG_DATETIME"])
            if dt or problem:
                return dt, "metadata:TIFFTAG_DATETIME", problem
        for b in range(1, ds.RasterCount + 1):
            band = ds.GetRasterBand(b)
            band_tags = {str(k).lower(): str(v) for k, v in (band.GetMetadata() or {}).items()}
            desc = band.GetDescription() or ""
            texts = [band_tags["date"]] if "date" in band_tags else []
            if desc.lower().startswith("date"):
                texts.append(desc)
            for text in texts:
                dt, problem = date_from_text(text)
                if dt or problem:
                    return dt, f"band:{b}", problem
    finally:
        ds = None  # noqa: F841
    return None, "", ""


def load_date_csv(path: str | Path) -> dict[str, datetime]:
    """A user CSV ``scene,date`` (header optional; scene = file name, stem or path) -> dates
    by key. Raises UserError naming the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dates CSV {path} not found; pass a file with rows 'scene,date'")
    out: dict[str, datetime] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for i, row in enumerate(csv.reader(fh), start=1):
            if not row or not row[0].strip() or row[0].strip().startswith("#"):
                continue
            if len(row) < 2:
                raise UserError(f"{path} line {i}: expected 'scene,date', got {row!r}")
            dt, _ = date_from_text(row[1].strip())
            if dt is None:
                if i == 1:  # a header row
                    continue
                raise UserError(f"{path} line {i}: {row[1]!r} is not a date (use YYYY-MM-DD)")
            out[row[0].strip()] = dt
    return out


def _csv_lookup(path: str, user: dict[str, datetime]) -> datetime | None:
    p = Path(path)
    for key in (path, str(p.resolve()), p.name, p.stem):
        if key in user:
            return user[key]
    return None


def scene_date(path: str, user: dict[str, datetime] | None = None) -> SceneDate:
    """The acquisition date of the scene at ``path`` (module docstring for the order)."""
    if user:
        dt = _csv_lookup(path, user)
        if dt is not None:
            return SceneDate(path, dt, "csv")
    dt, source, problem = metadata_date(path) if Path(path).exists() else (None, "", "")
    if dt is not None:
        return SceneDate(path, dt, source)
    named, name_problem = date_from_text(Path(path).name)
    if named is not None:
        return SceneDate(path, named, "name")
    why = "; ".join(p for p in (problem, name_problem) if p) or (
        "no date in its metadata or file name"
    )
    return SceneDate(path, None, "", why)


def decimal_years(dates: list[datetime] | np.ndarray) -> np.ndarray:
    """Dates -> decimal years (year + fraction of that year elapsed), float64, as DSAS uses."""
    out = np.empty(len(dates), np.float64)
    for i, d in enumerate(dates):
        start = datetime(d.year, 1, 1)
        length = (datetime(d.year + 1, 1, 1) - start).total_seconds()
        out[i] = d.year + (d - start).total_seconds() / length
    return out
