"""Run every benchmark section in one process so their figures are measured side by side.

``python -m benchmarks [SECTION ...]``: sections are ``segment``, ``train``,
``contention`` and ``batch`` (default: all).
"""

from __future__ import annotations

import importlib
import sys
import time

SECTIONS = {
    "segment": "benchmarks.bench_segment",
    "train": "benchmarks.bench_train",
    "contention": "benchmarks.bench_contention",
    "batch": "benchmarks.bench_batch",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(SECTIONS[name]).main()
        print(f"({name}: {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
