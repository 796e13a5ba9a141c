"""The request that travels from the dock (or the Processing algorithm) to the task.

A plain dataclass with no Qt objects in it, so the worker thread never touches widgets or
layers; plus the band-mapping rule that pre-fills the dock and the rule that picks one of the
two bundled models from a layer's bands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_BANDS = ["B2", "B3", "B4", "B8"]
# Full Sentinel-2 L1C band order (13 bands); L2A products usually lack B10 (12 bands).
S2_L1C_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
S2_L2A_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
SWIR_BANDS = ("B11", "B12")


@dataclass(frozen=True)
class BundledModel:
    """One model shipped in resources/models/: its file name and the bands it reads (the same
    as its checkpoint says; known here so the dock needs no backend query to show them)."""

    file: str
    bands: tuple[str, ...]
    label: str


# Keys as returned by choose_bundled_model; "default" is preferred when the layer allows it.
BUNDLED_MODELS = {
    "default": BundledModel(
        "waterseg-default.pt",
        ("B2", "B3", "B4", "B8", "B11", "B12"),
        "Bundled: B2 B3 B4 B8 B11 B12 (with SWIR)",
    ),
    "rgbn": BundledModel(
        "waterseg-rgbn.pt", ("B2", "B3", "B4", "B8"), "Bundled: B2 B3 B4 B8 (10 m bands)"
    ),
}


@dataclass
class SegmentRequest:
    """One "Segment water" run.

    ``input_path`` is the local raster file the backend reads (the layer's file, or a
    temporary GeoTIFF exported from a non-file layer); ``bands`` are 1-based band numbers of
    that file in the model's band order (empty: the backend maps them by name);
    ``model_path`` None lets the backend choose a bundled model from the input's bands.
    """

    layer_id: str
    layer_name: str
    input_path: str
    out_dir: str
    bands: list[int]
    model_path: str | None = None
    device: str = "auto"
    overlap: float = 0.25
    threshold: float = 0.5
    min_length: float = 0.0
    smooth: int = 0
    overwrite: bool = True
    python: str = ""
    temporary_input: bool = False
    extra_args: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return Path(self.input_path).stem

    def expected_outputs(self) -> dict[str, Path]:
        """Where the backend will write (the segment command's naming contract)."""
        out = Path(self.out_dir)
        return {
            "mask": out / f"{self.stem}_water.tif",
            "shoreline_gpkg": out / f"{self.stem}_shoreline.gpkg",
        }

    def backend_args(self) -> list[str]:
        """Arguments after ``python -m backend`` for this request."""
        args = [
            "segment",
            self.input_path,
            "--out-dir",
            self.out_dir,
            "--device",
            self.device,
            "--overlap",
            f"{self.overlap:g}",
            "--threshold",
            f"{self.threshold:g}",
            "--min-length",
            f"{self.min_length:g}",
            "--smooth",
            str(int(self.smooth)),
            "--shoreline",
            "gpkg",
            "--progress",
            "json",
        ]
        if self.bands:  # empty: the backend maps bands by name from the checkpoint
            args += ["--bands", ",".join(str(b) for b in self.bands)]
        if self.model_path:
            args += ["--model", self.model_path]
        if self.overwrite:
            args.append("--overwrite")
        return args + list(self.extra_args)


def _norm_band_name(name: str) -> str | None:
    """'B02', 'b2', 'Band 2 (B2)', 'B8A' -> 'B2' / 'B8A'; None if no Sentinel-2 band name."""
    match = re.search(r"\bB0*(\d{1,2}A?)\b", name.upper())
    return f"B{match.group(1)}" if match else None


def guess_band_mapping(model_bands: list[str], layer_band_names: list[str]) -> list[int]:
    """Pre-fill the band mapping: model band names -> 1-based band numbers of the layer.

    ``layer_band_names[i]`` is the description (or name) of band i + 1. Rules, in order:
    1. a band whose description names the model band (e.g. "B8" matches "B08" or "Band 8 B8");
    2. layers with exactly as many bands as the model: same order (1, 2, 3, ...);
    3. 13 or 12 bands without names: the Sentinel-2 L1C / L2A band order;
    4. otherwise band number i + 1 for model band i, clipped to the band count.
    """
    n = len(layer_band_names)
    normalised = [_norm_band_name(b or "") for b in layer_band_names]
    mapping: list[int] = []
    for i, band in enumerate(model_bands):
        want = _norm_band_name(band) or band.upper()
        if want in normalised:
            mapping.append(normalised.index(want) + 1)
            continue
        if n == len(model_bands):
            mapping.append(i + 1)
        elif n in (12, 13) and want in (S2_L1C_ORDER if n == 13 else S2_L2A_ORDER):
            mapping.append((S2_L1C_ORDER if n == 13 else S2_L2A_ORDER).index(want) + 1)
        else:
            mapping.append(min(i + 1, max(n, 1)))
    return mapping


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


def layer_sentinel2_bands(layer_band_names: list[str]) -> set[str]:
    """The Sentinel-2 bands a layer holds, e.g. {"B2", "B3", "B4", "B8"}.

    ``layer_band_names[i]`` is the description (or name) of band i + 1. Bands named after
    Sentinel-2 bands decide when there are any; a layer with no such names and 13 or 12 bands
    is read as a full L1C / L2A stack; anything else holds no known band (empty set).
    """
    named = {n for n in (_norm_band_name(b or "") for b in layer_band_names) if n}
    if named:
        return named
    if len(layer_band_names) == 13:
        return set(S2_L1C_ORDER)
    if len(layer_band_names) == 12:
        return set(S2_L2A_ORDER)
    return set()


def choose_bundled_model(layer_band_names: list[str]) -> str:
    """Which bundled model suits a layer: "default" (B2 B3 B4 B8 B11 B12) when the layer has
    B11 and B12 (see :func:`layer_sentinel2_bands`), else "rgbn" (B2 B3 B4 B8)."""
    held = layer_sentinel2_bands(layer_band_names)
    return "default" if all(b in held for b in SWIR_BANDS) else "rgbn"


def explain_bundled_choice(layer_band_names: list[str]) -> str:
    """One line for the dock: which bundled model automatic mode uses for this layer, and why."""
    if not layer_band_names:
        return "Bundled model: chosen from the layer's bands once you pick a raster layer"
    key = choose_bundled_model(layer_band_names)
    if key == "default":
        named = {_norm_band_name(b or "") for b in layer_band_names} - {None}
        why = (
            "the layer has B11 and B12"
            if named
            else f"{len(layer_band_names)} unnamed bands read as a Sentinel-2 stack with B11 and B12"
        )
        return f"Using the bundled 6-band model (B2 B3 B4 B8 B11 B12): {why}"
    held = layer_sentinel2_bands(layer_band_names)
    missing = [b for b in SWIR_BANDS if b not in held]
    why = "no B11/B12 bands" if len(missing) == 2 else f"no {missing[0]} band"
    return f"Using the bundled 4-band model (B2 B3 B4 B8): the layer has {why}"
