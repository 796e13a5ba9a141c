"""The process boundary: find the backend's Python and run ``python -m backend ...`` in it.

QGIS's own Python rarely has PyTorch, so the plugin never imports torch or ``backend``; it
starts the backend's command line in a separate interpreter and reads its JSON lines. This
module is plain Python (no Qt), shared by the dock's QgsTask and the Processing algorithm.

Interpreter discovery order (first that exists wins):
  1. QgsSettings ``waterseg/python`` (set in the dock's Backend section),
  2. environment variable ``WATERSEG_PYTHON``,
  3. ``<plugin root>/.venv/bin/python`` (made by ``make setup``),
  4. the per-user environment made by the dock's *Install backend* (plugin/backend_home.py:
     ``~/.local/share/waterseg/backend-<hash>`` or the platform's equivalent, shared by all
     profiles), that of the plugin's dependency set first, then an out-of-date one,
  5. a ``python3``/``python`` on PATH that can import torch.
Inside QGIS desktop ``sys.executable`` may be the qgis binary itself, so it is only used when
its name says it is a Python.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backend_home import HomeStatus, home_status

PLUGIN_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "WATERSEG_PYTHON"
SETTINGS_KEY = "waterseg/python"
STDERR_TAIL_LINES = 60

_module_check_cache: dict[tuple[str, float], bool] = {}


def venv_python(root: Path = PLUGIN_ROOT) -> Path:
    """The interpreter of the plugin's own virtual environment (made by ``make setup``)."""
    if os.name == "nt":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def setup_hint(root: Path = PLUGIN_ROOT) -> str:
    """The exact command(s) that install the backend, for messages."""
    return (
        "click Install backend in the WaterSeg dock (Backend section), or run 'make setup' in "
        f"{root} (creates {venv_python(root)}), or set the backend Python in the dock "
        f"(Backend > Python) or in the {ENV_VAR} environment variable"
    )


@dataclass
class Interpreter:
    """The result of interpreter discovery.

    ``path`` is None when nothing usable was found; ``problem`` then says what is wrong and
    how to fix it (one line). ``source`` names where the path came from.
    """

    path: str | None
    source: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.path is not None and self.problem is None


def can_import_torch(python: str, timeout: float = 30.0) -> bool:
    """True when ``python`` can find the torch package (a fast spec lookup, no import).

    Cached per interpreter path and modification time.
    """
    try:
        key = (str(python), os.path.getmtime(python))
    except OSError:
        return False
    if key in _module_check_cache:
        return _module_check_cache[key]
    code = "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torch') else 3)"
    try:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            timeout=timeout,
            env=backend_env(),
            cwd=str(PLUGIN_ROOT),
        )
        ok = done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    _module_check_cache[key] = ok
    return ok


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_interpreter(
    settings_value: str | None = None,
    env: dict[str, str] | None = None,
    root: Path = PLUGIN_ROOT,
    check_torch: bool = True,
) -> Interpreter:
    """Find the backend's Python (see the module docstring for the order).

    An explicit choice (settings or environment) that does not exist is reported as a problem
    instead of silently falling back, so a typo is noticed.
    """
    env = os.environ if env is None else env
    explicit = [
        ("WaterSeg settings", (settings_value or "").strip()),
        (f"environment variable {ENV_VAR}", env.get(ENV_VAR, "").strip()),
    ]
    for source, value in explicit:
        if not value:
            continue
        if not _is_executable(value):
            return Interpreter(
                None,
                source,
                f"the backend Python set in {source} does not exist "
                f"or is not executable: {value}; choose an existing interpreter "
                "or clear the setting",
            )
        if check_torch and not can_import_torch(value):
            return Interpreter(
                value,
                source,
                f"{value} (from {source}) cannot import torch; "
                f"install the backend into it ('{value} -m pip install -r "
                f"{root / 'requirements.txt'}') or {setup_hint(root)}",
            )
        return Interpreter(value, source)

    venv = venv_python(root)
    if _is_executable(str(venv)):
        if not check_torch or can_import_torch(str(venv)):
            return Interpreter(str(venv), "plugin virtual environment")

    status = per_user_status(env, root)
    if status is not None:
        found = [(b, False) for b in [status.current] if b] + [(b, True) for b in status.outdated]
        for backend, outdated in found:
            if check_torch and not can_import_torch(str(backend.python)):
                continue
            note = " (out of date: Install backend updates it)" if outdated else ""
            return Interpreter(str(backend.python), f"per-user environment {backend.path}{note}")

    candidates: list[str] = []
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(sys.executable)
    for name in ("python3", "python"):
        found = shutil.which(name, path=env.get("PATH"))
        if found and found not in candidates:
            candidates.append(found)
    for cand in candidates:
        if not check_torch or can_import_torch(cand):
            return Interpreter(cand, "PATH")
    return Interpreter(
        None,
        "none",
        f"no Python with PyTorch found for the WaterSeg backend; " f"{setup_hint(root)}",
    )


def per_user_status(
    env: dict[str, str] | None = None, root: Path = PLUGIN_ROOT
) -> HomeStatus | None:
    """The per-user folder's environments (backend_home.home_status), or None when the
    plugin's dependency files cannot be read."""
    try:
        return home_status(env, root)
    except OSError:
        return None


