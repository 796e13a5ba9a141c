"""The real backend's JSON events against the plugin's reading of them: every event `segment`
prints is one the contract declares and the plugin handles, progress maps to one rising
percentage, and the files it reports are where the plugin expects them."""

import json
import subprocess

from plugin.backend_process import BackendRun, backend_command
from plugin.contract import (
    CONTRACT,
    HANDLED_EVENTS,
    describe_event,
    output_path,
    progress_percent,
)

from .conftest import REPO, write_raster


def _events(python, args):
    done = subprocess.run(
        backend_command(python, "segment", *map(str, args), "--progress", "json"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_every_backend_event_is_declared_and_handled(tmp_path, backend_python, tiny_model):
    assert set(CONTRACT["events"]) == HANDLED_EVENTS
    raster = write_raster(tmp_path / "lake.tif", size=(64, 80))
    out = tmp_path / "out"
    done, events = _events(
        backend_python,
        [
            raster,
            "--out-dir",
            out,
            "--model",
            tiny_model,
            "--device",
            "cpu",
            "--probability",
            "--shoreline",
            "both",
            "--polygons",
            "--quicklook",
        ],
    )
    assert done.returncode == 0, done.stderr
    _, failed = _events(backend_python, [tmp_path / "missing.tif", "--out-dir", out])
    events += failed
    kinds = {e["event"] for e in events}
    assert kinds == set(CONTRACT["events"]), kinds  # every declared event is seen here
    for event in events:
        assert event["event"] in HANDLED_EVENTS
        text = describe_event(event)
        assert text and text != event["event"], event  # a real line, not the fallback
    percents = [p for p in map(progress_percent, events) if p is not None]
    assert percents == sorted(percents) and 0 <= percents[0] and percents[-1] == 100.0
    for event in events:
        if event["event"] == "output":
            assert event["path"] == str(output_path(out, "lake", event["kind"]))


def test_backend_run_records_outputs_like_the_plugin_expects(tmp_path, backend_python, tiny_model):
    raster = write_raster(tmp_path / "lake.tif", size=(32, 32))
    argv = backend_command(
        backend_python,
        "segment",
        str(raster),
        "--out-dir",
        str(tmp_path),
        "--model",
        str(tiny_model),
        "--progress",
        "json",
    )
    result = BackendRun(argv).run()
    assert result.ok, result.stderr_tail
    assert result.outputs["mask"] == str(output_path(tmp_path, "lake", "mask"))


def test_the_dock_line_for_inference_shows_rate_and_time_left():
    event = {
        "event": "progress", "stage": "infer", "tiles_done": 40, "tiles_total": 100,
        "device": "cpu", "tiles_per_s": 0.5, "eta_s": 120.0,
    }  # fmt: skip
    assert describe_event(event) == "40/100 tiles on cpu, 0.5 tiles/s, 2 min 0 s left"
    event.update(tiles_done=0, tiles_per_s=None, eta_s=None)
    assert describe_event(event) == "0/100 tiles on cpu"
