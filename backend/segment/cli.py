"""``python -m backend segment``: rasters -> water mask, shoreline and optional extras.

Exit codes (set by backend/cli.py): 0 ok, 2 bad input or usage, 1 internal error, 130
cancelled by SIGTERM/SIGINT. Every output of the input being processed is written under a
temporary name in the output folder and renamed at the end, so an error or a cancel leaves
no partial file. See docs/segment.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from backend.errors import Cancelled, UserError
from backend.segment.pipeline import OutputPlan, SegmentOptions, segment_source
from backend.segment.progress import make_reporter
from backend.segment.tiling import check_overlap


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 via backend.cli
        raise UserError(f"{message}; see 'python -m backend segment --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m backend segment",
        description="Segment water vs land in rasters; write a water mask GeoTIFF and a "
        "shoreline layer per input.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="rasters (any GDAL format)")
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the outputs")
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--bands", help="1-based raster bands in the model's band order, e.g. 2,3,4,8")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (>= 0.25)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per forward pass")
    p.add_argument("--threshold", type=float, default=0.5, help="water if probability >= P")
    p.add_argument("--probability", action="store_true", help="also write the probability")
    p.add_argument("--shoreline", choices=["gpkg", "shp", "both", "none"], default="gpkg")
    p.add_argument("--min-length", type=float, default=0.0, help="drop lines shorter (metres)")
    p.add_argument("--smooth", type=int, default=0, help="Chaikin smoothing iterations")
    p.add_argument("--simplify", type=float, default=0.0, help="tolerance in map units")
    p.add_argument("--polygons", action="store_true", help="also write water polygons")
    p.add_argument("--quicklook", action="store_true", help="also write a quicklook PNG")
    p.add_argument(
        "--l2a-offset",
        action="store_true",
        help="subtract 1000 from raw values (Sentinel-2 L2A of processing baseline >= 04.00)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--progress", choices=["text", "json", "none"], default="text")
    return p


def _options(args) -> SegmentOptions:
    check_overlap(args.overlap)
    if not 0.0 < args.threshold < 1.0:
        raise UserError(f"--threshold {args.threshold} must lie strictly between 0 and 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.min_length < 0 or args.simplify < 0 or args.smooth < 0:
        raise UserError("--min-length, --simplify and --smooth must not be negative")
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


def load_checkpoint_model(model_path: Path | None, inputs=(), explicit=None):
    """--model, else the bundled model that fits the inputs -> (model, spec, meta, path, why).

    Every input is checked to have the model's bands (by ``explicit`` band numbers, band
    descriptions or the Sentinel-2 band layout; UserError if not), so a problem with the last
    input shows before the first long run. A bundled file is always checked against its
    recorded SHA-256. Without --model the bundled models are tried in order of preference
    (:func:`backend.paths.bundled_models`: the B2 B3 B4 B8 B11 B12 default first, then the
    4-band B2 B3 B4 B8 model) and the first whose bands every input has is used. ``why`` is
    one line saying which was chosen and why (or "" with --model).
    """
    from backend import paths
    from backend.checkpoint import InputSpec, load_model, read_checkpoint, unpack_checkpoint
    from backend.segment.raster_io import open_raster

    def check_inputs(bands: list[str]) -> None:
        for p in inputs:
            open_raster(p, bands, explicit).close()

    if model_path is not None:
        model, spec, meta = load_model(model_path, paths.bundled_sha256(model_path))
        check_inputs(list(spec.bands))
        return model, spec, meta, model_path, ""
    candidates = [m for m in paths.bundled_models() if m.is_file()]
    if not candidates:
        raise UserError(
            f"no --model given and the bundled models in {paths.MODELS_DIR} are missing; pass "
            "--model PATH to a checkpoint or reinstall WaterSeg"
        )
    passed_over: list[str] = []
    for n, candidate in enumerate(candidates):
        ckpt = read_checkpoint(candidate, paths.bundled_sha256(candidate))
        bands = list(InputSpec.from_dict(ckpt).bands)
        try:
            check_inputs(bands)  # before the model is built: a passed-over one never is
        except UserError as exc:
            if n == len(candidates) - 1:
                raise
            passed_over.append(f"{candidate.name} needs {' '.join(bands)}: {exc}")
            continue
        model, spec, meta = unpack_checkpoint(ckpt)
        why = f"bundled model {candidate.name} (bands {' '.join(spec.bands)})"
        if passed_over:
            why += "; not " + "; not ".join(passed_over)
        return model, spec, meta, candidate, why
    raise AssertionError("unreachable")


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
# time). The pipeline reads each strip once, so a small cache loses nothing. A GDAL_CACHEMAX
# the user set is kept.
GDAL_CACHE_MB = 256


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


def _run(args, reporter, cancel: CancelFlag) -> int:
    from backend.segment.inference import (
        TilePredictor,
        choose_device,
        configure_cpu_threads,
    )
    from backend.segment.raster_io import check_raster, open_raster, parse_bands_option

    t0 = time.monotonic()
    opts = _options(args)
    explicit = parse_bands_option(args.bands) if args.bands else None
    inputs = [Path(p) for p in args.inputs]
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
    device = choose_device(args.device)
    model, spec, meta, model_path, why = load_checkpoint_model(args.model, inputs, explicit)
    if why:
        reporter.log(f"model: {why}")
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
    for i, (p, plan) in enumerate(zip(inputs, plans, strict=True)):
        if cancel():
            raise Cancelled()
        with open_raster(p, list(spec.bands), explicit) as source:
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
        reporter.event("done", **done)
    reporter.event("finished", elapsed_s=round(time.monotonic() - t0, 3), count=len(inputs))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
