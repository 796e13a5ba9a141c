"""``python -m backend segment``: rasters -> water mask, shoreline and optional extras.

Exit codes (set by backend/cli.py): 0 ok, 2 bad input or usage, 1 internal error, 130
cancelled by SIGTERM/SIGINT. Every output of the input being processed is written under a
temporary name in the output folder and renamed at the end, so an error or a cancel leaves
no partial file. See docs/segment.md.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from backend.core import paths
from backend.core.contract import segment_options
from backend.core.errors import Cancelled, UserError
from backend.segment.pipeline import OutputPlan, SegmentOptions, segment_source
from backend.segment.plan import (
    MODEL,
    ModelChoice,
    choose_bundled_model,
    index_choice,
    make_plan,
    read_raster,
    resolve_method,
)
from backend.segment.progress import make_reporter
from backend.segment.tiling import check_overlap


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 via backend.cli
        raise UserError(f"{message}; see 'python -m backend segment --help'")


_TYPES = {"float": float, "int": int, "str": str, "path": Path}


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``segment``, built from the option table in resources/contract.json."""
    p = _Parser(
        prog="python -m backend segment",
        description="Segment water vs land in rasters; write a water mask GeoTIFF and a "
        "shoreline layer per input.",
    )
    for opt in segment_options():
        if opt.get("positional"):
            p.add_argument(
                opt["name"], nargs=opt.get("nargs"), metavar=opt.get("metavar"), help=opt["help"]
            )
            continue
        flag = f"--{opt['name']}"
        if opt["type"] == "bool":
            p.add_argument(flag, action="store_true", help=opt["help"])
            continue
        kwargs = {"type": _TYPES[opt["type"]], "help": opt["help"]}
        if opt.get("required"):
            kwargs["required"] = True
        else:
            kwargs["default"] = opt.get("default")
        if opt.get("choices") and not opt.get("open_choices"):
            kwargs["choices"] = opt["choices"]
        p.add_argument(flag, **kwargs)
    return p


def check_ranges(args: argparse.Namespace) -> None:
    """Every number within the min/max of its option (UserError naming the range)."""
    for opt in segment_options():
        value = getattr(args, opt["name"].replace("-", "_"), None)
        if value is None or opt["type"] not in ("float", "int"):
            continue
        low, high = opt.get("min"), opt.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            span = (
                f"from {low:g} to {high:g}"
                if low is not None and high is not None
                else (f"at least {low:g}" if low is not None else f"at most {high:g}")
            )
            raise UserError(f"--{opt['name']} {value:g} is out of range; use a value {span}")


def _options(args) -> SegmentOptions:
    check_overlap(args.overlap)
    check_ranges(args)
    return SegmentOptions(
        overlap=args.overlap,
        threshold=args.threshold,
        probability=args.probability,
        shoreline=args.shoreline,
        min_length=args.min_length,
        smooth=args.smooth,
        simplify=args.simplify,
        polygons=args.polygons,
        quicklook=args.quicklook,
        l2a_offset=args.l2a_offset,
        overwrite=args.overwrite,
        tile_size=args.tile_size,
    )


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and prove it is writable (UserError otherwise)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} is a file, not a folder; pass a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=".waterseg-check-", dir=out_dir)).rmdir()
    except OSError as exc:
        raise UserError(
            f"cannot write to output folder {out_dir} ({exc.strerror or exc}); choose a folder "
            "you can write to with --out-dir"
        ) from None
    return out_dir


def load_checkpoint_model(
    model_path: Path | None, rasters=(), explicit=None, allow_duplicates: bool = False
):
    """--model, else the bundled model that fits the inputs' bands (``rasters``: their
    :class:`RasterBands`, from :func:`read_raster`) -> (model, spec, meta, path, why).

    The bundled model is chosen by :func:`backend.segment.plan.choose_bundled_model`, the
    rule ``plan`` (and so the dock) uses, before any model is built. Every input is then
    planned with the loaded checkpoint's bands (UserError if one cannot be mapped), so a
    problem with the last input shows before the first long run. A bundled file is always
    checked against its recorded SHA-256. ``why`` is one line saying which bundled model was
    chosen and why ("" with --model).
    """
    from backend.models.loading import load_model

    rasters = list(rasters)
    why = ""
    if model_path is None:
        choice = choose_bundled_model(rasters, explicit, allow_duplicates)
        model_path, why = Path(choice.file), choice.why
    model, spec, meta = load_model(model_path, paths.bundled_sha256(model_path))
    checked = ModelChoice(str(model_path), paths.bundled_key(model_path), list(spec.bands))
    for raster in rasters:
        make_plan(raster, model=checked, explicit=explicit, allow_duplicates=allow_duplicates)
    return model, spec, meta, model_path, why


