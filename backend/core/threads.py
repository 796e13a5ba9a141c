"""CPU thread policy: how many threads the backend uses, and how they wait.

An analyst's machine is never quiet: QGIS renders, a browser runs, a second job starts. OpenMP
threads that spin-wait for a core they do not get make inference several times slower under
contention than a fair share of the CPU would (see issue "Fast on a busy machine too"). So,
before torch is imported:

- idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), unless the user
  set the variable;
- the thread count is chosen once, in this order: ``--threads N`` on the command line, the
  ``WATERSEG_THREADS`` variable (the plugin sets it), ``OMP_NUM_THREADS`` when the user set it,
  else one thread per physical core among the CPUs this process may run on (CPU affinity),
  capped by the cgroup CPU quota (containers, systemd slices), less ``WATERSEG_RESERVE_CORES``
  on machines with more than 2 cores (the plugin sets 1, so QGIS's UI keeps a core).

Stdlib only: it runs before torch and numpy are imported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "WATERSEG_THREADS"
# Cores to leave free when the count comes from the machine (the plugin sets 1: QGIS's UI keeps
# a core). Only on machines with more than 2 cores.
RESERVE_ENV = "WATERSEG_RESERVE_CORES"
# Variables that size the OpenMP / BLAS pools torch and numpy use.
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_applied: ThreadPolicy | None = None


@dataclass(frozen=True)
class ThreadPolicy:
    """The chosen thread count, where it came from, and the OpenMP wait policy."""

    threads: int
    source: str  # "--threads" | WATERSEG_THREADS | OMP_NUM_THREADS | "cores" | "cgroup quota"
    wait_policy: str  # "PASSIVE" | what the user set
    cpus: int  # CPUs this process may run on (affinity)
    quota: float | None  # cgroup CPU quota in CPUs, None when unlimited

    def describe(self) -> str:
        quota = f", cgroup quota {self.quota:g} CPUs" if self.quota is not None else ""
        return (
            f"{self.threads} thread(s) from {self.source} ({self.cpus} CPU(s) available{quota}), "
            f"OpenMP wait policy {self.wait_policy}"
        )


def affinity_cpus() -> list[int]:
    """The CPUs this process may run on (all CPUs where affinity is unknown)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: Sequence[int]) -> int:
    """Physical cores among ``cpus`` (SMT siblings counted once), from Linux sysfs topology."""
    cores = set()
    for cpu in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(path.read_text(encoding="ascii").strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited.

    Reads cgroup v2 ``cpu.max`` ("max 100000" or "150000 100000"), else cgroup v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def _positive_int(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


def threads_from_argv(argv: Sequence[str]) -> int | None:
    """The value of ``--threads N`` / ``--threads=N`` in a command line, if valid."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return _positive_int(argv[i + 1])
        if arg.startswith("--threads="):
            return _positive_int(arg.split("=", 1)[1])
    return None


def choose_policy(
    argv: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
    quota: float | None | str = "read",
) -> ThreadPolicy:
    """Decide the thread count and wait policy (rules in the module docstring)."""
    env = os.environ if env is None else env
    cpus = affinity_cpus() if cpus is None else list(cpus)
    quota = cgroup_cpu_quota() if quota == "read" else quota
    wait = env.get("OMP_WAIT_POLICY", "PASSIVE").upper() or "PASSIVE"
    limit = len(cpus) if quota is None else max(1, min(len(cpus), math.ceil(quota)))
    for source, value in (
        ("--threads", threads_from_argv(argv)),
        (THREADS_ENV, _positive_int(env.get(THREADS_ENV))),
        ("OMP_NUM_THREADS", _positive_int(env.get("OMP_NUM_THREADS"))),
    ):
        if value is not None:
            return ThreadPolicy(value, source, wait, len(cpus), quota)
    cores = physical_cores(cpus)
    source = "cores" if cores <= limit else "cgroup quota"
    threads = min(cores, limit)
    reserve = _positive_int(env.get(RESERVE_ENV)) or 0
    if reserve and threads > 2:
        threads = max(2, threads - reserve)
        source += f", {reserve} left free"
    return ThreadPolicy(threads, source, wait, len(cpus), quota)


def apply_policy(policy: ThreadPolicy, env: MutableMapping[str, str] | None = None) -> None:
    """Write the policy into the environment, before torch or numpy is imported.

    The pool variables are set to the chosen count; a user's own OMP_NUM_THREADS only stays
    when it is what chose the count. ``WATERSEG_THREADS`` records the decision for
    :func:`configured_threads` and for child processes.
    """
    global _applied
    env = os.environ if env is None else env
    _applied = policy
    env["OMP_WAIT_POLICY"] = policy.wait_policy
    for name in POOL_VARIABLES:
        env[name] = str(policy.threads)
    env[THREADS_ENV] = str(policy.threads)


def current_policy() -> ThreadPolicy:
    """The policy this process applied (``python -m backend``), else the one it would choose."""
    return _applied or choose_policy()


def configured_threads(env: Mapping[str, str] | None = None) -> int | None:
    """The thread count :func:`apply_policy` chose in this process, if it ran."""
    env = os.environ if env is None else env
    return _positive_int(env.get(THREADS_ENV))
