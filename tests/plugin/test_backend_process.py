"""Interpreter discovery and the JSON-lines subprocess runner, with real subprocesses."""

import os
import sys
import textwrap
import time
from pathlib import Path

from plugin.backend_process import BackendRun, find_interpreter, parse_json_object, venv_python

REPO = Path(__file__).resolve().parents[2]
NO_TORCH_PYTHON = "/usr/bin/python3"  # Debian's Python: no torch (torch lives in .venv)


def _fake_root(tmp_path: Path, with_venv: bool) -> Path:
    root = tmp_path / "pluginroot"
    root.mkdir()
    if with_venv:
        venv = venv_python(root)
        venv.parent.mkdir(parents=True)
        # a wrapper, not a symlink: a venv's python only finds its packages beside pyvenv.cfg
        venv.write_text(f'#!/bin/sh\nexec "{REPO / ".venv" / "bin" / "python"}" "$@"\n')
        venv.chmod(0o755)
    return root


def test_settings_beat_environment_beat_venv(tmp_path):
    root = _fake_root(tmp_path, with_venv=True)
    real = str(REPO / ".venv" / "bin" / "python")
    env = {"PATH": "/nonexistent", "WATERSEG_PYTHON": real}
    found = find_interpreter(real, env=env, root=root)
    assert (found.path, found.source, found.ok) == (real, "WaterSeg settings", True)
    found = find_interpreter("", env=env, root=root)
    assert found.source == "environment variable WATERSEG_PYTHON" and found.ok
    found = find_interpreter("", env={"PATH": "/nonexistent"}, root=root)
    assert found.path == str(venv_python(root)) and found.source == "plugin virtual environment"


def test_missing_backend_says_how_to_fix(tmp_path):
    root = _fake_root(tmp_path, with_venv=False)
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    found = find_interpreter("", env={"PATH": str(empty_path)}, root=root)
    if Path(sys.executable).name.startswith("python"):
        # this test process's own python (the venv) has torch, so PATH discovery finds it
        assert found.ok and found.source == "PATH"
        return
    assert not found.ok and "make setup" in found.problem


def test_explicit_choice_that_is_wrong_is_reported(tmp_path):
    found = find_interpreter(str(tmp_path / "nope" / "python"), env={}, root=tmp_path)
    assert not found.ok and "does not exist" in found.problem and "settings" in found.problem
    if os.path.exists(NO_TORCH_PYTHON):
        found = find_interpreter(NO_TORCH_PYTHON, env={}, root=tmp_path)
        assert not found.ok and "cannot import torch" in found.problem
        assert "pip install -r" in found.problem and "make setup" in found.problem


FAKE_BACKEND = textwrap.dedent("""
    import json, signal, sys, time
    def stop(*_):
        print("waterseg: cancelled", file=sys.stderr, flush=True)
        sys.exit(130)
    signal.signal(signal.SIGTERM, stop)
    print("not json, a stray line", flush=True)
    print(json.dumps({"event": "start", "device": "cpu", "tiles": 4}), flush=True)
    for k in range(4):
        print(json.dumps({"event": "progress", "stage": "infer", "fraction": (k + 1) / 4,
                          "device": "cpu"}), flush=True)
        time.sleep(float(sys.argv[1]))
    if sys.argv[2] == "fail":
        print(json.dumps({"event": "error", "message": "input.tif has 1 band; need 4", "exit_code": 2}), flush=True)
        print("waterseg: error: input.tif has 1 band; need 4", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({"event": "output", "kind": "mask", "path": "/o/x_water.tif"}), flush=True)
    print(json.dumps({"event": "done", "outputs": {"mask": "/o/x_water.tif",
                      "shoreline_gpkg": "/o/x_shoreline.gpkg"}}), flush=True)
""")


def _fake(tmp_path, delay, mode):
    script = tmp_path / "fake_backend.py"
    script.write_text(FAKE_BACKEND)
    return BackendRun([sys.executable, str(script), str(delay), mode], cwd=tmp_path)


def test_run_collects_events_and_outputs(tmp_path):
    events, texts = [], []
    result = _fake(tmp_path, 0.0, "ok").run(on_event=events.append, on_text=texts.append)
    assert result.ok and result.exit_code == 0
    assert [e["event"] for e in events] == ["start"] + ["progress"] * 4 + ["output", "done"]
    assert result.outputs == {"mask": "/o/x_water.tif", "shoreline_gpkg": "/o/x_shoreline.gpkg"}
    assert texts == ["not json, a stray line"] and result.device == "cpu"


def test_run_reports_the_backend_error_line(tmp_path):
    result = _fake(tmp_path, 0.0, "fail").run()
    assert not result.ok and result.exit_code == 2
    assert result.error == "input.tif has 1 band; need 4"
    assert "waterseg: error" in result.stderr_tail


def test_cancel_terminates_promptly(tmp_path):
    run = _fake(tmp_path, 5.0, "ok")  # would take 20 s
    seen = []
    start = time.monotonic()
    result = run.run(on_event=seen.append, is_canceled=lambda: len(seen) >= 2, grace_s=3.0)
    assert time.monotonic() - start < 4.0
    assert result.cancelled and result.exit_code == 130 and not result.ok
    assert run.process.poll() == 130


def test_cancel_kills_a_backend_that_ignores_sigterm(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time, json\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(json.dumps({'event': 'start'}), flush=True)\ntime.sleep(60)\n"
    )
    run = BackendRun([sys.executable, str(script)], cwd=tmp_path)
    seen = []
    start = time.monotonic()
    result = run.run(on_event=seen.append, is_canceled=lambda: bool(seen), grace_s=0.5)
    assert time.monotonic() - start < 5.0
    assert result.cancelled and result.exit_code == -9


def test_unstartable_interpreter_is_an_error(tmp_path):
    result = BackendRun([str(tmp_path / "missing-python"), "-m", "backend"], cwd=tmp_path).run()
    assert not result.ok and "cannot start the backend" in result.error


def test_parse_json_object_takes_the_last_object():
    assert parse_json_object('log line\n{"a": 1}\n') == {"a": 1}
    assert parse_json_object('{"torch": "2.13.0", "cuda_available": false}') == {
        "torch": "2.13.0",
        "cuda_available": False,
    }


def test_backend_leaves_a_core_for_qgis_unless_the_user_chose(monkeypatch, repo_root):
    import json
    import subprocess

    from plugin.backend_process import backend_env

    monkeypatch.delenv("WATERSEG_RESERVE_CORES", raising=False)
    for name in ("WATERSEG_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    env = backend_env()
    assert env["WATERSEG_RESERVE_CORES"] == "1"
    monkeypatch.setenv("WATERSEG_RESERVE_CORES", "0")
    assert backend_env()["WATERSEG_RESERVE_CORES"] == "0"
    # the real backend reads it (on this 2-core machine nothing is reserved: the rule is > 2)
    out = subprocess.run(
        [sys.executable, "-m", "backend", "info", "--json"],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    cores = len(os.sched_getaffinity(0))
    if cores > 2:
        assert "left free" in info["thread_policy"]
    else:
        assert info["threads"] >= 1 and "left free" not in info["thread_policy"]