def backend_env(root: Path = PLUGIN_ROOT) -> dict[str, str]:
    """Environment for the backend subprocess: PYTHONPATH = the plugin root, unbuffered, one
    core left for QGIS's UI (``WATERSEG_RESERVE_CORES``, backend/core/threads.py).

    QGIS's own PYTHONPATH/PYTHONHOME are dropped: they point at QGIS's Python, which may be a
    different version than the backend's.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("QT_QPA_PLATFORM_PLUGIN_PATH", None)
    # the backend's thread policy leaves one core for QGIS's UI on machines with more than 2
    env.setdefault("WATERSEG_RESERVE_CORES", "1")
    return env


def backend_command(python: str, *args: str) -> list[str]:
    """argv for ``python -m backend ARGS``."""
    return [python, "-m", "backend", *args]


def parse_json_object(text: str) -> dict:
    """The last JSON object in ``text`` (a command may print a log line before it)."""
    text = text.strip()
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    raise RuntimeError(f"backend printed no JSON object: {text[-200:]!r}")


# segment's log line that explains its method at length (backend/segment/cli.py); a test runs
# the backend to check that the plugin's logs leave it out (tests/plugin/test_method_log.py)
SEGMENT_METHOD_LOG = "waterseg: method: "


def error_line(stderr: str) -> str:
    """The backend's one-line ``waterseg: error: ...`` message, else the last stderr line."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("waterseg: error:"):
            return line[len("waterseg: error:") :].strip()
    return lines[-1] if lines else ""


@dataclass
class RunResult:
    """What one backend run produced.

    ``outputs`` maps kinds ("mask", "shoreline_gpkg", ...) to paths from ``output``/``done``
    events; ``error`` is the one-line message of a failed run; ``stderr_tail`` the last lines
    of stderr (for the log).
    """

    exit_code: int | None = None
    cancelled: bool = False
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    stderr_tail: str = ""
    elapsed_s: float = 0.0
    device: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.cancelled and self.error is None

    @property
    def summary(self) -> str:
        """What the run found, from its ``done`` event, as one clause for the status line and
        the log: "8.6 % water; 11.2 % cloud, 15.8 % cloud shadow masked" ("" without one)."""
        done = next((e for e in reversed(self.events) if e.get("event") == "done"), None)
        if not done or done.get("water_fraction") is None:
            return ""
        text = f"{100 * float(done['water_fraction']):.1f} % water"
        masked = [
            f"{100 * float(done[key]):.1f} % {what}"
            for key, what in (("cloud_fraction", "cloud"), ("shadow_fraction", "cloud shadow"))
            if done.get(key)
        ]
        return text + (f"; {', '.join(masked)} masked" if masked else "")

    @property
    def log_tail(self) -> str:
        """``stderr_tail`` as a log shows it: without segment's long explanation of its method,
        which the log names once, short, before the run (:meth:`Method.log_line`)."""
        return "\n".join(
            ln for ln in self.stderr_tail.splitlines() if not ln.startswith(SEGMENT_METHOD_LOG)
        )


class BackendRun:
    """One ``python -m backend ...`` subprocess whose stdout carries JSON lines.

    ``run()`` blocks (call it from a worker thread), calls ``on_event(dict)`` for each JSON
    line, polls ``is_canceled()`` every ``poll_s`` and stops the process when it turns true:
    SIGTERM first (the backend then removes partial outputs and exits 130), SIGKILL after
    ``grace_s``.
    """

    def __init__(self, argv: list[str], cwd: Path = PLUGIN_ROOT, env: dict[str, str] | None = None):
        self.argv = argv
        self.cwd = cwd
        self.env = backend_env() if env is None else env
        self.process: subprocess.Popen | None = None

    def run(
        self,
        on_event: Callable[[dict], None] = lambda e: None,
        is_canceled: Callable[[], bool] = lambda: False,
        poll_s: float = 0.1,
        grace_s: float = 5.0,
        on_text: Callable[[str], None] = lambda s: None,
    ) -> RunResult:
        result = RunResult()
        start = time.monotonic()
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=str(self.cwd),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
            )
        except OSError as exc:
            result.error = f"cannot start the backend ({self.argv[0]}): {exc}"
            return result
        proc = self.process
        lines: queue.Queue[str | None] = queue.Queue()
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

        def pump_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        def pump_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                tail.append(line.rstrip("\n"))

        readers = [threading.Thread(target=f, daemon=True) for f in (pump_stdout, pump_stderr)]
        for t in readers:
            t.start()

        terminated_at: float | None = None
        while True:
            if terminated_at is None and is_canceled():
                result.cancelled = True
                terminated_at = time.monotonic()
                proc.terminate()
            if terminated_at is not None and time.monotonic() - terminated_at > grace_s:
                proc.kill()
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                on_text(line)
                continue
            if not isinstance(event, dict):
                continue
            self._record(event, result)
            on_event(event)

        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in readers:
            t.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        result.exit_code = proc.returncode
        result.stderr_tail = "\n".join(tail)
        result.elapsed_s = time.monotonic() - start
        if result.exit_code == 130:
            result.cancelled = True
        if not result.cancelled and result.exit_code != 0 and result.error is None:
            result.error = error_line(result.stderr_tail) or (
                f"the backend stopped with exit code {result.exit_code}"
            )
        return result

    @staticmethod
    def _record(event: dict, result: RunResult) -> None:
        result.events.append(event)
        kind = event.get("event")
        if kind == "output" and event.get("kind") and event.get("path"):
            result.outputs[str(event["kind"])] = str(event["path"])
        elif kind == "done" and isinstance(event.get("outputs"), dict):
            result.outputs.update({str(k): str(v) for k, v in event["outputs"].items() if v})
        elif kind == "error":
            result.error = str(event.get("message") or "backend error")
        if event.get("device"):
            result.device = str(event["device"])
