"""``python -m backend batch``: segment many scenes on a Dask cluster (embedded or remote).

Exit codes: 0 every scene done or skipped, 3 some scenes failed (see the report), 2 user
error (nothing ran), 1 internal error, 130 cancelled (Ctrl-C / SIGTERM; the report is still
written). See docs/batch.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.batch.inputs import check_unique_stems, expand_inputs
from backend.batch.manifest import file_sha256
from backend.batch.merge import MERGED_NAME, merge_shorelines, target_srs
from backend.batch.report import BatchReport, eta_s, make_batch_reporter
from backend.batch.scene import SceneJob, result_row, run_scene
from backend.core.errors import UserError

SOME_FAILED_EXIT = 3
# Peak memory of one segment run is about 1.1 GB on a 10980 x 10980 scene (docs/segment.md);
# the embedded cluster runs no more scenes at once than the machine's memory holds.
SCENE_MEMORY_BYTES = 1536 * 1024**2
# Segment options that belong to the batch itself, or that it sets for every scene.
_BATCH_OWNED = {"help", "inputs", "out_dir", "overwrite", "progress"}
# Segment options that do not change a scene's outputs (not compared in the manifest; the
# model is compared by its SHA-256).
_NOT_COMPARED = {"device", "batch_size", "model"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 via backend.cli
        raise UserError(f"{message}; see 'python -m backend batch --help'")


def build_parser() -> tuple[argparse.ArgumentParser, list[argparse.Action]]:
    """The batch's own options plus segment's (taken from segment's parser, so the two cannot
    drift) -> (parser, the segment actions)."""
    from backend.segment.cli import build_parser as segment_parser

    p = _Parser(
        prog="python -m backend batch",
        description="Segment many scenes with one command, one scene per Dask task, on this "
        "machine or a Dask cluster. Finished scenes are skipped on a re-run.",
        allow_abbrev=False,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="rasters, globs ('scenes/**/*.tif'), folders (searched recursively) or list "
        "files (@list.txt or *.txt: one path or URL per line)",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="folder for all outputs")
    p.add_argument(
        "--scheduler",
        default="auto",
        help="auto (the scheduler in DASK_SCHEDULER_ADDRESS, else an embedded cluster), local "
        "(always embedded) or the ADDRESS of a running 'dask scheduler' (tcp://host:8786)",
    )
    p.add_argument("--workers", type=int, help="embedded cluster: worker processes")
    p.add_argument(
        "--threads-per-worker", type=int, help="embedded cluster: scenes per worker (default 1)"
    )
    p.add_argument(
        "--retries", type=int, default=2, help="retries of a scene that crashed (default 2)"
    )
    p.add_argument("--force", action="store_true", help="redo scenes that are already done")
    p.add_argument(
        "--merge-shoreline",
        action="store_true",
        help=f"also write every scene's shoreline into one {MERGED_NAME}",
    )
    p.add_argument("--merge-crs", default="EPSG:4326", help="CRS of the merged shoreline")
    p.add_argument("--progress", choices=["text", "json", "none"], default="text")
    group = p.add_argument_group(
        "segment options", "passed on to 'segment' for every scene (see its --help)"
    )
    actions = [a for a in segment_parser()._actions if a.dest not in _BATCH_OWNED]
    for action in actions:
        group._add_action(action)
    return p, actions


def segment_arguments(
    args: argparse.Namespace, actions: list[argparse.Action]
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The segment options given -> (argv for segment, their canonical values for manifests,
    segment's defaults of those). Paths are made absolute: the workers run elsewhere."""
    argv: list[str] = []
    options: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for a in actions:
        value = getattr(args, a.dest)
        if isinstance(value, Path):
            value = str(value.resolve())
        flag = a.option_strings[-1]
        if a.nargs == 0:
            if value:
                argv.append(flag)
        elif value is not None and value != a.default:
            argv += [flag, str(value)]
        if a.dest not in _NOT_COMPARED:
            options[a.dest] = value
            defaults[a.dest] = str(a.default) if isinstance(a.default, Path) else a.default
    return argv, options, defaults


