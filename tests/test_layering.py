"""The process boundary holds: backend/ never imports qgis/Qt, plugin/ never imports torch; and
inside backend/, packages import only the layers below them (backend/__init__.py draws them)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_roots(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_backend_never_imports_qgis_or_qt():
    roots = _imported_roots(ROOT / "backend")
    bad = {
        k: v
        for k, v in roots.items()
        if k in {"qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}
    }
    assert not bad, f"backend imports GUI modules: {bad}"


def test_plugin_never_imports_torch():
    roots = _imported_roots(ROOT / "plugin")
    assert "torch" not in roots, f"plugin imports torch: {roots['torch']}"
    assert "backend" not in roots, "plugin must talk to the backend through its CLI, not import it"


# Each backend package -> the other backend packages it may import (imports inside functions
# count too). Bottom up: core; the learning parts; the engine; training and evaluation; the
# commands; the entry point, which reaches the commands through its table, by name.
BACKEND_LAYERS: dict[str, set[str]] = {
    "core": set(),
    "models": {"core"},
    "losses": {"core"},
    "datasets": {"core"},
    "segment": {"core", "models"},
    "batch": {"core", "segment"},
    "learning": {"core", "models", "losses", "datasets"},
    "commands": {"core", "models", "losses", "datasets", "segment", "batch", "learning"},
    "cli": {"core"},
    "__main__": {"core", "cli"},
}
# (file, package it imports): why the rule above does not hold there.
BACKEND_LAYER_EXCEPTIONS = {
    ("backend/core/checkpoint.py", "models"): "rebuilds the stored network, inside functions",
}


def _backend_imports() -> list[tuple[str, str, str]]:
    """(file, its package, the backend package it imports) for every import of backend.X."""
    found = []
    for path in sorted((ROOT / "backend").rglob("*.py")):
        rel = path.relative_to(ROOT)
        package = rel.parts[1] if len(rel.parts) > 2 else path.stem
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append((str(rel), package, "<relative import>"))
                continue
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "backend":
                modules = [f"backend.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "backend" and len(parts) > 1 and parts[1] != "__version__":
                    found.append((str(rel), package, parts[1]))
    return found


def test_backend_packages_import_only_the_layers_below():
    packages = {p.name for p in (ROOT / "backend").iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in (ROOT / "backend").glob("*.py")} - {"__init__"}
    assert packages | modules == set(BACKEND_LAYERS), "place each backend package in a layer"
    bad = sorted(
        f"{file} imports backend.{target}"
        for file, package, target in _backend_imports()
        if target != package
        and target not in BACKEND_LAYERS[package]
        and (file, target) not in BACKEND_LAYER_EXCEPTIONS
    )
    assert not bad, "imports against the layers of backend/__init__.py:\n" + "\n".join(bad)
    used = {(file, target) for file, _, target in _backend_imports()}
    assert set(BACKEND_LAYER_EXCEPTIONS) <= used, "an exception that no longer applies"


def _runs_to_ok(code: str) -> None:
    """Run ``code`` in a fresh interpreter from the repository root; it must print ok."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_core_and_the_commands_that_run_without_torch_import_without_it():
    """``info`` reports a missing torch instead of failing, ``plan`` never needs it, and core
    is below everything: none of them may import torch when they load."""
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['torch'] = None\n"
        "import backend.core\n"
        "names = [i.name for i in pkgutil.walk_packages(backend.core.__path__, 'backend.core.')]\n"
        "names += ['backend.cli', 'backend.segment.plan', 'backend.commands.info']\n"
        "for name in names: importlib.import_module(name)\n"
        "print('ok')\n"
    )
    _runs_to_ok(code)


def test_backend_imports_without_qgis_available():
    """The backend's modules import in a Python where qgis and PyQt cannot be imported."""
    code = (
        "import sys, importlib, pkgutil\n"
        "for m in ('qgis', 'PyQt5', 'PyQt6'): sys.modules[m] = None\n"
        "import backend\n"
        "for info in pkgutil.walk_packages(backend.__path__, 'backend.'):\n"
        "    if info.name != 'backend.__main__': importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    _runs_to_ok(code)


@pytest.mark.qgis
def test_plugin_imports_with_torch_blocked():
    """QGIS's Python rarely has torch: the plugin package must load without it."""
    code = (
        "import sys, importlib, pkgutil\n"
        "sys.modules['torch'] = None\n"
        "import plugin\n"
        "for info in pkgutil.walk_packages(plugin.__path__, 'plugin.'):\n"
        "    importlib.import_module(info.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
