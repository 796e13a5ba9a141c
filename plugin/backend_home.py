"""Where the per-user backend environment lives, and which dependency set it holds.

The dock's *Install backend* (plugin/install.py) creates one virtual environment per
dependency set in a per-user data folder outside every QGIS profile, so profiles share it
and a plugin update keeps it:

- ``$WATERSEG_HOME`` when set (tests use a temporary one), else
- Linux and other POSIX: ``$XDG_DATA_HOME/waterseg``, or ``~/.local/share/waterseg``;
- Windows: ``%LOCALAPPDATA%\\waterseg``;
- macOS: ``~/Library/Application Support/waterseg``.

Inside it, ``backend-<hash>/`` is the environment of the dependency set whose hash is
``<hash>`` (12 hex digits of :func:`dependency_hash`): a changed set has another name, so the
plugin sees that its environment is out of date and offers to update it. A finished
environment holds ``waterseg-backend.json`` (:data:`STATE_FILE`), written last before the
temporary folder is renamed into place.

The dependency set is one rule shared with ``scripts/setup.sh``, which asks this file for the
stamp of ``.venv`` (``python3 plugin/backend_home.py hash --reqs FILE``): the bytes of the
pip requirements file, ``requirements.txt``, ``constraints.txt``, then the pins of
``requirements-nodeps.txt`` (installed with ``--no-deps``), one per line. Plain Python: no Qt,
runnable as a script (setup.sh does, before QGIS or the plugin are importable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent
HOME_ENV_VAR = "WATERSEG_HOME"
# Another folder holding the three dependency files (tests install a tiny set through it).
DEPS_ENV_VAR = "WATERSEG_DEPS_DIR"
REQUIREMENTS = "requirements.txt"
CONSTRAINTS = "constraints.txt"
NO_DEPS = "requirements-nodeps.txt"
STATE_FILE = "waterseg-backend.json"
ENV_PREFIX = "backend-"
HASH_CHARS = 12


def data_home(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> Path:
    """The per-user WaterSeg data folder (see the module docstring); not created here."""
    env = os.environ if env is None else env
    if env.get(HOME_ENV_VAR, "").strip():
        return Path(env[HOME_ENV_VAR].strip()).expanduser()
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        base = env.get("LOCALAPPDATA", "").strip()
        return (Path(base) if base else home / "AppData" / "Local") / "waterseg"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "waterseg"
    xdg = env.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg else home / ".local" / "share") / "waterseg"


def deps_dir(env: Mapping[str, str] | None = None, root: Path = PLUGIN_ROOT) -> Path:
    """The folder whose requirements.txt, constraints.txt and requirements-nodeps.txt are the
    runtime dependency set: the plugin folder, or ``$WATERSEG_DEPS_DIR``."""
    env = os.environ if env is None else env
    override = env.get(DEPS_ENV_VAR, "").strip()
    return Path(override) if override else root


def no_deps_pins(folder: Path) -> list[str]:
    """The requirements of ``requirements-nodeps.txt`` (comments and blank lines dropped)."""
    path = folder / NO_DEPS
    if not path.is_file():
        return []
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln]


def dependency_hash(folder: Path, reqs: str = REQUIREMENTS) -> str:
    """sha256 (hex) of the dependency set in ``folder`` when pip installs ``reqs``.

    Byte for byte what setup.sh's ``.venv`` stamp always hashed:
    ``cat REQS requirements.txt constraints.txt; echo PIN`` for each no-deps pin.
    """
    digest = hashlib.sha256()
    for name in (reqs, REQUIREMENTS, CONSTRAINTS):
        digest.update((folder / name).read_bytes())
    for pin in no_deps_pins(folder):
        digest.update(f"{pin}\n".encode())
    return digest.hexdigest()


def env_dir(home: Path, digest: str) -> Path:
    """The environment folder of the dependency set ``digest``."""
    return home / f"{ENV_PREFIX}{digest[:HASH_CHARS]}"


def env_python(venv: Path) -> Path:
    """The interpreter of a virtual environment."""
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


@dataclass(frozen=True)
class InstalledBackend:
    """A finished per-user environment: its folder, interpreter and state file's contents."""

    path: Path
    python: Path
    state: dict

    @property
    def digest(self) -> str:
        return str(self.state.get("hash", ""))


@dataclass(frozen=True)
class HomeStatus:
    """What the per-user data folder holds for the plugin's dependency set ``digest``.

    ``current`` is the environment of that set (None when not installed); ``outdated`` are
    finished environments of other sets (newest first): usable, but the plugin's
    dependencies changed since, so the dock offers an update.
    """

    home: Path
    digest: str
    current: InstalledBackend | None
    outdated: list[InstalledBackend]

    @property
    def update_available(self) -> bool:
        return self.current is None and bool(self.outdated)


def installed_backends(home: Path) -> list[InstalledBackend]:
    """Finished environments under ``home`` (a state file and an interpreter), newest first.
    Temporary folders of an install in progress or killed are not listed."""
    found = []
    if not home.is_dir():
        return found
    for path in home.glob(f"{ENV_PREFIX}*"):
        state_file, python = path / STATE_FILE, env_python(path)
        if not (state_file.is_file() and python.is_file()):
            continue
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict):
            found.append(InstalledBackend(path, python, state))
    return sorted(found, key=lambda b: str(b.state.get("created", "")), reverse=True)


def home_status(env: Mapping[str, str] | None = None, root: Path = PLUGIN_ROOT) -> HomeStatus:
    """Which environment in the per-user folder matches the plugin's dependency set."""
    home = data_home(env)
    digest = dependency_hash(deps_dir(env, root))
    current, outdated = None, []
    for backend in installed_backends(home):
        if backend.digest == digest and backend.path == env_dir(home, digest):
            current = backend
        else:
            outdated.append(backend)
    return HomeStatus(home, digest, current, outdated)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="WaterSeg's runtime dependency set")
    sub = parser.add_subparsers(dest="command", required=True)
    hashing = sub.add_parser("hash", help="print the sha256 of the dependency set")
    hashing.add_argument("--reqs", default=REQUIREMENTS, help="the file pip installs (-r)")
    hashing.add_argument("--deps", type=Path, default=None, help="folder of the set")
    pins = sub.add_parser("pins", help="print the no-deps pins, one per line")
    pins.add_argument("--deps", type=Path, default=None, help="folder of the set")
    sub.add_parser("home", help="print the per-user data folder")
    args = parser.parse_args(argv)
    if args.command == "hash":
        print(dependency_hash(args.deps or deps_dir(), args.reqs))
    elif args.command == "pins":
        for pin in no_deps_pins(args.deps or deps_dir()):
            print(pin)
    else:
        print(data_home())
    return 0


if __name__ == "__main__":
    sys.exit(main())
