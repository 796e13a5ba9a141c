"""The request that travels from the dock (or the Processing algorithm) to the task.

A plain dataclass with no Qt objects in it, so the worker thread never touches widgets or
layers. Its defaults and the output names come from the contract (resources/contract.json);
which model and bands fit a layer is the backend's decision (``python -m backend plan``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import option_args, output_path, ui_defaults

__all__ = ["SegmentRequest", "parse_bands", "unique_out_dir"]


@dataclass
class SegmentRequest:
    """One "Segment water" run.

    ``input_path`` is the local raster file the backend reads (the layer's file, or a
    temporary GeoTIFF exported from a non-file layer); ``bands`` are 1-based band numbers of
    that file in the model's band order (empty: the backend maps them by name);
    ``model_path`` None lets the backend choose a bundled model from the input's bands;
    ``options`` holds the segment options the dock or Processing offers (names, defaults and
    ranges from the contract).
    """

    layer_name: str
    input_path: str
    out_dir: str
    bands: list[int]
    model_path: str | None = None
    options: dict[str, Any] = field(default_factory=ui_defaults)  # contract option -> value
    overwrite: bool = False  # the dock never replaces earlier results: see unique_out_dir
    own_out_dir: bool = False  # out_dir is this run's own sub-folder (removed if left empty)
    python: str = ""
    temporary_input: bool = False
    dem_path: str | None = None  # an elevation model: steep slopes are land (segment --dem)
    extra_args: list[str] = field(default_factory=list)

    @property
    def device(self) -> str:
        return str(self.options.get("device", "auto"))

    @property
    def stem(self) -> str:
        return Path(self.input_path).stem

    def expected_outputs(self) -> dict[str, Path]:
        """Where the backend will write (the segment command's naming contract)."""
        return {
            kind: output_path(self.out_dir, self.stem, kind) for kind in ("mask", "shoreline_gpkg")
        }

    def backend_args(self) -> list[str]:
        """Arguments after ``python -m backend`` for this request."""
        args = ["segment", self.input_path, "--out-dir", self.out_dir]
        args += option_args(self.options)
        args += ["--shoreline", "gpkg", "--progress", "json"]
        if self.bands:  # empty: the backend maps bands by name from the checkpoint
            args += ["--bands", ",".join(str(b) for b in self.bands)]
        if self.model_path:
            args += ["--model", self.model_path]
        if self.dem_path:
            args += ["--dem", self.dem_path]
        if self.overwrite:
            args.append("--overwrite")
        return args + list(self.extra_args)


def unique_out_dir(base: str | Path, stem: str, taken: set[str] | frozenset = frozenset()) -> str:
    """A folder where a run on ``stem`` replaces nothing: ``base`` itself while none of the
    segment command's outputs for ``stem`` exist there, else the first ``base/<stem>-2``,
    ``base/<stem>-3``, ... without them. ``taken`` holds the masks runs still under way will
    write (str paths), which count as existing. The names inside stay the contract's."""

    def free(folder: Path) -> bool:
        paths = [output_path(folder, stem, kind) for kind in ("mask", "shoreline_gpkg")]
        return not any(p.exists() or str(p) in taken for p in paths)

    base = Path(base)
    if free(base):
        return str(base)
    n = 2
    while not free(base / f"{stem}-{n}"):
        n += 1
    return str(base / f"{stem}-{n}")


def parse_bands(text: str) -> list[int]:
    """'2,3,4,8' or '2 3 4 8' -> [2, 3, 4, 8]; ValueError with a readable message otherwise."""
    parts = [p for p in re.split(r"[,\s;]+", text.strip()) if p]
    try:
        bands = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"bands must be band numbers separated by commas, e.g. 2,3,4,8 (got {text!r})"
        ) from None
    if any(b < 1 for b in bands):
        raise ValueError(f"band numbers start at 1 (got {text!r})")
    return bands
