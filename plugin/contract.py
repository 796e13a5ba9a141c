"""The plugin's reading of ``resources/contract.json``, the file the backend reads too
(``backend/core/contract.py``): bundled models, devices, segment options, output names, progress
events and stages. Plain json: the plugin never imports ``backend``.

Decisions about a raster (band mapping, which bundled model) are not made here: the dock asks
the backend (``python -m backend plan``) and shows the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN_ROOT = Path(__file__).resolve().parent.parent
CONTRACT = json.loads((PLUGIN_ROOT / "resources" / "contract.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class BundledModel:
    """One model shipped in resources/models/ (the contract's table, preferred first)."""

    key: str
    file: str
    bands: tuple[str, ...]
    label: str
    when: str = ""  # in words, when the automatic choice takes it
    resolution_m: float | None = None  # ground pixel size of its training data


BUNDLED_MODELS: dict[str, BundledModel] = {
    m["key"]: BundledModel(
        m["key"], m["file"], tuple(m["bands"]), m["label"], m["when"], m.get("resolution_m")
    )
    for m in CONTRACT["bundled_models"]
}


@dataclass(frozen=True)
class Method:
    """One ``--method`` choice (the contract's methods table): ``bands`` it reads (empty: the
    plan's or the model's), a short ``label``, and what decides water: "probability" (the
    model's water probability >= the threshold option), "zero" (index > 0), "scene" (index >
    a threshold set for each raster), or "" (auto: the method the plan resolves to)."""

    name: str
    label: str
    bands: tuple[str, ...]
    water: str

    def describe(self) -> str:
        """ "mixed-adaptive (NDWI+MNDWI, threshold per scene)"."""
        return f"{self.name} ({self.label})"

    def log_line(self) -> str:
        """The one short line a log gives the method (the dock's and Processing's), with a
        pointer to the docs instead of the backend's long explanation."""
        return f"Method: {self.describe()}; what each method does: {METHODS_DOC}"


METHODS_DOC = "docs/segment.md (Methods)"
"""Where a log points for what each method does."""


METHODS: dict[str, Method] = {
    m["name"]: Method(m["name"], m["label"], tuple(m["bands"] or ()), m["water"] or "")
    for m in CONTRACT["methods"]
}
MODEL_PIXEL_TOLERANCE: float = float(CONTRACT["model_pixel_tolerance"])
"""How many times finer or coarser than its training pixels a learned model runs unwarned."""
DEVICES: tuple[str, ...] = tuple(CONTRACT["devices"])
OPTIONS: dict[str, dict[str, Any]] = {o["name"]: o for o in CONTRACT["segment_options"]}
# The options the dock and the Processing algorithm offer ("ui": true), in table order.
UI_OPTIONS: list[dict[str, Any]] = [o for o in CONTRACT["segment_options"] if o.get("ui")]


def default(name: str) -> Any:
    """The default of segment option ``name`` ("overlap", "min-length", ...)."""
    return OPTIONS[name].get("default")


def ui_defaults() -> dict[str, Any]:
    """Option name -> default, for the options the dock and Processing offer."""
    return {o["name"]: o.get("default") for o in UI_OPTIONS}


def option_args(options: dict[str, Any]) -> list[str]:
    """``{"overlap": 0.5, "smooth": 2}`` -> ``["--overlap", "0.5", "--smooth", "2"]``
    (booleans: the flag alone when true)."""
    args: list[str] = []
    for name, value in options.items():
        kind = OPTIONS[name]["type"]
        if kind == "bool":
            args += [f"--{name}"] if value else []
        elif value is not None:
            text = str(int(value)) if kind == "int" else f"{value:g}" if kind == "float" else value
            args += [f"--{name}", str(text)]
    return args


def output_path(out_dir: str | Path, stem: str, kind: str) -> Path:
    """Where ``segment`` writes output ``kind`` ("mask", "shoreline_gpkg", ...) of ``stem``."""
    return Path(out_dir) / CONTRACT["outputs"][kind].format(stem=stem)


def progress_percent(event: dict) -> float | None:
    """A ``progress`` event -> percent of the whole run (stages in the contract); None for
    other events."""
    if event.get("event") != "progress":
        return None
    low, high = CONTRACT["progress_stages"].get(str(event.get("stage")), (0.0, 100.0))
    frac = max(0.0, min(1.0, float(event.get("fraction", 0.0))))
    return low + (high - low) * frac


def _eta(seconds) -> str:
    """12 -> "12 s", 130 -> "2 min 10 s"."""
    seconds = int(round(float(seconds)))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def describe_event(event: dict) -> str | None:
    """One status line for a backend event (None: nothing to show). Handles every event of
    the contract; an unknown one is shown as its name."""
    kind = event.get("event")
    if kind == "start":
        return (
            f"Running {Path(str(event.get('model', '?'))).name} on {event.get('device', '?')}: "
            f"{event.get('width')} x {event.get('height')} px, {event.get('tiles', '?')} tiles, "
            f"bands {event.get('bands', '?')} ({event.get('band_rule', '?')})"
        )
    if kind == "progress":
        if event.get("stage") == "infer":
            line = (
                f"{event.get('tiles_done', 0)}/{event.get('tiles_total', '?')} tiles "
                f"on {event.get('device', '?')}"
            )
            if event.get("eta_s") is not None and event.get("tiles_per_s") is not None:
                line += f", {float(event['tiles_per_s']):.1f} tiles/s, {_eta(event['eta_s'])} left"
            return line
        return f"{event.get('stage', '')}..."
    if kind == "output":
        return f"wrote {event.get('path')}"
    if kind == "done":
        return (
            f"Done in {float(event.get('elapsed_s', 0)):.1f} s, "
            f"{event.get('shoreline_features', '?')} shoreline features"
        )
    if kind == "finished":
        return f"finished {event.get('count', '?')} input(s)"
    if kind == "error":
        return str(event.get("message", "backend error"))
    return str(kind)


HANDLED_EVENTS = frozenset({"start", "progress", "output", "done", "finished", "error"})