class CancelFlag:
    """SIGTERM/SIGINT set the flag; the pipeline stops at the next batch. A second signal
    raises KeyboardInterrupt at once."""

    def __init__(self):
        self.event = threading.Event()
        self._old: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum, frame) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


# GDAL's block cache defaults to 5 % of the machine's RAM and fills up on large rasters: it was
# about half of the peak memory of a 10980 x 10980 run (2.1 GB -> 1.2 GB with 256 MB, same
# time). The pipeline reads each strip once, so a small cache loses nothing: with 256 MB the
# peak of an 8192 x 8192 run was 2.2x that of a 1024 x 1024 one, with 48 MB 1.5x (child
# VmHWM, benchmarks/bench_segment.py). A GDAL_CACHEMAX the user set is kept.
GDAL_CACHE_MB = 64


def main(argv: list[str]) -> int:
    """Entry point of ``python -m backend segment``; returns the exit code (see module doc)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
    progress_kind = "json" if "--progress=json" in argv or _json_requested(argv) else "text"
    reporter = make_reporter(progress_kind)
    cancel = CancelFlag()
    cancel.install()
    try:
        args = build_parser().parse_args(argv)
        reporter = make_reporter(args.progress)
        return _run(args, reporter, cancel)
    except UserError as exc:
        reporter.event("error", message=str(exc), exit_code=exc.exit_code)
        raise
    except (Cancelled, KeyboardInterrupt):
        reporter.event("error", message="cancelled", exit_code=Cancelled.exit_code)
        raise Cancelled() from None
    except Exception as exc:
        reporter.event(
            "error", message=f"internal error: {type(exc).__name__}: {exc}"[:300], exit_code=1
        )
        raise
    finally:
        cancel.restore()


def _json_requested(argv: list[str]) -> bool:
    return any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:], strict=False))


def _model_predictor(args, rasters, explicit, reporter):
    """--method model: the checkpoint (or the bundled model that fits) on the chosen device
    -> (predictor, input spec, model path)."""
    from backend.segment.inference import TilePredictor, choose_device, configure_cpu_threads

    device = choose_device(args.device)
    model, spec, meta, model_path, why = load_checkpoint_model(
        args.model, rasters, explicit, args.allow_duplicate_bands
    )
    if why:
        reporter.log(f"model: bundled model {Path(model_path).name}: {why}")
    if device == "cpu":
        threads = configure_cpu_threads()
        reporter.log(f"device: cpu ({threads} threads)")
    else:
        import torch

        reporter.log(f"device: {device} ({torch.cuda.get_device_name(device)})")
    predictor = TilePredictor(model, device, args.batch_size)
    del model  # the predictor holds its own (BatchNorm-folded) copy; free the original weights
    arch = meta.get("arch", {}).get("name", "?")
    reporter.log(f"model: {model_path} ({arch}, bands {' '.join(spec.bands)})")
    return predictor, spec, model_path


def _index_predictor(args, rasters, explicit, reporter):
    """--method ndwi|mndwi|...-adaptive: a water index, numpy on the CPU -> (predictor, spec,
    name)."""
    from backend.segment.indices import IndexPredictor, index_spec

    choice = index_choice(args.method, args.method_reason)
    if args.model is not None:
        reporter.log(f"--model ignored: --method {args.method} uses no model")
    for raster in rasters:  # every input has the index's bands, before the first run
        make_plan(
            raster,
            model=choice,
            explicit=explicit,
            allow_duplicates=args.allow_duplicate_bands,
        )
    reporter.log(f"method: {choice.why}")
    return IndexPredictor(args.method, args.batch_size), index_spec(args.method), args.method


def _offset_note(source, args) -> str | None:
    """A warning when a reflectance raster looks like a newer Sentinel-2 product (values
    +1000, processing baseline 04.00 and on) read without --l2a-offset, else None: the
    darkest 1 % of every band at or above 1000, where water is below 500 without the offset."""
    if args.l2a_offset or source.dtype == np.uint8 or source.dtype.kind == "f":
        return None
    raw, valid = source.read_decimated(1_000_000)
    if valid.sum() < 100:
        return None
    darkest = min(float(np.percentile(band[valid], 1)) for band in raw)
    if darkest < 1000:
        return None
    return (
        f"WARNING: the darkest 1 % of every band is at or above 1000 ({darkest:.0f}): this looks "
        "like a Sentinel-2 product of processing baseline 04.00 or newer (from January 2022), "
        "whose values carry +1000; pass --l2a-offset, or the water will be underestimated"
    )


def _cloud_note(
    source, args, share: float | None = None, shadow: float | None = None
) -> str | None:
    """One log line on the cloud mask of an input (None with --cloud-mask none); ``share``
    and ``shadow``: the shares of cloud and cloud shadow, when the caller has them already."""
    if args.cloud_mask == "none":
        return None
    why_not = f"; {source.cloud_why_not}" if source.cloud_why_not else ""
    if source.cloud is None:
        return (
            f"no cloud mask: the raster has no SCL or QA60 band{why_not}, so clouds and their "
            "shadows are segmented as they are (shadows can read as water)"
        )
    share = source.cloud_fraction() if share is None else share
    shadow = source.shadow_fraction() if shadow is None else shadow
    parts = f"{100 * share:.1f} % cloud, {100 * shadow:.1f} % cloud shadow; " if shadow else ""
    return (
        f"cloud mask from {source.cloud.describe()}: {100 * (share + shadow):.1f} % of the raster "
        f"is nodata ({parts}255 in the mask, no shoreline along it; --cloud-mask none keeps it)"
        + why_not
    )


TRAINED_PIXEL_M = 10.0
"""Every bundled model learned from 10 m Sentinel-2 pixels (SNOWED samples, ESW renders)."""
MODEL_PIXEL_RANGE_M = (2.5, 40.0)
"""Pixel sizes a learned model runs at without a warning: 4x finer or coarser than it learned
from. Far outside, its filters see other objects (a 300 m Landsat render: comb-like stripes,
shallow banks called land). The indices are per pixel and have no such range."""


def _domain_note(source, args) -> str | None:
    """A warning when the raster has no CRS, or when a learned model runs on pixels far from
    the size it learned from (:data:`MODEL_PIXEL_RANGE_M`); else None."""
    from backend.segment.clouds import pixel_metres

    if source.georef.crs is None:
        return (
            "WARNING: the raster has no CRS: the mask and shoreline are in pixel coordinates, "
            "shoreline lengths are in pixels (length_px), and batch leaves it out of merged "
            "layers; georeference it (e.g. gdal_translate -a_srs EPSG:... -a_ullr ...) first"
        )
    metres = pixel_metres(source.georef)
    low, high = MODEL_PIXEL_RANGE_M
    if args.method != MODEL or metres is None or low <= metres <= high:
        return None
    ratio = metres / TRAINED_PIXEL_M
    how = f"{ratio:.0f}x coarser" if ratio > 1 else f"{1 / ratio:.0f}x finer"
    return (
        f"WARNING: {metres:.1f} m pixels, {how} than the {TRAINED_PIXEL_M:.0f} m pixels the "
        "model learned from: expect a wrong mask (stripes, missed banks); resample to about "
        f"{TRAINED_PIXEL_M:.0f} m first (gdalwarp -tr {TRAINED_PIXEL_M:.0f} "
        f"{TRAINED_PIXEL_M:.0f} -r average) or, with NIR or SWIR bands, use --method auto"
    )


HAZE_ALL = 0.95
"""A cloud mask over more than this share of a raster leaves nothing worth segmenting: unless
water/land edges show through it (haze, thin cirrus), which :func:`_through_haze` checks."""


def _mask_name(cloud) -> str:
    from backend.segment.clouds import CloudAndShadow, CloudGrid

    if isinstance(cloud, CloudAndShadow):
        return _mask_name(cloud.cloud)
    return "s2cloudless" if isinstance(cloud, CloudGrid) else f"the {cloud.kind} band"


def _through_haze(source, args, share: float) -> str:
    """The cloud mask of ``source`` covers nearly everything: drop it and return a HAZE flag
    line when an adaptive index still finds a clear water/land edge under it, else raise a
    UserError that names the mask, its share and the flag that segments anyway."""
    from backend.segment.indices import is_adaptive, scene_threshold
    from backend.segment.pipeline import L2A_OFFSET

    cloud, name = source.cloud, _mask_name(source.cloud)
    if is_adaptive(args.method):
        source.cloud = None
        found, _, _ = scene_threshold(source, args.method, L2A_OFFSET if args.l2a_offset else 0.0)
        if found.fallback is None:
            return (
                f"HAZE: {name} flags {share:.0%} of the raster as cloud, yet water/land edges "
                f"show through it (index contrast {found.contrast:.2f}): segmented without the "
                "cloud mask and flagged; haze or thin cirrus lowers the contrast, check the mask"
            )
        source.cloud = cloud
    raise UserError(
        f"{name} flags {share:.0%} of {source.path.name} as cloud, so nothing is left to "
        "segment; if the ground shows through (haze, thin cirrus), pass --cloud-mask none to "
        "segment it anyway"
    )


def _terrain(args, source, path: Path, reporter):
    """The --dem of one input, aligned to it and attached to ``source`` (the engine sets its
    steep pixels to land), with one log line; None without --dem."""
    if args.dem is None:
        return None
    from backend.segment.terrain import Terrain

    terrain = Terrain(args.dem, source.georef, args.dem_max_slope)
    source.terrain = terrain
    share = terrain.share()
    where = (
        "the DEM does not cover the raster: nothing is changed"
        if math.isnan(share)  # no DEM data on this raster
        else f"{100 * share:.1f} % of the raster is that steep"
    )
    reporter.log(f"{path.name}: terrain from {terrain.describe()}: {where}")
    return terrain


def _run(args, reporter, cancel: CancelFlag) -> int:
    from backend.segment.indices import is_adaptive, scene_threshold
    from backend.segment.pipeline import L2A_OFFSET
    from backend.segment.raster_io import check_raster, open_raster, parse_bands_option

    t0 = time.monotonic()
    opts = _options(args)
    explicit = parse_bands_option(args.bands) if args.bands else None
    inputs = []
    for p in map(Path, args.inputs):  # the same file twice is processed once
        if any(p.resolve() == q.resolve() for q in inputs):
            reporter.log(f"{p} is given more than once; segmenting it once")
        else:
            inputs.append(p)
    stems: dict[str, Path] = {}
    for p in inputs:
        if p.stem in stems and stems[p.stem] != p:
            raise UserError(
                f"inputs {stems[p.stem]} and {p} would write the same outputs ({p.stem}_*); "
                "rename one or run them into different --out-dir folders"
            )
        stems[p.stem] = p
    for p in inputs:  # cheap checks first: a typo fails before torch and the model load
        check_raster(p)
    out_dir = prepare_out_dir(args.out_dir)
    plans = [OutputPlan.for_input(p, out_dir, opts) for p in inputs]
    if not opts.overwrite:
        existing = [str(e) for plan in plans for e in plan.existing()]
        if existing:
            raise UserError(
                f"output exists: {existing[0]}"
                + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else "")
                + "; pass --overwrite or choose another --out-dir"
            )
    rasters = [read_raster(p)[0] for p in inputs]  # band names, read once for every decision
    args.method, args.method_reason = resolve_method(args.method, rasters, args.model, explicit)
    if args.method != MODEL:
        predictor, spec, model_path = _index_predictor(args, rasters, explicit, reporter)
    else:
        predictor, spec, model_path = _model_predictor(args, rasters, explicit, reporter)
    for i, (p, plan) in enumerate(zip(inputs, plans, strict=True)):
        if cancel():
            raise Cancelled()
        with open_raster(
            p,
            list(spec.bands),
            explicit,
            args.allow_duplicate_bands,
            args.zero_is_data,
            args.cloud_mask,
            L2A_OFFSET if args.l2a_offset else 0.0,
        ) as source:
            share = source.cloud_fraction() if source.cloud else 0.0  # read once
            shadow = source.shadow_fraction()
            quality = {"method": args.method, "threshold": None, "flags": [], "warnings": []}
            quality["cloud_fraction"] = round(share, 6)
            quality["shadow_fraction"] = round(shadow, 6)
            if share > HAZE_ALL:  # the mask is dropped: its "nodata" line would be wrong
                cloud_line = _through_haze(source, args, share)
                quality["flags"].append("haze")
                quality["shadow_fraction"] = 0.0
            else:
                cloud_line = _cloud_note(source, args, share, shadow)
            notes = [source.mapping.note, source.nodata_note, cloud_line]
            for note in (*notes, _offset_note(source, args), _domain_note(source, args)):
                if note:
                    reporter.log(f"{p.name}: {note}")
                    if note.upper().startswith(("WARNING", "HAZE")):
                        quality["warnings"].append(note)
            if is_adaptive(args.method):
                found, line, haze = scene_threshold(
                    source, args.method, L2A_OFFSET if args.l2a_offset else 0.0
                )
                predictor.threshold, predictor.haze = found.threshold, haze
                quality["threshold"] = round(found.threshold, 4)
                reporter.log(f"{p.name}: {line}")
                if "WARNING" in line:
                    quality["warnings"].append(line[line.index("WARNING") :])
            terrain = _terrain(args, source, p, reporter)
            try:
                done = segment_source(
                    source,
                    predictor,
                    spec,
                    opts,
                    plan,
                    reporter,
                    index=i,
                    count=len(inputs),
                    model_name=str(model_path),
                    cancelled=cancel,
                )
            finally:
                if terrain is not None:
                    terrain.close()
            if terrain is not None:
                steep = terrain.steep_pixels / max(done.get("valid_pixels") or 0, 1)
                quality["steep_fraction"] = round(steep, 6)
        quality["warnings"] += done.pop("warnings", [])
        reporter.event("done", **done, **quality)
    reporter.event("finished", elapsed_s=round(time.monotonic() - t0, 3), count=len(inputs))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
