"""The short HTML summary of a change analysis: numbers, the overview figure, the rates."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from backend.change.outputs import rate_rows
from backend.change.pipeline import ChangeResult

NAME = "change_report.html"
_COLUMNS = (
    "transect_id",
    "n_dates",
    "sce",
    "nsm",
    "epr",
    "lrr",
    "lrr_ci95",
    "lrr_r2",
    "wlr",
    "wlr_ci95",
)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if not np.isfinite(v) else f"{v:.2f}"
    return html.escape(str(v))


def write_html(
    result: ChangeResult, summary: dict[str, Any], out_dir: Path, plots: dict[str, Path]
) -> Path:
    """Write ``change_report.html`` into ``out_dir`` -> its path."""
    med = summary["median"]
    flagged = [d for d in summary["dates"] if not d["used"]]
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Shoreline change</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}</style>",
        "<h1>Shoreline change through time</h1>",
        f"<p>{summary['dates_used']} of {len(summary['dates'])} dates used "
        f"({html.escape(summary['dates'][0]['date'][:10])} to {html.escape(summary['dates'][-1]['date'][:10])}), "
        f"{summary['transects']} transects, {summary['positions']} positions, "
        f"{summary['positions_unseen']} transect-dates hidden by cloud or nodata, outliers removed: "
        f"{', '.join(f'{k} {v}' for k, v in summary['outliers'].items())}.</p>",
        f"<p>Median over transects: NSM {med['nsm']:+.1f} m, EPR {med['epr']:+.2f} m/yr, "
        f"LRR {med['lrr']:+.2f} m/yr, WLR {med['wlr']:+.2f} m/yr, SCE {med['sce']:.1f} m. "
        "Positive = towards the water.</p>",
        "<p><b>"
        + html.escape("; ".join(summary["notes"]) or "Positions are corrected for water level.")
        + "</b></p>",
    ]
    if flagged:
        parts.append(
            "<p>Dates left out by their quality flags: "
            + ", ".join(
                f"{html.escape(d['scene'])} ({html.escape(', '.join(d['left_out_for']))})"
                for d in flagged
            )
            + ".</p>"
        )
    if "overview_png" in plots:
        parts.append(f"<img src='{html.escape(plots['overview_png'].name)}' style='width:100%'>")
    parts.append(
        "<h2>Rates per transect</h2><table><tr>"
        + "".join(f"<th>{c}</th>" for c in _COLUMNS)
        + "</tr>"
    )
    for row in rate_rows(result):
        tid = row["transect_id"]
        link = f"plots/transect_{tid:04d}.png"
        cells = [f"<a href='{link}'>{tid}</a>" if "plots_dir" in plots else str(tid)]
        cells += [_cell(row[c]) for c in _COLUMNS[1:]]
        parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append("</table><p>Definitions: docs/change.md (DSAS / QSCAT).</p>")
    path = out_dir / NAME
    tmp = path.with_name(f".{NAME}.tmp{os.getpid()}")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
