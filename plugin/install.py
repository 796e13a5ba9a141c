"""*Install backend*: create the backend's environment from QGIS, once, outside the profile.

The environment goes to ``<per-user data folder>/backend-<hash>`` (plugin/backend_home.py
says where and what the hash covers), so every QGIS profile shares it and a plugin update
keeps it until its dependency set changes. The work is ``scripts/setup.sh --venv TMP
--runtime`` (the same script as ``make setup``: Debian packages are checked, never installed
without root; the venv comes from Debian's python3.11 with --system-site-packages so GDAL and
rasterio match QGIS's; then the pinned runtime requirements). Its output streams into the
dock's log. It runs in a temporary folder beside the target, renamed into place when
complete: a cancel or a failure removes the temporary folder and leaves nothing half-made.

Layers: :class:`BackendInstaller` (plain Python, blocking: subprocess, progress, cancel,
rename) runs inside :class:`InstallTask` (QGIS's task manager), which
:class:`BackendInstallRow` (a button and a progress bar in the dock's Backend section)
starts, follows and cancels.
"""

from __future__ import annotations

import configparser
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsTask
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

from .backend_home import (
    PLUGIN_ROOT,
    STATE_FILE,
    HomeStatus,
    deps_dir,
    env_dir,
    env_python,
    home_status,
)
from .backend_process import ENV_VAR, venv_python
from .task import log

SETUP_SCRIPT = PLUGIN_ROOT / "scripts" / "setup.sh"
BASE_PYTHON = "/usr/bin/python3.11"  # setup.sh's default: the Python of Debian's GDAL
# The Python the venv is made from, where it is not Debian's (other Linux, macOS: untested)
BASE_PYTHON_ENV_VAR = "WATERSEG_BASE_PYTHON"
TMP_PREFIX = ".install-"  # <home>/.install-<hash>-<pid>: an install in progress
OLD_PREFIX = ".replaced-"  # an environment being replaced by a reinstall
# About what the CPU PyTorch wheel and its neighbours take installed (1.0 GB here) plus pip's
# download and unpack space.
REQUIRED_FREE_BYTES = 3 * 1024**3
DOCS = "docs/plugin.md, 'Install the backend'"

# (text in the log, the one-line message with the fix); the first that matches wins
NETWORK_SIGNS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ProxyError",
    "Read timed out",
    "Could not fetch URL",
    "SSLError",
)


def diagnose(lines: list[str], exit_code: int | None, home: Path) -> str:
    """The one-line reason an install failed, with the fix, from its log."""
    text = "\n".join(lines)
    if "No space left on device" in text or "[Errno 28]" in text:
        return (
            f"the disk is full: free about {REQUIRED_FREE_BYTES // 1024**3} GB where {home} "
            "is (or set WATERSEG_HOME to a folder on a larger disk), then install again"
        )
    if any(sign in text for sign in NETWORK_SIGNS):
        return (
            "pip cannot reach the package index (no network, a proxy or a firewall): connect, "
            "or give pip a proxy or a reachable index (PIP_PROXY, PIP_INDEX_URL in QGIS's "
            "environment), then install again"
        )
    if "ensurepip is not available" in text or "No module named venv" in text:
        return (
            "Python cannot create a virtual environment (no venv/ensurepip): run "
            "'sudo apt-get install python3.11-venv' in a terminal, then install again"
        )
    for line in lines:
        if "No matching distribution found for" in line:
            wanted = line.split("No matching distribution found for", 1)[1].strip()
            return (
                f"pip found no {wanted} (no network or a proxy in the way, or the index has no "
                "build for this Python): connect, or give pip a reachable index (PIP_INDEX_URL, "
                "PIP_PROXY in QGIS's environment), then install again"
            )
    for line in reversed(lines):
        if line.startswith("setup: error:"):
            return line[len("setup: error:") :].strip()
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return f"{line.strip()} (see the log; {DOCS})"
    return f"scripts/setup.sh stopped with exit code {exit_code} (see the log; {DOCS})"


def plugin_version(root: Path = PLUGIN_ROOT) -> str:
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(root / "metadata.txt", encoding="utf-8")
    return meta.get("general", "version", fallback="?").strip()


