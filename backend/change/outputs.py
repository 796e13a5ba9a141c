"""Files of a change analysis (all written atomically: a temporary name, then a rename).

``transects.gpkg`` (+ ``transects.qml``, the diverging rate style), ``positions.gpkg``
(a point per transect and date where the shoreline crossed it), ``shorelines.gpkg`` (each
date's shoreline in the working CRS with its date and quality), ``positions_wide.csv`` (a
row per date, a column per transect), ``positions_long.csv``, ``rates.csv``,
``outliers.csv``, ``change_report.json``. Names are defined once in :data:`NAMES`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from backend.change.outliers import REASONS
from backend.change.pipeline import ChangeResult, _lines_in
from backend.change.rates import FIELDS

NAMES = {
    "transects": "transects.gpkg",
    "transects_style": "transects.qml",
    "positions": "positions.gpkg",
    "shorelines": "shorelines.gpkg",
    "positions_wide": "positions_wide.csv",
    "positions_long": "positions_long.csv",
    "rates": "rates.csv",
    "outliers": "outliers.csv",
    "report_json": "change_report.json",
}
STYLE = Path(__file__).resolve().parents[2] / "resources" / "styles" / "transects_rate.qml"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


def _commit(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    tmp = _tmp(path)
    tmp.write_text(text, encoding="utf-8")
    return _commit(tmp, path)


def _status(result: ChangeResult) -> np.ndarray:
    """Status of every (transect, date): used, missing, unseen, spike, median, excluded:..."""
    n, T = result.raw.shape
    status = np.full((n, T), "used", dtype=object)
    status[np.isnan(result.measured)] = "missing"
    status[np.isfinite(result.measured) & np.isnan(result.raw)] = "no_level"
    status[result.unseen] = "unseen"
    for code, name in REASONS.items():
        status[result.reason == code] = name
    for j, s in enumerate(result.scenes):
        if not result.used[j]:
            status[~np.isnan(result.measured[:, j]), j] = "excluded:" + "+".join(s.flags)
    return status


def _write_layer(
    path: Path,
    geom_type: str,
    crs: str,
    fields: list[tuple[str, str]],
    features: list[tuple[Any, dict[str, Any]]],
    layer_name: str,
) -> Path:
    """Write a one-layer GeoPackage: fields (name, "real" | "int" | "str"), features
    (coordinates (k, 2) or (2,), attributes)."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    tmp = _tmp(path)
    if tmp.exists():
        tmp.unlink()
    ref = osr.SpatialReference()
    ref.ImportFromWkt(crs)
    ref.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    kinds = {"real": ogr.OFTReal, "int": ogr.OFTInteger64, "str": ogr.OFTString}
    gtype = {"line": ogr.wkbLineString, "point": ogr.wkbPoint}[geom_type]
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp))
    layer = ds.CreateLayer(layer_name, ref, gtype)
    for name, kind in fields:
        layer.CreateField(ogr.FieldDefn(name, kinds[kind]))
    defn = layer.GetLayerDefn()
    layer.StartTransaction()
    for coords, attrs in features:
        geom = ogr.Geometry(gtype)
        if geom_type == "point":
            geom.AddPoint_2D(float(coords[0]), float(coords[1]))
        else:
            for x, y in coords:
                geom.AddPoint_2D(float(x), float(y))
        feat = ogr.Feature(defn)
        feat.SetGeometry(geom)
        for name, value in attrs.items():
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                feat.SetFieldNull(name)
            else:
                feat.SetField(name, value.item() if isinstance(value, np.generic) else value)
        layer.CreateFeature(feat)
    layer.CommitTransaction()
    ds = None  # noqa: F841
    return _commit(tmp, path)


def _iso(result: ChangeResult) -> list[str]:
    return [s.date.strftime("%Y-%m-%d") for s in result.scenes]


def _year_to_iso(year: float) -> str | None:
    if not np.isfinite(year):
        return None
    from datetime import datetime, timedelta

    y = int(np.floor(year))
    start, end = datetime(y, 1, 1), datetime(y + 1, 1, 1)
    seconds = round((year - y) * (end - start).total_seconds())  # no 23:59:59.99 days
    return (start + timedelta(seconds=seconds)).strftime("%Y-%m-%d")


def rate_rows(result: ChangeResult) -> list[dict[str, Any]]:
    """One dict per transect: ids, statistics, removed counts, correction flag."""
    t = result.transects
    removed = (result.reason > 0).sum(axis=1)
    rows = []
    for i in range(len(t)):
        row: dict[str, Any] = {
            "transect_id": int(t.transect_id[i]),
            "baseline_id": int(t.baseline_id[i]),
        }
        for name in FIELDS:
            value = result.stats[name][i]
            row[name] = int(value) if name == "n_dates" else float(value)
        row["date_first"] = _year_to_iso(row["date_first"])
        row["date_last"] = _year_to_iso(row["date_last"])
        row["n_removed"] = int(removed[i])
        row["corrected"] = int(result.corrected)
        rows.append(row)
    return rows


def _csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(
            [
                ""
                if v is None or (isinstance(v, float) and not np.isfinite(v))
                else (round(v, 4) if isinstance(v, float) else v)
                for v in r
            ]
        )
    return _write_text(path, buf.getvalue())


