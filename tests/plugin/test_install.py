"""The dock's *Install backend*, end to end into a temporary per-user home (WATERSEG_HOME):
a real venv from Debian's python3.11, a real ``scripts/setup.sh --venv TMP --runtime``
subprocess, a real pip install and rename. Only the dependency set is swapped, through
WATERSEG_DEPS_DIR, for one tiny wheel made here and installed offline (PIP_NO_INDEX), so the
install takes seconds instead of PyTorch's minutes."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication

from plugin.backend_home import (
    STATE_FILE,
    data_home,
    dependency_hash,
    env_dir,
    env_python,
    home_status,
    no_deps_pins,
)
from plugin.backend_process import find_interpreter
from plugin.install import BackendInstaller, diagnose

pytestmark = [
    pytest.mark.qgis,
    pytest.mark.skipif(not Path("/usr/bin/python3.11").is_file(), reason="needs Debian's Python"),
]
REPO = Path(__file__).resolve().parents[2]
PROBE = "waterseg_probe"


def make_wheel(folder: Path, name: str = PROBE, version: str = "0.1") -> Path:
    """A minimal pure-Python wheel (``import waterseg_probe`` -> VALUE = 42)."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: waterseg-test\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture()
def tiny_home(tmp_path, monkeypatch):
    """WATERSEG_HOME = tmp/home and a dependency set of one local wheel, installed offline."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    deps = tmp_path / "deps"
    deps.mkdir()
    (deps / "requirements.txt").write_text(f"--find-links {wheels}\n{PROBE}==0.1\n")
    (deps / "constraints.txt").write_text("")
    home = tmp_path / "home"
    monkeypatch.setenv("WATERSEG_HOME", str(home))
    monkeypatch.setenv("WATERSEG_DEPS_DIR", str(deps))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    return home, deps


def _wait(qtbot, row, timeout_s: float = 180) -> None:
    qtbot.waitUntil(lambda: not row.running(), timeout=int(timeout_s * 1000))


def _leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir()) if home.is_dir() else []


def test_install_from_the_dock_then_a_second_profile_reuses_it(plugin, tiny_home, qtbot, tmp_path):
    home, deps = tiny_home
    dock = plugin.dock
    row = dock.install_row
    assert row.refresh().current is None and row.button.text() == "Install backend"
    results = []
    row.installed.connect(results.append)
    progress = []
    row.button.click()
    assert row.running() and row.button.text() == "Cancel install"
    row.task.progressChanged.connect(progress.append)
    _wait(qtbot, row)

    (result,) = results
    assert result.ok, (result.error, result.log[-15:])
    target = env_dir(home, dependency_hash(deps))
    assert result.path == target and target.name.startswith("backend-")
    profile = Path(QgsApplication.qgisSettingsDirPath()).resolve()
    assert not target.resolve().is_relative_to(profile)
    assert _leftovers(home) == [target.name]  # the temporary folder was renamed, nothing else
    # the renamed venv works from its final folder, with the tiny set and Debian's GDAL
    ran = subprocess.run(
        [str(env_python(target)), "-c", f"import sys, {PROBE}, rasterio; print(sys.prefix)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and Path(ran.stdout.strip()) == target, ran.stderr
    assert str(tmp_path / "home" / ".install-") not in (target / "bin" / "pip").read_text()
    # setup.sh's stamp and the plugin's hash are one rule
    assert (target / ".requirements.sha256").read_text().strip() == dependency_hash(deps)
    log = "\n".join(result.log)  # shown in the Backend box while running, then in the log tab
    assert "setup: creating" in log and "Successfully installed waterseg" in log, log
    assert "setup: ok" in log and "Backend installed" in dock.last_message()
    assert progress and max(progress) == 100
    assert row.button.text() == "Reinstall backend"

    # Another profile (another plugin folder, without a .venv) finds the same environment...
    other_plugin = tmp_path / "profile2" / "python" / "plugins" / "waterseg"
    other_plugin.mkdir(parents=True)
    found = find_interpreter("", env=dict(os.environ), root=other_plugin, check_torch=False)
    assert found.ok and found.path == str(env_python(target)), found
    assert "per-user environment" in found.source and "out of date" not in found.source
    # ...and installing there again reuses it: no subprocess, the folder untouched
    stamp = (target / STATE_FILE).stat().st_mtime_ns
    again = BackendInstaller(root=other_plugin).run()
    assert again.ok and again.reused and again.path == target and again.exit_code is None
    assert (target / STATE_FILE).stat().st_mtime_ns == stamp

    # The plugin's dependency set changes (a plugin update): the dock offers the update and
    # discovery keeps the old environment meanwhile.
    (deps / "constraints.txt").write_text("rasterio>=1.3\n")
    offer = row.offer_on_start("")
    assert offer and "out of date" in offer and row.button.text() == "Update backend"
    assert dock.message_bar.currentItem().findChild(type(row.button), "installOfferButton")
    status = home_status()
    assert status.update_available and [b.path for b in status.outdated] == [target]
    found = find_interpreter("", env=dict(os.environ), check_torch=False)
    if "per-user" in found.source:  # a checkout with its own .venv finds that first
        assert "out of date" in found.source


def test_cancel_mid_install_leaves_nothing(plugin, tiny_home, qtbot):
    home, _deps = tiny_home
    row = plugin.dock.install_row
    results = []
    row.installed.connect(results.append)
    row.start()
    qtbot.waitUntil(
        lambda: "setup: creating" in plugin.dock.diagnosticsText.toPlainText(), timeout=60000
    )
    row.button.click()  # "Cancel install"
    _wait(qtbot, row, 60)
    (result,) = results
    assert result.cancelled and not result.ok
    assert _leftovers(home) == []
    assert "cancelled" in plugin.dock.last_message()
    assert row.button.text() == "Install backend"


def test_no_network_says_so_and_leaves_nothing(tiny_home, monkeypatch):
    home, deps = tiny_home
    (deps / "requirements.txt").write_text("waterseg-not-a-package==1.0\n")
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no site index or wheel folder
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names the refused connection when it retries
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    result = BackendInstaller().run()
    assert not result.ok and result.exit_code not in (None, 0)
    assert "cannot reach the package index" in result.error, result.log[-10:]
    assert _leftovers(home) == []
    # without a retry pip only says it found nothing: the message still names the network
    quiet = [ln for ln in result.log if "Retrying" not in ln]
    assert "no network" in diagnose(quiet, 1, home)


def test_install_offer_when_no_backend(plugin, tiny_home, monkeypatch):
    monkeypatch.setattr("plugin.install.venv_python", lambda: Path("/nonexistent/python"))
    offer = plugin.dock.install_row.offer_on_start("")
    assert offer == "no backend installed yet"
    assert "no backend installed" in plugin.dock.last_message()
    assert plugin.dock.install_row.offer_on_start("/usr/bin/python3") is None  # configured


def test_failure_messages_name_the_fix(tmp_path):
    disk = diagnose(
        ["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"],
        1,
        tmp_path,
    )
    assert disk.startswith("the disk is full") and str(tmp_path) in disk
    venv = diagnose(
        [
            "The virtual environment was not created successfully because ensurepip is not available."
        ],
        1,
        tmp_path,
    )
    assert "sudo apt-get install python3.11-venv" in venv
    apt = "setup: error: Debian packages missing: run 'sudo apt-get install python3-rasterio' in a terminal, then install the backend again"
    assert diagnose(["setup: checking Debian packages", apt], 1, tmp_path).startswith(
        "Debian packages missing: run 'sudo apt-get install python3-rasterio'"
    )


def test_data_home_rule():
    assert data_home({"WATERSEG_HOME": "/x/ws", "HOME": "/h"}) == Path("/x/ws")
    assert data_home({"HOME": "/h"}, "linux") == Path("/h/.local/share/waterseg")
    assert data_home({"HOME": "/h", "XDG_DATA_HOME": "/d"}, "linux") == Path("/d/waterseg")
    assert data_home({"HOME": "/h"}, "darwin") == Path("/h/Library/Application Support/waterseg")
    assert (
        data_home({"LOCALAPPDATA": r"C:\Users\a\AppData\Local"}, "win32")
        == Path(r"C:\Users\a\AppData\Local") / "waterseg"
    )


def test_install_command_is_setup_sh_runtime_into_a_temporary_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WATERSEG_HOME", str(tmp_path))
    monkeypatch.delenv("WATERSEG_DEPS_DIR", raising=False)
    monkeypatch.delenv("WATERSEG_BASE_PYTHON", raising=False)
    argv = BackendInstaller().command(tmp_path / ".install-x")
    assert argv[:2] == ["bash", str(REPO / "scripts" / "setup.sh")]
    assert argv[2:] == [
        "--venv", str(tmp_path / ".install-x"), "--runtime", "--deps", str(REPO),
        "--python", "/usr/bin/python3.11",
    ]  # fmt: skip
    monkeypatch.setenv("WATERSEG_BASE_PYTHON", "/opt/qgis/bin/python3")  # other Linux, macOS
    assert BackendInstaller().command(tmp_path / "t")[-1] == "/opt/qgis/bin/python3"


def test_dependency_hash_is_setup_sh_stamp_of_the_development_venv():
    """setup.sh asks backend_home for its stamp; the bytes hashed are those it always hashed
    (so an existing .venv is not reinstalled): REQS, requirements.txt, constraints.txt, pins."""
    digest = hashlib.sha256()
    for name in ("requirements-dev.txt", "requirements.txt", "constraints.txt"):
        digest.update((REPO / name).read_bytes())
    pins = no_deps_pins(REPO)
    assert pins and all("==" in p for p in pins)
    digest.update("".join(f"{p}\n" for p in pins).encode())
    assert dependency_hash(REPO, "requirements-dev.txt") == digest.hexdigest()
    stamp = REPO / ".venv" / ".requirements.sha256"
    if stamp.is_file():
        assert stamp.read_text().strip() == digest.hexdigest()


def _shim(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_missing_debian_packages_stop_with_the_apt_command(tiny_home, tmp_path, monkeypatch):
    """Not root and a package missing: setup.sh never prompts for sudo; it names the command.
    (dpkg-query and id are shimmed: python3-rasterio 'missing', uid 1000.)"""
    home, _deps = tiny_home
    shims = tmp_path / "shims"
    _shim(shims, "id", 'if [ "$1" = "-u" ]; then echo 1000; else exec /usr/bin/id "$@"; fi')
    _shim(
        shims,
        "dpkg-query",
        'for a; do last="$a"; done\n'
        '[ "$last" = python3-rasterio ] && exit 1\nexec /usr/bin/dpkg-query "$@"',
    )
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    result = BackendInstaller().run()
    assert result.error == (
        "Debian packages missing: run 'sudo apt-get install python3-rasterio' in a terminal, "
        "then install the backend again"
    ), result.log[-5:]
    assert _leftovers(home) == []


def test_no_venv_module_names_the_package(tiny_home, tmp_path, monkeypatch):
    """A base Python that cannot make a venv (Debian without python3.11-venv), simulated by a
    wrapper that fails ``-m venv`` with Debian's own message."""
    home, _deps = tiny_home
    wrapper = _shim(
        tmp_path / "shims",
        "python3.11",
        'if [ "$1" = -m ] && [ "$2" = venv ]; then\n'
        '  echo "The virtual environment was not created successfully because ensurepip is '
        'not available." >&2; exit 1\nfi\nexec /usr/bin/python3.11 "$@"',
    )
    monkeypatch.setenv("WATERSEG_BASE_PYTHON", str(wrapper))
    result = BackendInstaller().run()
    assert "sudo apt-get install python3.11-venv" in result.error, result.log[-5:]
    assert _leftovers(home) == []


def test_too_little_disk_stops_before_installing(tiny_home, monkeypatch):
    home, _deps = tiny_home
    monkeypatch.setattr("plugin.install.REQUIRED_FREE_BYTES", 1 << 60)
    result = BackendInstaller().run()
    assert result.error.startswith("the disk is nearly full") and result.exit_code is None
    assert _leftovers(home) == []


def test_a_killed_install_is_cleaned_up_by_the_next(tiny_home):
    """QGIS killed mid-install leaves .install-<hash>-<pid>; the next install removes it (its
    process is gone) and ignores it meanwhile (not a finished environment)."""
    home, _deps = tiny_home
    dead = home / ".install-0123456789ab-999999999"
    (dead / "bin").mkdir(parents=True)
    (dead / "bin" / "python").write_text("")
    assert home_status().current is None and not home_status().outdated
    result = BackendInstaller().run()
    assert result.ok and f"Removed the unfinished install {dead}" in result.log
    assert _leftovers(home) == [result.path.name]