@dataclass
class InstallResult:
    """What one install did. ``path`` is the finished environment (new or reused)."""

    path: Path | None = None
    reused: bool = False
    cancelled: bool = False
    error: str | None = None
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.path is not None and self.error is None and not self.cancelled


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def remove_stale(home: Path) -> list[Path]:
    """Remove temporary folders of installs whose process is gone (QGIS killed mid-install)."""
    removed = []
    for path in [*home.glob(f"{TMP_PREFIX}*"), *home.glob(f"{OLD_PREFIX}*")]:
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue  # another QGIS (another profile) is installing now
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _relocate_scripts(venv: Path, old: Path, new: Path) -> None:
    """Point the venv's scripts (pip's shebangs, activate) at the final folder. The
    interpreter itself finds its prefix from pyvenv.cfg beside it, wherever the folder is."""
    scripts = env_python(venv).parent
    old_b, new_b = str(old).encode(), str(new).encode()
    for path in scripts.iterdir():
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1_000_000:
            continue
        data = path.read_bytes()
        if old_b in data and b"\0" not in data[:1024]:
            path.write_bytes(data.replace(old_b, new_b))


class BackendInstaller:
    """Creates (or finds) the per-user environment of the plugin's dependency set.

    ``env`` is the environment of setup.sh (and of the rules in backend_home: WATERSEG_HOME,
    WATERSEG_DEPS_DIR); ``run()`` blocks, so call it from a worker thread.
    """

    def __init__(self, env: Mapping[str, str] | None = None, root: Path = PLUGIN_ROOT):
        self.env = dict(os.environ if env is None else env)
        self.root = root
        self.status: HomeStatus = home_status(self.env, root)

    @property
    def target(self) -> Path:
        return env_dir(self.status.home, self.status.digest)

    @property
    def base_python(self) -> str:
        return self.env.get(BASE_PYTHON_ENV_VAR, "").strip() or BASE_PYTHON

    def command(self, tmp: Path) -> list[str]:
        """argv of the install into ``tmp``."""
        deps = deps_dir(self.env, self.root)
        argv = ["bash", str(SETUP_SCRIPT), "--venv", str(tmp), "--runtime", "--deps", str(deps)]
        return [*argv, "--python", self.base_python]

    def run(
        self,
        on_line: Callable[[str], None] = lambda s: None,
        on_progress: Callable[[float], None] = lambda p: None,
        is_canceled: Callable[[], bool] = lambda: False,
        force: bool = False,
        grace_s: float = 3.0,
    ) -> InstallResult:
        result = InstallResult()
        start = time.monotonic()
        home, target = self.status.home, self.target

        def say(line: str) -> None:
            result.log.append(line)
            on_line(line)

        if self.status.current is not None and not force:
            say(f"The backend for this plugin version is installed: {target}")
            result.path, result.reused = target, True
            return result
        if os.name == "nt" or shutil.which("bash", path=self.env.get("PATH")) is None:
            result.error = (
                "Install backend runs scripts/setup.sh, which needs bash (Linux; macOS untested); "
                f"on Windows create the environment by hand ({DOCS})"
            )
            return result
        try:
            home.mkdir(parents=True, exist_ok=True)
            for path in remove_stale(home):
                say(f"Removed the unfinished install {path}")
            free = shutil.disk_usage(home).free
        except OSError as exc:
            result.error = f"cannot use {home}: {exc}; set WATERSEG_HOME to a writable folder"
            return result
        if free < REQUIRED_FREE_BYTES:
            result.error = (
                f"the disk is nearly full: {free / 1024**3:.1f} GB free where {home} is, the "
                f"backend needs about {REQUIRED_FREE_BYTES // 1024**3} GB: free space (or set "
                "WATERSEG_HOME to a folder on a larger disk), then install again"
            )
            return result

        tmp = home / f"{TMP_PREFIX}{self.status.digest[:12]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"Installing the WaterSeg backend into {target}")
        say("$ " + " ".join(self.command(tmp)))
        try:
            result.exit_code, result.cancelled = self._run_setup(
                tmp, say, on_progress, is_canceled, grace_s
            )
            if result.cancelled:
                say("Cancelled: the unfinished environment is removed.")
            elif result.exit_code != 0:
                result.error = diagnose(result.log, result.exit_code, home)
            elif is_canceled():
                result.cancelled = True
            else:
                self._finish(tmp, target, force)
                result.path = target
                on_progress(100.0)
                say(f"Installed in {time.monotonic() - start:.0f} s: {target}")
        except OSError as exc:
            result.error = f"the install failed: {exc} ({DOCS})"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            result.elapsed_s = time.monotonic() - start
        return result

    def _run_setup(self, tmp, say, on_progress, is_canceled, grace_s) -> tuple[int, bool]:
        """Run setup.sh into ``tmp``; stream its lines; stop its process group on cancel."""
        proc = subprocess.Popen(
            self.command(tmp),
            cwd=str(self.root),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: a cancel stops pip too
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        progress, cancelled_at = 0.0, None
        while True:
            if cancelled_at is None and is_canceled():
                cancelled_at = time.monotonic()
                _signal_group(proc, signal.SIGTERM)
            if cancelled_at is not None and time.monotonic() - cancelled_at > grace_s:
                _signal_group(proc, signal.SIGKILL)
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            say(line)
            progress = _progress_after(line, progress)
            on_progress(progress)
        proc.wait()
        reader.join(timeout=2)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode, cancelled_at is not None

    def _finish(self, tmp: Path, target: Path, force: bool) -> None:
        """Record the state and rename ``tmp`` into place (the only step that publishes)."""
        state = {
            "hash": self.status.digest,
            "plugin_version": plugin_version(self.root),
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
            "base_python": self.base_python,
            "deps": str(deps_dir(self.env, self.root)),
        }
        _relocate_scripts(tmp, tmp, target)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        old = None
        if target.exists():
            if (target / STATE_FILE).is_file() and not force:
                return  # another profile finished the same install first: use that one
            old = target.with_name(f"{OLD_PREFIX}{target.name}-{os.getpid()}")
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _progress_after(line: str, progress: float) -> float:
    """Progress (0-100) after one line of setup.sh: its steps, then pip's lines nudge it up."""
    steps = {
        "setup: checking Debian packages": 3.0,
        "setup: creating": 8.0,
        "setup: installing Python requirements": 25.0,
        "Installing collected packages": 85.0,
        "setup: ok": 97.0,
    }
    for start, value in steps.items():
        if line.startswith(start):
            return max(progress, value)
    if line.startswith(("Collecting", "Downloading", "Requirement already", "Processing")):
        return progress + (84.0 - progress) * 0.06 if progress >= 25.0 else progress
    return progress


class InstallTask(QgsTask):
    """:class:`BackendInstaller` in QGIS's task manager. ``line`` carries each log line
    (queued to the main thread); ``completed`` the InstallResult, after ``finished()``."""

    line = pyqtSignal(str)
    completed = pyqtSignal(object)

    def __init__(self, installer: BackendInstaller, force: bool = False):
        super().__init__("WaterSeg: install the backend", QgsTask.CanCancel)
        self.installer = installer
        self.force = force
        self.result = InstallResult()

    def run(self) -> bool:
        self.result = self.installer.run(
            on_line=self.line.emit,
            on_progress=self.setProgress,
            is_canceled=self.isCanceled,
            force=self.force,
        )
        # True on a cancel too: QGIS 3.22 reports a False run() as "Task failed" (task.py).
        return self.result.ok or self.result.cancelled

    def finished(self, _ok: bool) -> None:  # main thread
        if not self.result.ok and self.result.error is None:  # cancelled before it ran
            self.result.cancelled = True
        self.completed.emit(self.result)


class BackendInstallRow(QWidget):
    """The Backend section's *Install backend* button (Update/Reinstall as the per-user folder
    says; Cancel install while running) and its progress bar. The log goes to the dock's
    diagnostics box while it runs and to the WaterSeg log tab when done, the outcome to the
    message bar; the dock re-runs *Check backend* after a finished install."""

    installed = pyqtSignal(object)  # the InstallResult of a finished install

    def __init__(self, dock, env: Mapping[str, str] | None = None):
        super().__init__(dock)
        self.dock = dock
        self.env = env  # None: os.environ at each use
        self.task: InstallTask | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.button = QPushButton("Install backend", self)
        self.button.setObjectName("installButton")
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        layout.addWidget(self.button)
        layout.addWidget(self.progress)
        self.button.clicked.connect(self._clicked)
        self.status = self.refresh()

    def running(self) -> bool:
        return self.task is not None

    def refresh(self) -> HomeStatus | None:
        """Read the per-user folder; label the button for what a click would do."""
        try:
            self.status = home_status(self.env)
        except OSError as exc:  # a dependency file missing from the plugin folder
            self.button.setEnabled(False)
            self.button.setToolTip(f"cannot read the dependency set: {exc}")
            return None
        target = env_dir(self.status.home, self.status.digest)
        if self.running():
            return self.status
        if self.status.current is not None:
            text, tip = "Reinstall backend", f"Installed in {target}"
        elif self.status.update_available:
            text = "Update backend"
            tip = f"The plugin's dependencies changed: install them into {target}"
        else:
            text, tip = "Install backend", f"Create the backend's environment in {target}"
        self.button.setText(text)
        self.button.setToolTip(tip + " (shared by all QGIS profiles; a few minutes, ~1 GB)")
        return self.status

    def offer_on_start(self, python_setting: str = "") -> str | None:
        """At the dock's first showing: offer an update when the per-user environment is of
        an older dependency set, or an install when no backend is installed or configured
        (``python_setting``: the dock's Backend > Python; also WATERSEG_PYTHON or the plugin
        folder's own .venv). Returns the message shown, if any."""
        env = os.environ if self.env is None else self.env
        configured = bool(
            python_setting.strip() or env.get(ENV_VAR, "").strip() or venv_python().is_file()
        )
        status = self.refresh()
        if status is None or self.running():
            return None
        if status.update_available:
            text = "backend out of date"  # short: the message bar has room for one line
            log(
                f"The backend environment {status.outdated[0].path} is out of date: this plugin "
                f"version needs other dependencies; Update backend installs them into "
                f"{env_dir(status.home, status.digest)}"
            )
            self._push_with_button(text, "Update backend", Qgis.Warning)
            return text
        if status.current is None and not configured:
            text = "no backend installed yet"
            self._push_with_button(text, "Install backend", Qgis.Info)
            return text
        return None

    def _push_with_button(self, text: str, label: str, level) -> None:
        bar = self.dock.message_bar
        bar.clearWidgets()
        item = bar.createMessage("WaterSeg", text)
        button = QPushButton(label, item)
        button.setObjectName("installOfferButton")
        button.clicked.connect(lambda: self.start(force=False))
        item.layout().addWidget(button)
        bar.pushWidget(item, level, 0)

    def _clicked(self) -> None:
        if self.running():
            self.cancel()
        else:
            self.start(force=self.status is not None and self.status.current is not None)

    def start(self, force: bool = False) -> InstallTask | None:
        """Queue an install (``force``: replace the current environment)."""
        if self.running():
            return self.task
        installer = BackendInstaller(self.env)
        self.task = InstallTask(installer, force=force)
        self.task.line.connect(self._on_line)
        self.task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        self.task.completed.connect(self._on_completed)
        self.dock.backendGroup.setCollapsed(False)
        self.dock.diagnosticsText.setPlainText("")
        self.dock.message_bar.clearWidgets()
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.button.setText("Cancel install")
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _on_line(self, line: str) -> None:
        self.dock.diagnosticsText.appendPlainText(line)

    def _on_completed(self, result: InstallResult) -> None:
        self.task = None
        log("Install backend:\n" + "\n".join(result.log))  # the whole log, kept after a check
        self.progress.setVisible(False)
        self.refresh()
        if result.cancelled:
            self.dock.show_message("Install backend cancelled: nothing was left behind.", Qgis.Info)
        elif result.error:
            self.dock.diagnosticsText.appendPlainText(f"Failed: {result.error}")
            self.dock.show_message(f"Install backend failed: {result.error}", Qgis.Critical)
        else:
            done = "already installed" if result.reused else "installed"
            self.dock.show_message(f"Backend {done}: {result.path}", Qgis.Success, 10)
        self.installed.emit(result)

    def shutdown(self) -> None:
        """Plugin unload: cancel a running install (it removes its temporary folder)."""
        if self.task is not None:
            self.task.cancel()
