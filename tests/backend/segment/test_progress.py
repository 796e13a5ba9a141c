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


def test_text_shows_rate_and_eta_and_a_line_every_interval_in_a_log(monkeypatch):
    clock = iter(range(0, 1000, 3))  # 2 clock reads per event (throttle, log): 6 s apart
    monkeypatch.setattr("backend.segment.progress.time.monotonic", lambda: float(next(clock)))
    err = io.StringIO()
    rep = TextReporter(out=io.StringIO(), err=err)
    rep.min_interval_s = 0.0
    for done in (1, 2, 3):  # all within the first 10 % of 100 tiles
        rep.progress(
            stage="infer", fraction=done / 100, tiles_done=done, tiles_total=100,
            elapsed_s=6.0 * done, tiles_per_s=round(1 / 6, 2), eta_s=6.0 * (100 - done),
        )  # fmt: skip
    lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("  infer")]
    assert len(lines) == 2  # events 1 and 3: event 2 is 6 s after a line, event 3 is 12 s
    assert lines[0].endswith(", 0.2 tiles/s, ETA 594s")


def test_rate_and_eta_by_hand():
    from backend.segment.pipeline import tile_rate_and_eta

    assert tile_rate_and_eta(0, 10, 5.0) == (None, None)
    assert tile_rate_and_eta(4, 10, 2.0) == (2.0, 3.0)  # 2 tiles/s, 6 tiles left
    assert tile_rate_and_eta(10, 10, 4.0) == (2.5, 0.0)
