"""The batch report (``batch_report.csv`` / ``.json``) and the batch's progress output.

The report lists every scene (status pending until it finishes) and is rewritten atomically
as scenes finish (at most every ``min_interval_s``, and always at the end, after Ctrl-C too),
so a reader never sees half a file and an interrupted batch still says what was done.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from backend.batch.manifest import write_atomic
from backend.batch.scene import QUALITY_FIELDS
from backend.segment.progress import JsonReporter, NullReporter, Reporter

CSV_NAME = "batch_report.csv"
JSON_NAME = "batch_report.json"
COLUMNS = (
    "scene",
    "input",
    "status",
    "seconds",
    "water_fraction",
    "shoreline_length_m",
    "shoreline_features",
    *QUALITY_FIELDS,
    "error",
)
STATUSES = ("done", "skipped", "failed", "pending")


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None, lists (flags, warnings) joined by "; "."""
    if value is None:
        return ""
    return "; ".join(map(str, value)) if isinstance(value, list | tuple) else value


class BatchReport:
    """Rows by input, in input order; ``record(row)`` then ``write()``."""

    min_interval_s = 2.0

    def __init__(self, out_dir: Path, rows: list[dict[str, Any]]):
        self.out_dir = out_dir
        self.rows = {r["input"]: r for r in rows}
        self.t0 = time.monotonic()
        self._written = 0.0

    @property
    def csv_path(self) -> Path:
        return self.out_dir / CSV_NAME

    @property
    def json_path(self) -> Path:
        return self.out_dir / JSON_NAME

    def record(self, row: dict[str, Any]) -> None:
        self.rows[row["input"]] = row

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for r in self.rows.values():
            out[r["status"]] += 1
        return out

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        elapsed = time.monotonic() - self.t0
        worked = counts["done"] + counts["failed"]
        return {
            "total": len(self.rows),
            **counts,
            "elapsed_s": round(elapsed, 3),
            "scenes_per_min": round(60.0 * worked / elapsed, 3) if elapsed > 0 else None,
        }

    def write(self, force: bool = True) -> None:
        """Rewrite both files atomically (unless ``force`` is False and it was done lately)."""
        now = time.monotonic()
        if not force and now - self._written < self.min_interval_s:
            return
        self._written = now
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.rows.values():
            writer.writerow({k: _cell(r.get(k)) for k in COLUMNS})
        write_atomic(self.csv_path, buf.getvalue())
        doc = {"summary": self.summary(), "scenes": list(self.rows.values())}
        write_atomic(self.json_path, json.dumps(doc, indent=1) + "\n")


def eta_s(counts: dict[str, int], total: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate scenes were worked on so far (skipped ones cost nothing)."""
    worked = counts["done"] + counts["failed"]
    left = total - worked - counts["skipped"]
    if left <= 0:
        return 0.0
    if worked == 0 or elapsed_s <= 0:
        return None
    return left * elapsed_s / worked


class BatchTextReporter(Reporter):
    """Human-readable batch progress on stderr: a line per scene and a status line."""

    min_interval_s = 10.0

    def event(self, name: str, **f: Any) -> None:
        if name == "start":
            self.log(
                f"{f['total']} scene(s) on {f['workers']} worker(s), {f['threads']} scene(s) at "
                f"once ({f['scheduler']}); dashboard: {f.get('dashboard') or 'none'}"
            )
        elif name == "scene":
            extra = ""
            if f["status"] == "failed":
                extra = f": {f.get('error')}"
            elif f.get("water_fraction") is not None:
                length = f.get("shoreline_length_m")
                km = f", {length / 1000:.2f} km shoreline" if length is not None else ""
                extra = f" ({f['water_fraction']:.1%} water{km})"
            self.log(
                f"[{f['finished']}/{f['total']}] {f['scene']}: {f['status']} in "
                f"{f['seconds']:.1f}s{extra}"
            )
        elif name == "progress":
            eta = f.get("eta_s")
            self.log(
                f"{f['done']} done, {f['skipped']} skipped, {f['failed']} failed, "
                f"{f['running']} running of {f['total']}; "
                f"{f.get('scenes_per_min') or 0:.2f} scenes/min, ETA "
                + (f"{eta / 60:.1f} min" if eta is not None else "unknown")
            )
        elif name == "output":
            self.log(f"wrote {f['path']}")
        elif name == "finished":
            self.log(
                f"finished {f['total']} scene(s) in {f['elapsed_s']:.1f}s: {f['done']} done, "
                f"{f['skipped']} skipped, {f['failed']} failed"
            )


def make_batch_reporter(kind: str) -> Reporter:
    """ "json" (JSON lines on stdout, as segment writes them) | "text" | "none"."""
    return {"json": JsonReporter, "text": BatchTextReporter, "none": NullReporter}[kind]()
