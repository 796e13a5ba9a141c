"""One scene = one Dask task: run the unchanged ``segment`` command on it, write its manifest.

``segment`` runs in a subprocess (:mod:`backend.batch.child`), which the kernel kills when the
worker dies, and commits its outputs atomically; the manifest is written after the commit.
So a worker killed mid-scene leaves at most a hidden staging folder, which a later segment
run in that folder removes once its owner is gone (``Staging.remove_stale``, one rule for
segment and batch). Exit code 2 of segment (bad input) is a result (status "failed"),
not an exception, so Dask does not retry it; any other failure raises :class:`SceneFailed`
and Dask's ``retries`` apply.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.batch.inputs import scene_stem
from backend.batch.manifest import (
    FORMAT,
    file_sha256,
    input_stat,
    is_complete,
    manifest_path,
    read_manifest,
    write_atomic,
)

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
BAD_INPUT_EXIT = 2


class SceneFailed(Exception):
    """segment failed in a way a retry may fix (killed, internal error); Dask retries it."""


@dataclass(frozen=True)
class SceneJob:
    """Everything a worker needs for one scene (pickled to the worker).

    ``segment_args`` are the segment options to pass on; ``options`` their canonical values,
    recorded in and compared with the manifest (``option_defaults``: segment's defaults); ``model_sha256`` the SHA-256 of ``--model``
    (None: segment picks a bundled model); ``cpus_per_scene`` maps a worker host to the CPUs
    one scene may use there.
    """

    scene: str
    out_dir: str
    segment_args: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    option_defaults: dict[str, Any] = field(default_factory=dict)
    model_sha256: str | None = None
    force: bool = False
    cpus_per_scene: dict[str, int] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return scene_stem(self.scene)


QUALITY_FIELDS = (
    "method",
    "threshold",
    "cloud_fraction",
    "shadow_fraction",
    "steep_fraction",
    "flags",
    "warnings",
)
"""What ``segment``'s done event says of a scene's quality, carried into the report and the
manifest as it is (the method chosen, its per-scene threshold, the share masked as cloud, flags
such as "haze", every warning it logged)."""


def result_row(job: SceneJob, status: str, seconds: float, **fields: Any) -> dict[str, Any]:
    """A row of the batch report (see docs/batch.md for the columns)."""
    return {
        "scene": job.stem,
        "input": job.scene,
        "status": status,
        "seconds": round(seconds, 3),
        "water_fraction": fields.get("water_fraction"),
        "shoreline_length_m": fields.get("shoreline_length_m"),
        "shoreline_features": fields.get("shoreline_features"),
        **{k: fields.get(k) for k in QUALITY_FIELDS},
        "error": fields.get("error", ""),
        "outputs": fields.get("outputs", {}),
    }


def cpus_for_this_scene(per_host: dict[str, int]) -> int:
    """CPUs one scene may use on this worker's machine: the batch's figure for the machine,
    else (a worker that joined later) this worker's CPUs / its threads."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not in a Dask worker (tests, a plain call)
        return cpus
    host = re.sub(r"^\w+://", "", worker.address).rsplit(":", 1)[0]
    return per_host.get(host) or max(1, cpus // max(1, worker.state.nthreads))


@contextmanager
def cpu_slot(count: int) -> Iterator[list[int] | None]:
    """Hold one of this machine's slots of ``count`` CPUs while a scene runs; yield its CPUs.

    Slots are lock files shared by every worker process of the user on the machine (the
    kernel releases a lock when its holder dies), so scenes that run side by side get
    disjoint CPUs. None (no pinning) when ``count`` covers all CPUs or no slot is free.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        yield None
        return
    if count >= len(cpus):
        yield None
        return
    folder = Path(tempfile.gettempdir()) / f"waterseg-cpu-slots-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    for i in range(len(cpus) // count):
        fh = open(folder / f"slot-{i}", "a")  # noqa: SIM115 - held until the scene ends
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        try:
            yield cpus[i * count : (i + 1) * count]
        finally:
            fh.close()
        return
    yield None


def _segment(
    job: SceneJob, cpus: list[int] | None, threads: int
) -> tuple[int, dict[str, dict], str]:
    """Run segment on the scene -> (exit code, last event of each name, stderr).

    The thread variables are set to the scene's CPUs: Dask's nanny sets them to 1 in its
    workers, which segment would otherwise inherit."""
    argv = [
        sys.executable,
        "-m",
        "backend.batch.child",
        str(os.getpid()),
        ",".join(map(str, cpus)) if cpus else "-",
        "--",
        "segment",
        job.scene,
        "--out-dir",
        job.out_dir,
        "--progress",
        "json",
        "--overwrite",
        *job.segment_args,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(len(cpus) if cpus else threads)
    proc = subprocess.Popen(
        argv,
        cwd=str(REPO_ROOT),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    try:
        out, err = proc.communicate()
    except BaseException:  # the task itself is being torn down: take segment with it
        proc.kill()
        proc.wait()
        raise
    events: dict[str, dict] = {}
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "event" in event:
            events[str(event["event"])] = event
    return proc.returncode, events, err


def shoreline_length_m(outputs: dict[str, str]) -> float | None:
    """Sum of the ``length_m`` of a scene's shoreline lines (None without a shoreline)."""
    path = outputs.get("shoreline_gpkg") or outputs.get("shoreline_shp")
    if not path:
        return None
    from osgeo import ogr

    ogr.UseExceptions()
    ds = ogr.Open(path)
    layer = ds.GetLayer(0)
    if layer.GetLayerDefn().GetFieldIndex("length_m") < 0:  # no CRS: lengths in pixels only
        return None
    total = sum(float(f.GetField("length_m") or 0.0) for f in layer)
    ds = None  # noqa: F841
    return round(total, 3)


def _error_line(events: dict[str, dict], stderr: str) -> str:
    if "error" in events and events["error"].get("message"):
        return str(events["error"]["message"])
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("waterseg: error:"):
            return line[len("waterseg: error:") :].strip()
    return lines[-1] if lines else ""


def run_scene(job: SceneJob) -> dict[str, Any]:
    """The Dask task: skip the scene if its manifest is current, else segment it.

    Returns a report row (status "skipped", "done" or "failed" for bad input); raises
    :class:`SceneFailed` for failures worth a retry.
    """
    t0 = time.monotonic()
    out_dir = Path(job.out_dir)
    manifest_file = manifest_path(out_dir, job.stem)
    if not job.force:
        m = read_manifest(manifest_file)
        if is_complete(m, job.scene, job.options, job.model_sha256, job.option_defaults):
            kept = ("water_fraction", "shoreline_length_m", "shoreline_features", "outputs")
            kept += QUALITY_FIELDS
            return result_row(job, "skipped", time.monotonic() - t0, **{k: m.get(k) for k in kept})
    manifest_file.unlink(missing_ok=True)  # the outputs are about to be replaced
    stat = input_stat(job.scene)
    n_cpus = cpus_for_this_scene(job.cpus_per_scene)
    with cpu_slot(n_cpus) as cpus:
        code, events, stderr = _segment(job, cpus, n_cpus)
    seconds = time.monotonic() - t0
    if code == BAD_INPUT_EXIT:
        return result_row(job, "failed", seconds, error=_error_line(events, stderr))
    if code != 0 or "done" not in events:
        why = (
            f"killed by {signal.Signals(-code).name}"
            if code < 0
            else f"exit code {code}: {_error_line(events, stderr)}"
        )
        raise SceneFailed(f"segment of {job.scene} failed ({why})")
    done = events["done"]
    outputs = {str(k): str(v) for k, v in (done.get("outputs") or {}).items()}
    model = str(events.get("start", {}).get("model", ""))
    fields = {
        "water_fraction": done.get("water_fraction"),
        "shoreline_features": done.get("shoreline_features"),
        "shoreline_length_m": shoreline_length_m(outputs),
        "outputs": outputs,
        **{k: done.get(k) for k in QUALITY_FIELDS},
    }
    manifest = {
        "format": FORMAT,
        "input": job.scene,
        "input_stat": stat,
        "model": model,
        "model_sha256": job.model_sha256
        or (file_sha256(model) if model and os.path.isfile(model) else None),  # ndwi: no file
        "model_explicit": job.model_sha256 is not None,
        "options": job.options,
        **fields,
        "seconds": round(seconds, 3),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_atomic(manifest_file, json.dumps(manifest, indent=1) + "\n")
    return result_row(job, "done", seconds, **fields)
