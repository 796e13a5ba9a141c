"""``segment`` on a busy machine: quiet vs beside N busy processes, under two wait policies.

Each run is the real command line (``python -m backend segment --method model``, the bundled learned model, a
generated 6-band Sentinel-2-like scene). Settings are interleaved (quiet, busy, quiet, busy,
...) so drift of the machine hits all of them alike. The busy processes are plain Python
loops, one core each, that stop by themselves after ``--busy-limit`` seconds at the latest
and are killed as soon as the run ends.

Fair share: with T segment threads and N busy single-thread processes on C cores, each
runnable thread gets C / (N + T) of a core, so a fair slowdown is (N + T) / T for T = C.
The goal is a busy/quiet ratio of at most 1.5x that.

    python -m benchmarks contention [--size 1536] [--busy 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_BUSY = "import time\nend = time.monotonic() + {limit}\nwhile time.monotonic() < end:\n    pass\n"
POLICIES = {
    "passive (default)": {},
    "active spin (before)": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def _scene(folder: Path, size: int) -> Path:
    from backend.datasets.synthetic import generate_scene, write_scene

    scene = generate_scene(size=size, seed=1)
    image = folder / "busy_scene.tif"
    write_scene(scene, image, folder / "busy_truth.tif")
    return image


def _segment_s(image: Path, out: Path, env_extra: dict[str, str], busy: int, limit: float) -> float:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "WATERSEG_THREADS")
    }
    env.update(env_extra)
    hogs = [
        subprocess.Popen([sys.executable, "-c", _BUSY.format(limit=limit)]) for _ in range(busy)
    ]
    try:
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "backend", "segment", str(image), "--out-dir", str(out),
             "--method", "model", "--overwrite", "--progress", "none", "--shoreline", "none",
             "--device", "cpu"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=limit,
        )  # fmt: skip
        wall = time.perf_counter() - t0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks contention")
    p.add_argument("--size", type=int, default=1536, help="scene side in pixels (1536)")
    p.add_argument("--busy", type=int, default=2, help="busy processes beside segment (2)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per setting (2)")
    p.add_argument("--busy-limit", type=float, default=300.0, help="max seconds of one run")
    args = p.parse_args(argv or [])

    from backend.core.threads import choose_policy

    threads = choose_policy([], {}).threads
    fair = (args.busy + threads) / threads
    print(
        f"segment, {args.size} x {args.size} px, 6 bands, --method model, {threads} "
        f"thread(s); busy = beside {args.busy} busy processes; fair-share slowdown {fair:.2f}x"
    )
    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="waterseg-busy-") as tmp:
        tmp = Path(tmp)
        image = _scene(tmp, args.size)
        for _ in range(args.repeats):
            for name, env in POLICIES.items():
                for busy in (False, True):
                    wall = _segment_s(
                        image, tmp / "out", env, args.busy if busy else 0, args.busy_limit
                    )
                    times.setdefault((name, busy), []).append(wall)
    print(f"  {'wait policy':22} {'quiet s':>8} {'busy s':>8} {'slowdown':>9} {'/ fair':>7}")
    for name in POLICIES:
        quiet = statistics.median(times[(name, False)])
        busy = statistics.median(times[(name, True)])
        print(
            f"  {name:22} {quiet:8.1f} {busy:8.1f} {busy / quiet:8.2f}x {busy / quiet / fair:6.2f}x"
        )
    print("  (medians of interleaved runs; goal: slowdown / fair <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
