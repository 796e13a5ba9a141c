"""Run every benchmark section in one process so their figures are measured side by side.

``python -m benchmarks [SECTION ...]``: sections are ``segment``, ``train``,
``contention``, ``batch`` and ``change`` (default: all).
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from pathlib import Path

SECTIONS = {
    "segment": "benchmarks.bench_segment",
    "train": "benchmarks.bench_train",
    "contention": "benchmarks.bench_contention",
    "batch": "benchmarks.bench_batch",
    "change": "benchmarks.bench_change",
}


# The instruction-set flags that decide how fast torch's CPU kernels can be.
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def machine_line() -> str:
    """The CPU model, its core count and vector flags, as one line printed above every run,
    so a figure is never quoted without the machine that produced it."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in VECTOR_FLAGS if f in flags] or ["none of " + "/".join(VECTOR_FLAGS)]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"machine: {model}, {cpus} CPUs usable, flags {' '.join(have)}"


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    print(machine_line(), f"({time.strftime('%Y-%m-%d %H:%M %Z')})", flush=True)
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(SECTIONS[name]).main()
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
