"""The dated scenes of a change analysis: one row of ``batch``'s report per scene, its date,
its shoreline and mask, and its quality (the report's columns when the batch wrote them).

The report's ``flags`` and ``warnings`` are carried into the outputs. Quality flags of this
analysis (a flagged date is left out of the baseline and the statistics unless the user keeps
it, and listed with its reason):
  ``cloudy``        cloud_fraction (report) above ``max_cloud``, unless the report's flags say
                    "haze": segment then dropped the cloud mask because water/land edges show
                    through it, so the scene is used, its uncertainty raised by its cloud share;
  ``shadow``        shadow_fraction (report) above ``max_shadow``;
  ``water_jump``    the scene's water fraction is more than ``jump_z`` robust standard
                    deviations (1.4826 x the median absolute deviation) and more than
                    ``jump_min`` (a share of the scene) above the median of all dates: false
                    water (terrain or cloud shadow read as water) adds to it, whereas a real
                    shoreline shift moves it by a fraction of that. ``jump_min`` keeps a scene
                    with little water (a river: 5 %, a MAD of 0.1 %) from flagging dates for
                    half a percent of water.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from backend.batch.scene import QUALITY_FIELDS
from backend.change.dates import scene_date
from backend.core.errors import UserError

# What the batch report says of a scene's quality (batch's own list), and shadow_fraction,
# read when a report has it; every one of them is optional (older reports have none).
QUALITY_COLUMNS = (*QUALITY_FIELDS, "shadow_fraction")


@dataclass
class Scene:
    """One dated scene with its batch outputs and quality."""

    name: str
    input: str
    date: datetime
    date_source: str
    shoreline: str
    mask: str | None
    water_fraction: float | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def cloud_share(self) -> float:
        """Cloud plus shadow share of the scene (0 when the report does not say)."""
        return float(
            sum(_num(self.quality.get(k)) or 0.0 for k in ("cloud_fraction", "shadow_fraction"))
        )


def _num(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def read_batch_rows(batch_dir: Path) -> list[dict[str, Any]]:
    """The scene rows of ``batch_dir/batch_report.json``."""
    path = Path(batch_dir) / "batch_report.json"
    if not path.is_file():
        raise UserError(f"{path} not found; run 'python -m backend batch' into {batch_dir} first")
    return list(json.loads(path.read_text()).get("scenes", []))


def collect(
    rows: list[dict[str, Any]], user_dates: dict[str, datetime] | None = None
) -> tuple[list[Scene], list[dict[str, str]]]:
    """Batch rows -> (dated scenes with a shoreline, in date order; skipped scenes as
    ``{"scene", "reason"}``: failed, no shoreline, or undated)."""
    scenes, skipped = [], []
    for r in rows:
        name = str(r.get("scene") or Path(str(r.get("input", ""))).stem)
        if r.get("status") not in ("done", "skipped"):
            skipped.append(
                {
                    "scene": name,
                    "reason": f"batch status {r.get('status')}: {r.get('error') or ''}".strip(),
                }
            )
            continue
        outputs = r.get("outputs") or {}
        shore = outputs.get("shoreline_gpkg") or outputs.get("shoreline_shp")
        if not shore or not Path(shore).exists():
            skipped.append({"scene": name, "reason": "no shoreline file"})
            continue
        when = scene_date(str(r["input"]), user_dates)
        if when.date is None:
            skipped.append({"scene": name, "reason": f"undated: {when.problem}"})
            continue
        quality = {k: r[k] for k in QUALITY_COLUMNS if r.get(k) not in (None, "")}
        scenes.append(
            Scene(
                name=name,
                input=str(r["input"]),
                date=when.date,
                date_source=when.source,
                shoreline=str(shore),
                mask=outputs.get("mask"),
                water_fraction=_num(r.get("water_fraction")),
                quality=quality,
            )
        )
    scenes.sort(key=lambda s: s.date)
    return scenes, skipped


def flag_quality(
    scenes: list[Scene],
    max_cloud: float = 0.5,
    max_shadow: float = 0.05,
    jump_z: float = 3.5,
    jump_min: float = 0.015,
) -> None:
    """Set each scene's ``flags`` (module docstring); ``jump_z`` <= 0 turns that test off."""
    wf = np.array([s.water_fraction if s.water_fraction is not None else np.nan for s in scenes])
    ok = ~np.isnan(wf)
    z = np.full(len(scenes), np.nan)
    excess = np.full(len(scenes), np.nan)
    if ok.sum() >= 5:
        med = np.median(wf[ok])
        mad = 1.4826 * np.median(np.abs(wf[ok] - med))
        excess[ok] = wf[ok] - med
        z[ok] = excess[ok] / max(mad, 1e-4)
    for s, zi, ex in zip(scenes, z, excess, strict=True):
        s.flags = []
        cloud = _num(s.quality.get("cloud_fraction"))
        shadow = _num(s.quality.get("shadow_fraction"))
        haze = "haze" in (s.quality.get("flags") or [])
        if cloud is not None and cloud > max_cloud and not haze:
            s.flags.append("cloudy")
        if shadow is not None and shadow > max_shadow:
            s.flags.append("shadow")
        if jump_z > 0 and np.isfinite(zi) and zi > jump_z and ex > jump_min:
            s.flags.append("water_jump")
