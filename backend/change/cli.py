"""``python -m backend change``: dated scenes -> transects, positions, rates, plots, report.

The scenes are segmented by ``batch`` (Dask, resumable: finished scenes are skipped) into
``OUT/scenes``; ``--batch-dir`` reads an existing batch output instead. Progress as JSON lines
with ``--progress json`` (events start, batch, transects, progress, output, finished), as
the other commands write them. See docs/change.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from backend.change.dates import load_date_csv
from backend.change.levels import read_levels
from backend.change.pipeline import ChangeOptions, analyse
from backend.change.positions import RULES
from backend.change.scenes import collect, read_batch_rows
from backend.core.errors import UserError
from backend.segment.progress import JsonReporter, NullReporter, Reporter

SCENES_DIR = "scenes"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message}; see 'python -m backend change --help'")


class TextReporter(Reporter):
    """Plain log lines on stderr."""

    def event(self, name: str, **f) -> None:
        if name == "batch" and f.get("kind") == "scene":
            self.log(f"[{f.get('finished')}/{f.get('total')}] {f.get('scene')}: {f.get('status')}")
        elif name == "output":
            self.log(f"wrote {f['path']}")
        elif name == "transects":
            self.log(f"{f['count']} transects ({f['dropped']} dropped: crossing a neighbour)")
        elif name == "finished":
            self.log(
                f"finished in {f['elapsed_s']:.1f}s: {f['dates_used']} dates, {f['transects']} transects"
            )


def build_parser() -> argparse.ArgumentParser:
    d = ChangeOptions()
    p = _Parser(
        prog="python -m backend change",
        description="Shoreline change through time: segment dated scenes (batch), cast "
        "transects, measure positions, remove outliers, compute DSAS rates (SCE, NSM, EPR, "
        "LRR, WLR), write layers, CSVs, plots and an HTML report.",
        allow_abbrev=False,
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="scenes: rasters, folders, globs or @list.txt (as batch takes them)",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="folder for all outputs")
    p.add_argument(
        "--batch-dir",
        type=Path,
        help="read this batch output (batch_report.json) instead of running batch",
    )
    g = p.add_argument_group("segmentation (batch)")
    g.add_argument("--method", help="segment --method for every scene (default: segment's auto)")
    g.add_argument("--workers", type=int, help="batch: scenes at once")
    g.add_argument("--scheduler", default="auto", help="batch: auto, local or a Dask address")
    g = p.add_argument_group("dates")
    g.add_argument("--dates", type=Path, help="CSV 'scene,date' overriding metadata and file names")
    g = p.add_argument_group("transects")
    g.add_argument(
        "--transects", help="your transects (lines drawn land -> water) instead of casting them"
    )
    g.add_argument("--transect-id-field", default=d.transect_id_field)
    g.add_argument(
        "--baseline", help="baseline lines (default: the median shoreline of the dates used)"
    )
    g.add_argument(
        "--spacing",
        type=float,
        default=d.spacing,
        help=f"metres between transects (default {d.spacing:g})",
    )
    g.add_argument(
        "--length",
        type=float,
        default=d.length,
        help=f"transect length in metres (default {d.length:g})",
    )
    g.add_argument(
        "--landward", type=float, help="metres of each transect on the land side (default half)"
    )
    g.add_argument(
        "--smoothing",
        type=float,
        help="half-chord (m) of the baseline direction (default max(spacing, length/4))",
    )
    g.add_argument(
        "--min-baseline-length",
        type=float,
        default=d.min_baseline_length,
        help="drop median-shoreline lines shorter than this (m)",
    )
    g.add_argument("--crs", help="working CRS in metres (default: the CRS most scenes use)")
    g = p.add_argument_group("positions and outliers")
    g.add_argument(
        "--crossing",
        choices=RULES,
        default=d.crossing,
        help="which crossing when a shoreline crosses a transect several times",
    )
    g.add_argument(
        "--max-change",
        type=float,
        default=d.max_change,
        help=f"spike: jump (m) from both neighbouring dates (default {d.max_change:g}; 0 off)",
    )
    g.add_argument(
        "--median-window",
        type=int,
        default=d.median_window,
        help=f"running median over this many dates (default {d.median_window}; 0 off)",
    )
    g.add_argument(
        "--median-threshold",
        type=float,
        default=d.median_threshold,
        help=f"remove positions this far (m) from the running median (default {d.median_threshold:g})",
    )
    g.add_argument(
        "--max-cloud",
        type=float,
        default=d.max_cloud,
        help="flag dates with a larger cloud_fraction",
    )
    g.add_argument(
        "--max-shadow",
        type=float,
        default=d.max_shadow,
        help="flag dates with a larger shadow_fraction",
    )
    g.add_argument(
        "--jump-z",
        type=float,
        default=d.jump_z,
        help="flag dates whose water fraction is this many robust SDs above the median (0 off)",
    )
    g.add_argument(
        "--jump-min",
        type=float,
        default=d.jump_min,
        help=f"... and at least this share of the scene above it (default {d.jump_min:g})",
    )
    g.add_argument(
        "--per-transect-outliers",
        action="store_true",
        help="seek outliers in each transect's raw series (default: in what is left once the "
        "shift that the whole shore makes on each date is taken out)",
    )
    g.add_argument("--keep-flagged", action="store_true", help="use flagged dates anyway")
    g.add_argument(
        "--uncertainty",
        type=float,
        help="one position uncertainty (m) for every date (default: pixel size x (1 + 2 x cloud share))",
    )
    g = p.add_argument_group("water-level correction (optional)")
    g.add_argument("--levels", type=Path, help="CSV 'date,level' (metres)")
    g.add_argument("--slope", help="shore slope (rise/run), or a CSV 'transect_id,slope'")
    g.add_argument(
        "--reference-level", type=float, help="level to move positions to (default: mean level)"
    )
    p.add_argument("--plots", choices=["all", "overview", "none"], default="all")
    p.add_argument("--title", default="", help="title of the overview figure")
    p.add_argument("--progress", choices=["text", "json", "none"], default="text")
    return p


class _BatchRelay(Reporter):
    """Batch's events, forwarded as ``batch`` events with a stage, so a reader of change's
    JSON lines never mistakes batch's ``finished`` for change's."""

    min_interval_s = 0.5

    def __init__(self, outer: Reporter):
        super().__init__()
        self.outer = outer

    def log(self, message: str) -> None:
        self.outer.log(message)

    def event(self, name: str, **f) -> None:
        if name == "progress" and f.get("total"):
            done = sum(int(f.get(k) or 0) for k in ("done", "skipped", "failed"))
            self.outer.event(
                "progress",
                stage="batch",
                fraction=done / int(f["total"]),
                done=done,
                total=f["total"],
            )
        elif name in ("scene", "start"):
            self.outer.event("batch", kind=name, **{k: v for k, v in f.items() if k != "outputs"})


def run_batch(args, reporter: Reporter) -> Path:
    """Run ``batch`` on the inputs into OUT/scenes -> that folder."""
    from backend.batch.cli import build_parser as batch_parser
    from backend.batch.cli import run_batch as batch_run

    out = args.out_dir / SCENES_DIR
    argv = [*args.inputs, "--out-dir", str(out), "--scheduler", args.scheduler]
    if args.method:
        argv += ["--method", args.method]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    parser, actions = batch_parser()
    code = batch_run(parser.parse_args(argv), actions, _BatchRelay(reporter))
    if code not in (0, 3):
        raise UserError(f"batch ended with exit code {code}")
    return out


def main(argv: list[str]) -> int:
    """Entry point of ``python -m backend change``; 0 done, 2 user error."""
    args = build_parser().parse_args(argv)
    reporter: Reporter = {"json": JsonReporter, "text": TextReporter, "none": NullReporter}[
        args.progress
    ]()
    t0 = time.monotonic()
    try:
        return _run(args, reporter, t0)
    except UserError as exc:
        reporter.event("error", message=str(exc), exit_code=exc.exit_code)
        raise


def _run(args, reporter: Reporter, t0: float) -> int:
    if not args.inputs and not args.batch_dir:
        raise UserError("give scenes (INPUT ...) or --batch-dir of a finished batch")
    if (args.levels is None) != (args.slope is None):
        given, missing = ("--levels", "--slope") if args.slope is None else ("--slope", "--levels")
        raise UserError(
            f"{given} without {missing}: they go together (the water-level correction needs the "
            "levels CSV, rows 'date,level', and the shore slope); pass both, or neither"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    reporter.event("start", out_dir=str(args.out_dir.resolve()))
    batch_dir = args.batch_dir or run_batch(args, reporter)
    user_dates = load_date_csv(args.dates) if args.dates else None
    scenes, skipped = collect(read_batch_rows(batch_dir), user_dates)
    for s in skipped:
        reporter.log(f"left out {s['scene']}: {s['reason']}")
    levels = read_levels(args.levels, args.slope, args.reference_level) if args.levels else None
    opts = ChangeOptions(
        spacing=args.spacing,
        length=args.length,
        landward=args.landward,
        smoothing=args.smoothing,
        min_baseline_length=args.min_baseline_length,
        baseline=args.baseline,
        transects=args.transects,
        transect_id_field=args.transect_id_field,
        crossing=args.crossing,
        max_change=args.max_change,
        median_window=args.median_window,
        median_threshold=args.median_threshold,
        max_cloud=args.max_cloud,
        max_shadow=args.max_shadow,
        jump_z=args.jump_z,
        jump_min=args.jump_min,
        keep_flagged=args.keep_flagged,
        coherent=not args.per_transect_outliers,
        uncertainty=args.uncertainty,
        crs=args.crs,
        levels=levels,
    )
    result = analyse(scenes, opts, reporter)
    for s in scenes:
        if s.flags:
            reporter.log(
                f"flagged {s.name}: {', '.join(s.flags)}"
                + ("" if opts.keep_flagged else " (left out)")
            )
    from backend.change.html import write_html
    from backend.change.outputs import summary, write_outputs
    from backend.change.plots import all_plots

    extra = {
        "skipped_scenes": skipped,
        "batch_dir": str(batch_dir),
        "options": {
            k: v for k, v in vars(args).items() if k not in ("inputs",) and not callable(v)
        },
    }
    paths = write_outputs(result, args.out_dir, extra)
    paths.update(all_plots(result, args.out_dir, args.plots, args.title))
    paths["report_html"] = write_html(result, summary(result, extra), args.out_dir, paths)
    for kind, path in paths.items():
        reporter.event("output", kind=kind, path=str(path))
    info = summary(result)
    reporter.event(
        "finished",
        elapsed_s=round(time.monotonic() - t0, 3),
        dates_used=info["dates_used"],
        dates_flagged=info["dates_flagged"],
        transects=info["transects"],
        median=info["median"],
        corrected=result.corrected,
    )
    return 0
