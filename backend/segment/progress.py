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
    """A bar redrawn in place on a terminal; on a pipe or log file, one line per 10 % and at
    least one every ``log_interval_s`` seconds (a 10 % step of a full tile takes minutes)."""

    log_interval_s = 10.0

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None):
        super().__init__(out, err)
        self._tty = bool(getattr(self.err, "isatty", lambda: False)())
        self._bar_open = False
        self._last_step: tuple[str, int] | None = None
        self._last_line = 0.0

    def _close_bar(self) -> None:
        if self._bar_open:
            self.err.write("\n")
            self._bar_open = False

    def log(self, message: str) -> None:
        self._close_bar()
        super().log(message)

    def event(self, name: str, **fields: Any) -> None:
        if name == "start":
            self._last_step = None
            self.log(
                f"[{fields['index'] + 1}/{fields['count']}] {fields['input']}: "
                f"{fields['width']} x {fields['height']} px, {fields['tiles']} tiles on "
                f"{fields['device']}"
            )
        elif name == "progress":
            frac = float(fields.get("fraction", 0.0))
            stage = str(fields.get("stage", ""))
            line = (
                f"  {stage:<9} [{'#' * int(frac * 30):<30}] {frac * 100:5.1f}% "
                f"{fields.get('tiles_done', 0)}/{fields.get('tiles_total', 0)} tiles "
                f"{fields.get('elapsed_s', 0):.1f}s"
            )
            if stage == "infer" and fields.get("tiles_per_s") is not None:
                line += f", {fields['tiles_per_s']:.1f} tiles/s, ETA {fields['eta_s']:.0f}s"
            if self._tty:
                self.err.write("\r" + line)
                self._bar_open = True
            else:  # a log file: a line per 10 %, and at least every 10 s while it runs
                step = (stage, int(frac * 10))
                now = time.monotonic()
                if step == self._last_step and now - self._last_line < self.log_interval_s:
                    return
                self._last_step, self._last_line = step, now
                self.err.write(line + "\n")
            self.err.flush()
        elif name == "output":
            self.log(f"wrote {fields['path']}")
        elif name == "done":
            water = fields.get("water_fraction")
            water_text = f", {water:.1%} water" if water is not None else ""
            self.log(
                f"done in {fields['elapsed_s']:.1f}s ({fields['shoreline_features']} lines"
                f"{water_text})"
            )
        elif name == "finished":
            self.log(f"finished {fields['count']} input(s) in {fields['elapsed_s']:.1f}s")


class NullReporter(Reporter):
    def log(self, message: str) -> None:
        pass


def make_reporter(kind: str) -> Reporter:
    """ "json" | "text" | "none" -> a reporter."""
    return {"json": JsonReporter, "text": TextReporter, "none": NullReporter}[kind]()
