"""``python -m backend plan``: every decision about a raster, made once, without torch.

For one raster (a file, or only its band names when the dock's layer has no local file) the
plan says which bundled model is used and why, which raster bands feed which model bands and
by what rule, the nodata value, the data type and how its values are scaled, and warnings.
``segment`` makes the same plan before it runs (:func:`make_plan`,
:func:`choose_bundled_model`), the dock shows it and pre-fills its band mapping from it, and
the Processing algorithm with Bands left empty lets ``segment`` decide: so the command line,
the dock and Processing cannot disagree.

The bundled models are the table in ``resources/contract.json`` (preferred first); the first
whose bands the raster has (and whose ``data_bands`` fits, e.g. 3 for the RGB model) and
whose file is installed is chosen. Only a ``--model`` outside that table is opened with torch,
to read its bands.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backend.core import paths
from backend.core.contract import BundledModel, bundled_models, segment_options
from backend.core.errors import UserError
from backend.core.water_indices import method_bands as _method_bands
from backend.segment.bands import (
    LAYOUTS,
    BandMapping,
    RasterBands,
    canonical_bands,
    map_raster_bands,
    parse_bands_option,
)

MODEL = "model"  # --method: the checkpoint; any other value is a water index
AUTO = "auto"  # --method: chosen from the raster's bands by resolve_method
# What --method auto uses for a multispectral raster, in order of preference: the first whose
# bands the raster has. On scenes the learned multispectral models never saw, the water indices
# did better than they do, and a threshold set per scene better than a fixed one (README, "How
# good is it?"); true-colour rasters get the RGB model.
AUTO_INDICES: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (m, _method_bands(m)) for m in ("mixed-adaptive", "mndwi-adaptive", "ndwi-adaptive")
)


@dataclass(frozen=True)
class ModelChoice:
    """The model a plan uses: its file, key in the bundled table (None for other files),
    bands and one line saying why."""

    file: str
    key: str | None
    bands: list[str]
    why: str = ""


@dataclass
class Plan:
    """The answer of ``plan`` (see the module docstring); ``to_json()`` is what ``--json``
    prints."""

    input: str | None
    raster: RasterBands
    nodata: float | None
    model: ModelChoice
    mapping: BandMapping
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    method: str = MODEL  # --method as resolved (auto -> an index or "model")

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "method": self.method,
            "band_count": self.raster.count,
            "band_descriptions": list(self.raster.descriptions),
            "colour_interp": list(self.raster.colour_interp),
            "dtype": self.raster.dtype,
            "nodata": self.nodata,
            "model": asdict(self.model),
            "bands": list(self.mapping.indexes),
            "band_rule": self.mapping.rule,
            "band_note": self.mapping.note,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def _source_text(raster: RasterBands, explicit: list[int] | None) -> str:
    if explicit is not None:
        return "by --bands"
    _, rule = raster.held()
    if rule == "descriptions":
        return "by its band descriptions"
    if rule == "colour-interpretation":
        return "by its red/green/blue colour interpretation"
    if rule == "file-name":
        return f"by its file name: {' '.join(raster.file_name_bands)}"
    if rule.startswith("layout-"):
        return f"{raster.count} unnamed bands read as {LAYOUTS[raster.count][1]}"
    return "no band names"


def _fits(entry: BundledModel, raster: RasterBands) -> bool:
    return entry.data_bands is None or raster.data_bands() in entry.data_bands


def choose_bundled_model(
    rasters: list[RasterBands],
    explicit: list[int] | None = None,
    allow_duplicates: bool = False,
) -> ModelChoice:
    """The first installed bundled model whose bands every raster has (UserError if none).

    ``explicit`` (``--bands``) picks the model with that many bands. ``why`` reads e.g.
    "Using the bundled 4-band model (B2 B3 B4 B8): the raster has no B11, B12 (by its band
    descriptions)".
    """
    table = bundled_models()
    installed = [e for e in table if (paths.MODELS_DIR / e.file).is_file()]
    if not installed:
        raise UserError(
            f"no --model given and the bundled models in {paths.MODELS_DIR} are missing; pass "
            "--model PATH to a checkpoint or reinstall WaterSeg"
        )
    for strict in (True, False):  # an RGBA colour interpretation first taken at its word
        skipped: list[tuple[BundledModel, str]] = []
        last_error: UserError | None = None
        for entry in installed:
            if not all(_fits(entry, r) for r in rasters):
                skipped.append((entry, f"not a {'/'.join(map(str, entry.data_bands))}-band image"))
                continue
            try:
                for r in rasters:
                    map_raster_bands(
                        list(entry.bands),
                        r,
                        explicit,
                        allow_duplicates=allow_duplicates,
                        strict=strict,
                    )
            except UserError as exc:
                last_error = exc
                held = set(rasters[0].held()[0]) if explicit is None else set()
                missing = [b for b in canonical_bands(entry.bands) if b not in held]
                skipped.append((entry, f"no {', '.join(missing)}" if missing else str(exc)))
                continue
            return _choice(entry, rasters, explicit, skipped)
    assert last_error is not None or skipped
    if last_error is not None:
        raise last_error
    raise UserError(
        "no bundled model fits the raster ("
        + "; ".join(f"{e.file}: {why}" for e, why in skipped)
        + "); pass --model and --bands"
    )


def _choice(
    entry: BundledModel,
    rasters: list[RasterBands],
    explicit: list[int] | None,
    skipped: list[tuple[BundledModel, str]],
) -> ModelChoice:
    bands = " ".join(entry.bands)
    if explicit is not None:
        reason = f"--bands lists {len(explicit)} bands"
    elif skipped:
        reason = f"the raster has {skipped[0][1]}"
    else:
        reason = f"the raster has {' '.join(canonical_bands(entry.bands))}"
    source = _source_text(rasters[0], explicit) if len(rasters) == 1 else "every input"
    why = f"Using the bundled {len(entry.bands)}-band model ({bands}): {reason} ({source})"
    if entry.key == "rgb":  # its cross-acquisition accuracy is modest: say so where it is used
        why += "; true colour alone is a first draft, check the mask (MODEL_CARD-rgb-v2.md)"
    return ModelChoice(str(paths.MODELS_DIR / entry.file), entry.key, list(entry.bands), why)


def index_choice(method: str, reason: str = "") -> ModelChoice:
    """``--method ndwi`` (or another water index): no checkpoint, the index's bands."""
    from backend.core.water_indices import ADAPTIVE_INDICES

    bands = list(_method_bands(method))
    if method in ADAPTIVE_INDICES:
        parts = ADAPTIVE_INDICES[method]
        what = (
            parts[0].upper()
            if len(parts) == 1
            else "the mean of " + " and ".join(p.upper() for p in parts)
        )
        why = (
            f"Using {what} ({' '.join(bands)}; water above a threshold set for each raster "
            "from its water/land edges), no model"
        )
    else:
        why = f"Using the classical index {method} ({' '.join(bands)}; water where it is > 0), no model"
    return ModelChoice("", None, bands, f"{why}: {reason}" if reason else why)


