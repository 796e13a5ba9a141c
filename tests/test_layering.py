"""The process boundary holds: backend/ never imports qgis/Qt, plugin/ never imports torch."""

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
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


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
