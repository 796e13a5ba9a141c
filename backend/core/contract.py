"""The contract with the QGIS plugin: ``resources/contract.json``, read here and by
``plugin/contract.py`` (plain json on both sides; the plugin never imports ``backend``).

It holds what both sides must agree on: the bundled models, the devices, the segment options
(name, type, default, range, help), the output file names, the progress events and how the
stages of a run map to a percentage. Rules that decide something about a raster (band mapping,
which bundled model) are code, in :mod:`backend.segment.plan`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

# Not through backend.core.paths, which reads the bundled-model table from here.
CONTRACT_FILE = Path(__file__).resolve().parents[2] / "resources" / "contract.json"


@cache
def contract() -> dict[str, Any]:
    """The parsed contract file (read once)."""
    return json.loads(CONTRACT_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class BundledModel:
    """One entry of the bundled-model table (in order of preference).

    ``bands`` are the checkpoint's band names; ``data_bands`` limits the entry to rasters with
    that many non-alpha bands (None: any); ``when`` says in words when it is used.
    """

    key: str
    file: str
    bands: tuple[str, ...]
    label: str
    when: str
    data_bands: tuple[int, ...] | None = None


def bundled_models() -> list[BundledModel]:
    """The bundled-model table, preferred first."""
    return [
        BundledModel(
            m["key"],
            m["file"],
            tuple(m["bands"]),
            m["label"],
            m["when"],
            None if m.get("data_bands") is None else tuple(m["data_bands"]),
        )
        for m in contract()["bundled_models"]
    ]


def segment_options() -> list[dict[str, Any]]:
    """The options of ``segment``, in the order of ``--help``."""
    return list(contract()["segment_options"])


def methods() -> list[dict[str, Any]]:
    """The ``--method`` table: name, short label, the Sentinel-2 bands it reads (None: the
    plan's or the model's) and what decides water ("probability", "zero", "scene"), in the
    order of the method option's choices."""
    return list(contract()["methods"])


def option(name: str) -> dict[str, Any]:
    """One segment option by name (``"overlap"``, ``"min-length"``)."""
    for opt in contract()["segment_options"]:
        if opt["name"] == name:
            return opt
    raise KeyError(f"no segment option {name!r}")


def output_path(out_dir: Path, stem: str, kind: str) -> Path:
    """Where ``segment`` writes output ``kind`` ("mask", "shoreline_gpkg", ...) of ``stem``."""
    return Path(out_dir) / contract()["outputs"][kind].format(stem=stem)


def event_names() -> set[str]:
    """The events ``segment --progress json`` may print."""
    return set(contract()["events"])