def resolve_method(
    method: str,
    rasters: list[RasterBands],
    model: Path | None = None,
    explicit: list[int] | None = None,
) -> tuple[str, str]:
    """``--method auto`` -> (the method, one line why); any other method is returned as is.

    With ``--model`` or ``--bands`` the user has chosen a model: "model". Otherwise the first
    of :data:`AUTO_INDICES` whose bands every raster holds, else "model" (a true-colour raster
    then gets the bundled RGB model)."""
    if method != AUTO:
        return method, ""
    if model is not None or explicit is not None:
        return MODEL, ""
    for name, bands in AUTO_INDICES:
        if rasters and all(set(bands) <= set(r.held()[0]) for r in rasters):
            return name, (
                f"chosen automatically, the raster has {' and '.join(bands)}; on real scenes "
                "from other sources the learned multispectral models did worse than the water "
                "indices (README, 'How good is it?'); --method model runs the bundled model"
            )
    return MODEL, ""


def model_for(model: Path) -> ModelChoice:
    """The bands of ``--model``: from the bundled table for a bundled file (no torch), else
    from the checkpoint itself (imports torch)."""
    key = paths.bundled_key(model)
    if key is not None:
        entry = next(e for e in bundled_models() if e.key == key)
        return ModelChoice(str(model), key, list(entry.bands))
    if not Path(model).is_file():
        raise UserError(f"model not found: {model}; check the --model path")
    from backend.core.checkpoint import InputSpec, read_checkpoint

    spec = InputSpec.from_dict(read_checkpoint(model, None))
    return ModelChoice(str(model), None, list(spec.bands))


def _scaling_notes(raster: RasterBands, model: ModelChoice) -> tuple[list[str], list[str]]:
    true_colour = model.key == "rgb"
    scaling = "8-bit true colour" if true_colour else "Sentinel-2 reflectance = value / 10000"
    notes = [
        f"data type {raster.dtype or 'unknown'}: the model's checkpoint scales raw values "
        f"({scaling})"
    ]
    warnings: list[str] = []
    if raster.dtype == "uint8" and not true_colour:
        warnings.append(
            "8-bit data into a reflectance model: values look like a rendered image, not "
            "Sentinel-2 reflectance x 10000; expect a poor mask"
        )
    if true_colour and raster.dtype and raster.dtype != "uint8":
        warnings.append(
            f"{raster.dtype} data into the 8-bit true-colour model: convert to an 8-bit image"
        )
    return notes, warnings


