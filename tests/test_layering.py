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
    "change": {"core", "segment", "batch"},
    "learning": {"core", "models", "losses", "datasets"},
    "commands": {"core", "models", "losses", "datasets", "segment", "batch", "learning"},
    "cli": {"core"},
    "__main__": {"core", "cli"},
}
# (file, package it imports): why the rule above does not hold there. None today: keep it so.
BACKEND_LAYER_EXCEPTIONS: dict[tuple[str, str], str] = {}


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


def _module_name(path: Path) -> str:
    """backend/models/fusion.py -> backend.models.fusion; backend/models/__init__.py ->
    backend.models."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def backend_import_graph() -> dict[str, set[str]]:
    """Backend module -> the backend modules it imports, at any depth of the file (top level,
    inside functions, under ``if TYPE_CHECKING``: all run, or can, in one process).

    ``import a.b.c`` and ``from a.b import c`` point at ``a.b.c`` when that is a module, else at
    the package ``a.b`` (a name defined in its ``__init__``). A submodule's implicit import of
    its parent packages is not an edge: Python finishes a package's ``__init__`` before a
    sibling needs it only when the ``__init__`` does not need the sibling back, which is
    exactly the edge the explicit import gives.
    """
    files = {_module_name(p): p for p in (ROOT / "backend").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                candidates = [f"{module}.{a.name}" for a in node.names] + [module]
                candidates = [c for c in candidates[:-1] if c in files] or [module]
            else:
                continue
            for candidate in candidates:
                while candidate and candidate not in files:  # a.b.name -> a.b
                    candidate = candidate.rpartition(".")[0]
                if candidate and candidate != name:
                    targets.add(candidate)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one node, as a closed path found in it
    (Tarjan's algorithm, iterative); [] when the graph has no cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path a -> ... -> a inside ``component`` (breadth first from its first node)."""
    start = min(component)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return sorted(component)


def test_find_cycles_finds_a_circle_through_a_function_level_import(tmp_path):
    """The checker itself: a made-up graph with the circle this test was written after."""
    graph = {
        "backend.core.checkpoint": {"backend.models"},
        "backend.models": {"backend.models.fusion"},
        "backend.models.fusion": {"backend.core.water_indices"},
        "backend.core.water_indices": {"backend.core.checkpoint"},
        "backend.core.errors": set(),
    }
    (cycle,) = find_cycles(graph)
    assert cycle[0] == cycle[-1] and len(cycle) == 5
    assert set(cycle) == set(graph) - {"backend.core.errors"}
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_backend_graph_sees_function_level_and_package_imports():
    graph = backend_import_graph()
    assert "backend.core.checkpoint" in graph["backend.models.loading"]
    assert "backend.models" in graph["backend.models.loading"]  # from backend.models import x
    assert "backend.models.fusion" in graph["backend.models"]
    # imported inside a function: torch-free at import, still an edge
    assert "backend.models.loading" in graph["backend.segment.cli"]


def test_no_import_circles_among_backend_modules():
    """No backend module imports, at any depth, a module that imports it back (directly or
    through others): a circle makes import order matter and hides a layer upside down."""
    cycles = find_cycles(backend_import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


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