def local_cluster_size(workers: int | None, threads: int | None) -> tuple[int, int]:
    """Workers and threads of the embedded cluster: workers x threads <= the CPUs this process
    may use (and no more scenes at once than memory holds); UserError when asked for more."""
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    threads = threads or 1
    if workers is None:
        by_memory = max(1, psutil.virtual_memory().total // SCENE_MEMORY_BYTES)
        workers = max(1, min(cores // threads, by_memory))
    if workers < 1 or threads < 1:
        raise UserError("--workers and --threads-per-worker must be at least 1")
    if workers * threads > cores:
        raise UserError(
            f"--workers {workers} x --threads-per-worker {threads} = {workers * threads} scenes "
            f"at once, more than the {cores} CPU(s) this process may use; lower one of them"
        )
    return workers, threads


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpus_per_scene(client) -> dict[str, int]:
    """Per worker host: CPUs one scene may use = the host's CPUs / scenes it runs at once."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cpus = client.run(_cpu_count)
    threads_on: dict[str, int] = {}
    cpus_on: dict[str, int] = {}
    for addr, info in workers.items():
        host = info["host"]
        threads_on[host] = threads_on.get(host, 0) + int(info["nthreads"])
        cpus_on[host] = max(cpus_on.get(host, 1), int(cpus.get(addr, 1)))
    return {h: max(1, cpus_on[h] // max(1, threads_on[h])) for h in threads_on}


@contextmanager
def open_client(args, reporter) -> Iterator[tuple[Any, str]]:
    """A Dask client on the scheduler ``args.scheduler`` names -> (client, description)."""
    import dask
    from distributed import Client, LocalCluster

    scheduler = args.scheduler
    address = dask.config.get("scheduler-address", None) if scheduler == "auto" else None
    if scheduler not in ("auto", "local"):
        address = scheduler
    if address:
        if args.workers or args.threads_per_worker:
            reporter.log("--workers/--threads-per-worker ignored: the cluster's workers decide")
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise UserError(
                f"cannot reach the Dask scheduler at {address} ({exc}); start one with "
                "'dask scheduler' (see docs/batch.md) or use --scheduler local"
            ) from None
        try:
            yield client, f"scheduler {address}"
        finally:
            client.close()
        return
    workers, threads = local_cluster_size(args.workers, args.threads_per_worker)
    with warnings.catch_warnings():  # 8787 taken: Dask picks another port, printed below
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            dashboard_address=":8787",
            silence_logs=logging.ERROR,
        )
    try:
        with Client(cluster) as client:
            yield client, "embedded LocalCluster"
    finally:
        cluster.close()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (the plugin's cancel) ends the batch like Ctrl-C: report written, exit 130."""

    def handle(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _failure_row(job: SceneJob, exc: BaseException, seconds: float) -> dict[str, Any]:
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        error = "the worker running this scene died on every try (out of memory?)"
    else:
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return result_row(job, "failed", seconds, error=error)


def _running(client, keys: set[str]) -> int:
    """Scenes running now: the scheduler's processing tasks of this batch, at most as many
    per worker as it has threads (the rest of a worker's tasks are queued there)."""
    try:
        nthreads = client.nthreads()
        return sum(
            min(sum(1 for k in ks if k in keys), nthreads.get(w, 1))
            for w, ks in client.processing().items()
        )
    except Exception:  # noqa: BLE001 - a progress figure must never stop the batch
        return 0


def run_batch(args, actions, reporter) -> int:
    """Expand the inputs, run every scene on the cluster, write the report (and the merged
    shoreline); returns the exit code."""
    from distributed import as_completed

    scenes = expand_inputs(args.inputs)
    check_unique_stems(scenes)
    from backend.segment.cli import prepare_out_dir

    out_dir = prepare_out_dir(args.out_dir.resolve())
    seg_argv, options, defaults = segment_arguments(args, actions)
    if args.merge_shoreline:
        if options.get("shoreline") == "none":
            raise UserError("--merge-shoreline needs shorelines; drop --shoreline none")
        target_srs(args.merge_crs)
    model_sha = None
    if args.model is not None:
        if not args.model.is_file():
            raise UserError(f"--model {args.model} not found; pass a checkpoint file")
        model_sha = file_sha256(args.model)
    if args.retries < 0:
        raise UserError("--retries must not be negative")

    jobs = [
        SceneJob(s, str(out_dir), tuple(seg_argv), options, defaults, model_sha, args.force)
        for s in scenes
    ]
    report = BatchReport(out_dir, [result_row(j, "pending", 0.0) for j in jobs])
    report.write()
    progress_every = max(reporter.min_interval_s, 1.0)
    with _sigterm_as_interrupt(), open_client(args, reporter) as (client, where):
        info = client.scheduler_info(n_workers=-1)["workers"]
        per_host = cpus_per_scene(client) if info else {}
        if not info:
            reporter.log("no worker has joined the scheduler yet; scenes wait for one")
        reporter.event(
            "start",
            total=len(jobs),
            scheduler=where,
            dashboard=client.dashboard_link,
            workers=len(info),
            threads=sum(int(w["nthreads"]) for w in info.values()),
            cpus_per_scene=per_host,
            out_dir=str(out_dir),
        )
        run = uuid.uuid4().hex[:8]
        futures = {}
        for i, job in enumerate(jobs):
            job = SceneJob(**{**job.__dict__, "cpus_per_scene": per_host})
            fut = client.submit(
                run_scene, job, key=f"scene-{i}-{job.stem}-{run}", retries=args.retries
            )
            futures[fut] = job
        keys = {f.key for f in futures}
        ac = as_completed(futures)
        finished = 0
        last_progress = 0.0
        try:
            while not ac.is_empty():
                batch = ac.next_batch(block=False)
                for fut in batch:
                    job = futures[fut]
                    keys.discard(fut.key)
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - retries spent: report the scene
                        row = _failure_row(job, exc, 0.0)  # its tries ran on workers
                    fut.release()
                    finished += 1
                    report.record(row)
                    report.write(force=False)
                    fields = {k: v for k, v in row.items() if k != "outputs"}
                    reporter.event("scene", **fields, finished=finished, total=len(jobs))
                now = time.monotonic()
                if now - last_progress >= progress_every or (batch and ac.is_empty()):
                    last_progress = now
                    summary = report.summary()
                    reporter.event(
                        "progress",
                        **summary,
                        running=_running(client, keys),
                        eta_s=eta_s(report.counts(), len(jobs), summary["elapsed_s"]),
                    )
                if not batch:
                    time.sleep(0.2)
        finally:
            report.write()
    if args.merge_shoreline:
        sources = [
            (r["scene"], r["input"], path)
            for r in report.rows.values()
            if r["status"] in ("done", "skipped")
            for path in [
                (r.get("outputs") or {}).get("shoreline_gpkg")
                or (r.get("outputs") or {}).get("shoreline_shp")
            ]
            if path
        ]
        merged = out_dir / MERGED_NAME
        count, unplaced = merge_shorelines(sources, merged, args.merge_crs)
        if unplaced:
            reporter.log(f"not in the merged shoreline (no CRS): {', '.join(unplaced)}")
        reporter.event("output", kind="merged_shoreline", path=str(merged), features=count)
    reporter.event("output", kind="report_csv", path=str(report.csv_path))
    reporter.event("output", kind="report_json", path=str(report.json_path))
    summary = report.summary()
    reporter.event("finished", **summary)
    return SOME_FAILED_EXIT if summary["failed"] else 0


def main(argv: list[str]) -> int:
    """Entry point of ``python -m backend batch``; returns the exit code (module doc)."""
    kind = "json" if "--progress=json" in argv or "json" in _after(argv, "--progress") else "text"
    reporter = make_batch_reporter(kind)
    try:
        parser, actions = build_parser()
        args = parser.parse_args(argv)
        reporter = make_batch_reporter(args.progress)
        return run_batch(args, actions, reporter)
    except UserError as exc:
        reporter.event("error", message=str(exc), exit_code=exc.exit_code)
        raise
    except KeyboardInterrupt:
        reporter.event("error", message="cancelled", exit_code=130)
        raise


def _after(argv: list[str], flag: str) -> list[str]:
    return [b for a, b in zip(argv, argv[1:], strict=False) if a == flag]
