"""Launcher of one scene's ``segment`` process: ``python -m backend.batch.child PARENT_PID
CPUS -- segment ARGS...``.

It ties the process's life to the Dask worker that started it, then runs the backend's
command line in-process, exactly as ``python -m backend`` would. On Linux
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill it when the worker dies (a worker
killed mid-scene must not leave a segment run behind); a parent that died before the call is
caught by comparing ``getppid()``. Doing this here rather than in ``preexec_fn`` keeps Python
code out of the fork of a multi-threaded worker. ``CPUS`` ("0,1" or "-") pins the process to
those CPUs before torch is imported, so scenes running side by side on one machine do not
fight over the same cores.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGKILL when the parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(137)


def main(argv: list[str]) -> int:
    parent, cpus, sep, *rest = argv
    if sep != "--":
        raise SystemExit("usage: python -m backend.batch.child PARENT_PID CPUS -- COMMAND ARGS")
    die_with_parent(int(parent))
    if cpus != "-" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    import runpy

    sys.argv = [sys.argv[0], *rest]
    runpy.run_module("backend", run_name="__main__", alter_sys=True)  # exits like python -m backend
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
