"""Speed and memory benchmarks: ``make bench`` (``python -m benchmarks``)."""
