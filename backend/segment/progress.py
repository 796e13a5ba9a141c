"""Progress reporters for the segment command: JSON lines (machine), a text bar, or nothing.

JSON mode writes only JSON objects to stdout, one per line, flushed (the plugin parses them);
human-readable log lines go to stderr in every mode.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Reporter:
    """Base reporter: logs to stderr, ignores events. Subclasses render events."""

    min_interval_s = 0.25

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._last_progress = 0.0

    def log(self, message: str) -> None:
        print(f"waterseg: {message}", file=self.err, flush=True)

    def event(self, name: str, **fields: Any) -> None:
        pass

    def progress(self, force: bool = False, **fields: Any) -> None:
        """Throttled ``progress`` event (at most every ``min_interval_s`` unless ``force``)."""
        now = time.monotonic()
        if force or now - self._last_progress >= self.min_interval_s:
            self._last_progress = now
            self.event("progress", **fields)


class JsonReporter(Reporter):
    def event(self, name: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": name, **fields}, default=str) + "\n")
        self.out.flush()


class TextReporter(Reporter):
    def event(self, name: str, **fields: Any) -> None:
        if name == "start":
            self.log(
                f"[{fields['index'] + 1}/{fields['count']}] {fields['input']}: "
                f"{fields['width']} x {fields['height']} px, {fields['tiles']} tiles on "
                f"{fields['device']}"
            )
        elif name == "progress":
            frac = float(fields.get("fraction", 0.0))
            bar = "#" * int(frac * 30)
            self.err.write(
                f"\r  {fields.get('stage', ''):<9} [{bar:<30}] {frac * 100:5.1f}% "
                f"{fields.get('tiles_done', 0)}/{fields.get('tiles_total', 0)} tiles "
                f"{fields.get('elapsed_s', 0):.1f}s"
            )
            self.err.flush()
        elif name == "output":
            self.err.write("\n")
            self.log(f"wrote {fields['path']}")
        elif name == "done":
            self.log(f"done in {fields['elapsed_s']:.1f}s ({fields['shoreline_features']} lines)")
        elif name == "finished":
            self.log(f"finished {fields['count']} input(s) in {fields['elapsed_s']:.1f}s")


class NullReporter(Reporter):
    def log(self, message: str) -> None:
        pass


def make_reporter(kind: str) -> Reporter:
    """ "json" | "text" | "none" -> a reporter."""
    return {"json": JsonReporter, "text": TextReporter, "none": NullReporter}[kind]()