def make_plan(
    raster: RasterBands,
    *,
    model: ModelChoice | None = None,
    explicit: list[int] | None = None,
    allow_duplicates: bool = False,
    nodata: float | None = None,
    input_path: str | None = None,
) -> Plan:
    """The plan for one raster: ``model`` None chooses a bundled one. UserError when the
    raster's bands cannot be mapped."""
    if model is None:
        model = choose_bundled_model([raster], explicit, allow_duplicates)
    mapping = map_raster_bands(model.bands, raster, explicit, allow_duplicates=allow_duplicates)
    notes, warnings = _scaling_notes(raster, model)
    if mapping.note:
        warnings.insert(0, mapping.note)
    return Plan(input_path, raster, nodata, model, mapping, notes, warnings)


def read_raster(path: Path) -> tuple[RasterBands, float | None]:
    """A raster file's bands (descriptions, colour interpretation, type) and nodata value."""
    from backend.segment.raster_io import open_checked, raster_bands

    ds = open_checked(Path(path))
    try:
        return raster_bands(ds), ds.nodatavals[0]
    finally:
        ds.close()


def _band_names(text: str) -> list[str]:
    """``--band-names``: "B4,B3,B2,B8" or a JSON list (for names that hold commas)."""
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError:
            raise UserError(
                f"--band-names {text!r} is not a JSON list of strings; write e.g. "
                """--band-names '["B2", "B3", "B4", "B8"]'"""
            ) from None
        return [str(n) if n is not None else "" for n in names]
    return [n.strip() for n in text.split(",")]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message}; see 'python -m backend plan --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m backend plan",
        description="Say how 'segment' would read a raster: model, band mapping, nodata, "
        "scaling, warnings. Fast: does not load torch (unless --model is not bundled).",
    )
    p.add_argument("raster", nargs="?", type=Path, help="raster file (or use --band-names)")
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model chosen)")
    p.add_argument("--bands", help="1-based raster bands in the model's band order")
    p.add_argument("--allow-duplicate-bands", action="store_true", help="see 'segment --help'")
    p.add_argument(
        "--band-names",
        help='descriptions of a raster without a file: "B4,B3,B2,B8" or a JSON list',
    )
    p.add_argument("--dtype", default="", help="with --band-names: numpy type, e.g. uint8")
    p.add_argument(
        "--colour-interp", default="", help="with --band-names: e.g. red,green,blue,alpha"
    )
    for opt in segment_options():  # segment options that change the plan (e.g. --method)
        if opt.get("plan"):
            p.add_argument(
                f"--{opt['name']}",
                default=opt.get("default"),
                choices=opt.get("choices"),
                help=opt["help"],
            )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str]) -> int:
    """Entry point of ``python -m backend plan``."""
    args = build_parser().parse_args(argv)
    if (args.raster is None) == (args.band_names is None):
        raise UserError("pass a RASTER file or --band-names (one of them); see --help")
    if args.raster is not None:
        raster, nodata = read_raster(args.raster)
    else:
        names = _band_names(args.band_names)
        colours = [c.strip() for c in args.colour_interp.split(",") if c.strip()]
        raster, nodata = RasterBands(len(names), tuple(names), tuple(colours), args.dtype), None
    explicit = parse_bands_option(args.bands) if args.bands else None
    method, reason = resolve_method(args.method, [raster], args.model, explicit)
    if method != MODEL:
        model = index_choice(method, reason)
    else:
        model = model_for(args.model) if args.model else None
    plan = make_plan(
        raster,
        model=model,
        explicit=explicit,
        allow_duplicates=args.allow_duplicate_bands,
        nodata=nodata,
        input_path=str(args.raster) if args.raster else None,
    )
    plan.method = method
    if method != MODEL and args.model:
        plan.warnings.append(f"--model ignored: --method {method} uses no model")
    if args.json:
        print(json.dumps(plan.to_json()))
        return 0
    out = plan.to_json()
    lines = [
        f"input      {out['input'] or '(band names only)'}",
        f"bands      {out['band_count']}: {', '.join(d or '-' for d in out['band_descriptions'])}",
        f"model      {out['model']['file'] or 'none'} ({' '.join(out['model']['bands'])})",
        f"mapping    {out['bands']} ({out['band_rule']})",
        f"nodata     {out['nodata']}",
    ]
    if plan.model.why:
        lines.append(f"why        {plan.model.why}")
    lines += [f"note       {n}" for n in out["notes"]]
    lines += [f"warning    {w}" for w in out["warnings"]]
    print("\n".join(lines), file=sys.stdout)
    return 0
