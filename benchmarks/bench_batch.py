"""``batch`` on Dask against a plain loop: many generated scenes, measured side by side.

Three ways to segment the same N generated scenes (``--method model``, the bundled learned
model), run one after the other in this process's session so the figures compare:

- a plain loop: one ``python -m backend segment`` process per scene, one after the other;
- ``batch --workers 1 --threads-per-worker 2``;
- ``batch --workers 2 --threads-per-worker 1``.

Reported: seconds, scenes per minute, each as a ratio to the loop, and the scheduling
overhead per scene (batch with one worker minus the loop, divided by N).

    python -m benchmarks batch [--scenes 8] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEGMENT_ARGS = ["--method", "model", "--progress", "none", "--device", "cpu"]


def _scenes(folder: Path, n: int, size: int) -> list[Path]:
    from benchmarks.bench_segment import _write_big

    folder.mkdir(parents=True, exist_ok=True)
    first = folder / "scene00.tif"
    _write_big(first, size)
    paths = [first]
    for k in range(1, n):
        paths.append(folder / f"scene{k:02d}.tif")
        shutil.copyfile(first, paths[-1])
    return paths


def _timed(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("WATERSEG_THREADS", "OMP_NUM_THREADS")}
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks batch")
    p.add_argument("--scenes", type=int, default=8, help="generated scenes (8)")
    p.add_argument("--size", type=int, default=2048, help="scene side in pixels (2048)")
    args = p.parse_args(argv or [])
    py = [sys.executable, "-m", "backend"]
    with tempfile.TemporaryDirectory(prefix="waterseg-bench-batch-") as tmp:
        tmp = Path(tmp)
        scenes = _scenes(tmp / "in", args.scenes, args.size)
        rows: list[tuple[str, float]] = []
        loop_s = 0.0
        for scene in scenes:
            loop_s += _timed([*py, "segment", str(scene), "--out-dir", str(tmp / "loop"),
                              *SEGMENT_ARGS])  # fmt: skip
        rows.append(("plain loop of segment", loop_s))
        for workers, threads in ((1, 2), (2, 1)):
            out = tmp / f"batch-{workers}x{threads}"
            wall = _timed([*py, "batch", str(tmp / "in"), "--out-dir", str(out),
                           "--workers", str(workers), "--threads-per-worker", str(threads),
                           "--progress", "none", "--method", "model", "--device", "cpu"])  # fmt: skip
            rows.append((f"batch, {workers} worker(s) x {threads} thread(s)", wall))
    n = args.scenes
    print(
        f"{n} generated {args.size} x {args.size} scenes, --method model, on {os.cpu_count()} CPUs"
    )
    print(f"  {'how':34} {'seconds':>8} {'scenes/min':>11} {'vs loop':>8}")
    for name, wall in rows:
        print(f"  {name:34} {wall:8.1f} {60 * n / wall:11.2f} {loop_s / wall:7.2f}x")
    print(f"  scheduling overhead per scene (batch 1 worker - loop) / {n}: "
          f"{(rows[1][1] - loop_s) / n:+.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