def write_outputs(
    result: ChangeResult, out_dir: Path, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """Write every file of :data:`NAMES` into ``out_dir`` -> {kind: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    t = result.transects
    rows = rate_rows(result)
    int_fields = {"transect_id", "baseline_id", "n_dates", "n_removed", "corrected"}
    str_fields = {"date_first", "date_last"}
    fields = (
        [(k, "int" if k in int_fields else "str" if k in str_fields else "real") for k in rows[0]]
        if rows
        else []
    )
    lines = np.stack([t.origin, t.end], axis=1)
    paths["transects"] = _write_layer(
        out_dir / NAMES["transects"],
        "line",
        result.crs,
        fields,
        list(zip(lines, rows, strict=True)),
        "transects",
    )
    if STYLE.is_file():
        tmp = _tmp(out_dir / NAMES["transects_style"])
        shutil.copyfile(STYLE, tmp)
        paths["transects_style"] = _commit(tmp, out_dir / NAMES["transects_style"])

    iso = _iso(result)
    status = _status(result)
    measured = result.measured
    pts = t.point_at(np.nan_to_num(measured))
    point_feats, long_rows = [], []
    for i in range(len(t)):
        for j in range(len(iso)):
            raw = measured[i, j]
            attrs = {
                "transect_id": int(t.transect_id[i]),
                "date": iso[j],
                "scene": result.scenes[j].name,
                "position_m": float(result.positions[i, j]),
                "measured_m": float(measured[i, j]),
                "shift_m": float(result.shift[i, j]),
                "crossings": int(result.crossings[i, j]),
                "status": str(status[i, j]),
            }
            long_rows.append(list(attrs.values()))
            if np.isfinite(raw):
                point_feats.append((pts[i, j], attrs))
    pfields = [
        ("transect_id", "int"),
        ("date", "str"),
        ("scene", "str"),
        ("position_m", "real"),
        ("measured_m", "real"),
        ("shift_m", "real"),
        ("crossings", "int"),
        ("status", "str"),
    ]
    paths["positions"] = _write_layer(
        out_dir / NAMES["positions"], "point", result.crs, pfields, point_feats, "positions"
    )
    paths["positions_long"] = _csv(
        out_dir / NAMES["positions_long"], [f for f, _ in pfields], long_rows
    )
    wide = [
        [iso[j], result.scenes[j].name, *result.positions[:, j].tolist()] for j in range(len(iso))
    ]
    paths["positions_wide"] = _csv(
        out_dir / NAMES["positions_wide"],
        ["date", "scene", *[f"t{k}" for k in t.transect_id]],
        wide,
    )
    paths["rates"] = _csv(
        out_dir / NAMES["rates"], list(rows[0]) if rows else [], [list(r.values()) for r in rows]
    )
    removed = np.argwhere(result.reason > 0)
    paths["outliers"] = _csv(
        out_dir / NAMES["outliers"],
        ["transect_id", "date", "position_m", "reason"],
        [
            [
                int(t.transect_id[i]),
                iso[j],
                float(result.raw[i, j]),
                REASONS[int(result.reason[i, j])],
            ]
            for i, j in removed
        ],
    )
    shore_feats = []
    qfields = [
        ("scene", "str"),
        ("date", "str"),
        ("date_source", "str"),
        ("used", "int"),
        ("left_out_for", "str"),
        ("water_fraction", "real"),
        ("cloud_fraction", "real"),
        ("shadow_fraction", "real"),
        ("method", "str"),
        ("threshold", "real"),
        ("batch_flags", "str"),
        ("warnings", "str"),
        ("uncertainty_m", "real"),
    ]
    for j, s in enumerate(result.scenes):
        q = s.quality
        attrs = {
            "scene": s.name,
            "date": iso[j],
            "date_source": s.date_source,
            "used": int(result.used[j]),
            "left_out_for": ",".join(s.flags),
            "water_fraction": s.water_fraction,
            "cloud_fraction": _float(q.get("cloud_fraction")),
            "shadow_fraction": _float(q.get("shadow_fraction")),
            "method": _text(q.get("method")),
            "threshold": _float(q.get("threshold")),
            "batch_flags": _text(q.get("flags")),
            "warnings": _text(q.get("warnings")),
            "uncertainty_m": float(result.uncertainty[j]),
        }
        for line in _lines_in(s.shoreline, result.crs):
            shore_feats.append((line, attrs))
    paths["shorelines"] = _write_layer(
        out_dir / NAMES["shorelines"], "line", result.crs, qfields, shore_feats, "shorelines"
    )
    paths["report_json"] = _write_text(
        out_dir / NAMES["report_json"],
        json.dumps(summary(result, extra), indent=1, default=str) + "\n",
    )
    return paths


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, list | tuple):
        return "; ".join(map(str, v))
    return str(v)


def summary(result: ChangeResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run in numbers: dates used and left out (with reasons), transects, outliers,
    median rates, the correction state, notes."""
    st = result.stats
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = {k: float(np.nanmedian(st[k])) for k in ("nsm", "epr", "lrr", "wlr", "sce")}
    return {
        **(extra or {}),
        "dates": [
            {
                **{f"batch_{k}" if k == "flags" else k: v for k, v in s.quality.items()},
                "scene": s.name,
                "date": s.date.isoformat(),
                "date_source": s.date_source,
                "used": bool(result.used[j]),
                "left_out_for": s.flags,
                "water_fraction": s.water_fraction,
                "uncertainty_m": float(result.uncertainty[j]),
            }
            for j, s in enumerate(result.scenes)
        ],
        "dates_used": int(result.used.sum()),
        "dates_flagged": [s.name for j, s in enumerate(result.scenes) if not result.used[j]],
        "transects": len(result.transects),
        "transects_dropped": result.transects.dropped,
        "positions": int(np.isfinite(result.raw).sum()),
        "positions_unseen": int(result.unseen.sum()),
        "outliers": {name: int((result.reason == code).sum()) for code, name in REASONS.items()},
        "water_level_corrected": result.corrected,
        "median": med,
        "notes": result.notes,
        "seconds": result.seconds,
    }
