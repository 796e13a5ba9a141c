"""Build the installable QGIS plugin zip: ``dist/waterseg-<version>.zip``.

The zip holds one folder, ``waterseg/``, with only what the plugin needs at run time:
metadata.txt, __init__.py, plugin/, backend/, resources/ (icons, styles, bundled models),
the runtime dependency set (requirements.txt, constraints.txt, requirements-nodeps.txt),
scripts/setup.sh (which the dock's Install backend runs), a user's Makefile
(packaging/Makefile: setup, info, demo; so ``make setup`` in the installed folder installs
the runtime requirements only), LICENSE and README when present. No tests, development
requirements, the development Makefile, caches, virtual environments or training runs.

    python scripts/package.py [--out dist]
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = "waterseg"
FILES = [
    "metadata.txt",
    "__init__.py",
    "LICENSE",
    "README.md",
    "requirements.txt",
    "constraints.txt",
    "requirements-nodeps.txt",
    "scripts/setup.sh",
]
RENAMED = {"packaging/Makefile": "Makefile"}  # repository path -> path in the plugin folder
TREES = ["plugin", "backend", "resources"]
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".venv", "runs", "tests"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".tmp", ".orig", ".rej"}


def version() -> str:
    """The ``version`` of metadata.txt."""
    meta = configparser.ConfigParser(interpolation=None)
    meta.read(ROOT / "metadata.txt", encoding="utf-8")
    return meta["general"]["version"].strip()


def plugin_files() -> list[Path]:
    """Files that go into the zip, relative to the repository root, sorted."""
    files = [Path(f) for f in FILES if (ROOT / f).is_file()]
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            rel = path.relative_to(ROOT)
            if not path.is_file() or SKIP_DIRS.intersection(rel.parts):
                continue
            if path.suffix in SKIP_SUFFIXES or path.name.startswith("."):
                continue
            files.append(rel)
    return sorted(set(files))


def build(out_dir: Path) -> Path:
    """Write the zip and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{FOLDER}-{version()}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in plugin_files():
            zf.write(ROOT / rel, f"{FOLDER}/{rel.as_posix()}")
        for src, dest in RENAMED.items():
            zf.write(ROOT / src, f"{FOLDER}/{dest}")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)"
    )
    args = parser.parse_args(argv)
    for needed in ("metadata.txt", "__init__.py", "resources/icons/waterseg.svg"):
        if not (ROOT / needed).is_file():
            print(f"package: error: {needed} is missing", file=sys.stderr)
            return 2
    path = build(args.out)
    with zipfile.ZipFile(path) as zf:
        count = len(zf.namelist())
    print(f"{path} ({count} files, {path.stat().st_size / 1e6:.1f} MB)")
    for name in ("waterseg-default.pt", "waterseg-rgbn.pt"):
        if not (ROOT / "resources" / "models" / name).is_file():
            print(
                f"package: warning: resources/models/{name} is missing; the zip lacks that "
                "bundled model (train it with scripts/train_default.py)",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
