"""Progress reporters: JSON lines for the plugin, readable text on a terminal or in a log."""

import io
import json

from backend.segment.progress import JsonReporter, TextReporter


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(reporter) -> None:
    reporter.event(
        "start", index=0, count=1, input="a.tif", width=10, height=10, tiles=20, device="cpu"
    )
    for k in range(21):
        reporter.event(
            "progress",
            stage="infer",
            fraction=k / 20,
            tiles_done=k,
            tiles_total=20,
            elapsed_s=0.1 * k,
        )
    reporter.event("output", kind="mask", path="a_water.tif", input="a.tif")
    reporter.event("done", input="a.tif", outputs={}, elapsed_s=2.0, shoreline_features=3)


def test_text_on_a_pipe_is_one_line_per_tenth_without_carriage_returns():
    err = io.StringIO()
    _feed(TextReporter(out=io.StringIO(), err=err))
    text = err.getvalue()
    assert "\r" not in text
    bars = [line for line in text.splitlines() if line.startswith("  infer")]
    assert len(bars) == 11  # 0 %, 10 %, ..., 100 %: 21 events collapse to 11 lines
    assert text.splitlines()[-2] == "waterseg: wrote a_water.tif"


def test_text_on_a_terminal_redraws_and_ends_the_bar_before_log_lines():
    err = _Tty()
    _feed(TextReporter(out=io.StringIO(), err=err))
    text = err.getvalue()
    assert text.count("\r") == 21
    assert "s\nwaterseg: wrote a_water.tif\n" in text  # the bar line is closed first


def test_json_is_one_object_per_line_on_stdout_only():
    out, err = io.StringIO(), io.StringIO()
    _feed(JsonReporter(out=out, err=err))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events[:2]] == ["start", "progress"]
    assert events[-1] == {
        "event": "done",
        "input": "a.tif",
        "outputs": {},
        "elapsed_s": 2.0,
        "shoreline_features": 3,
    }
    assert err.getvalue() == ""
