"""Where the backend finds its bundled files.

The bundled models live in ``resources/models/`` (each with ``<file>.sha256`` beside it); which
ones there are, their bands and when each is used is one table, ``bundled_models`` in
``resources/contract.json`` (:func:`backend.core.contract.bundled_models`); the choice itself is
:func:`backend.segment.plan.choose_bundled_model`. The model cards are ``MODEL_CARD*.md``.
"""

from pathlib import Path

from backend.core.contract import bundled_models as bundled_table

REPO_ROOT = Path(__file__).resolve().parents[2]
RESOURCES = REPO_ROOT / "resources"
MODELS_DIR = RESOURCES / "models"
DEFAULT_MODEL = MODELS_DIR / "waterseg-default.pt"
RGBN_MODEL = MODELS_DIR / "waterseg-rgbn.pt"


def bundled_file(key: str) -> Path:
    """The file of bundled model ``key`` ("default", "rgbn", "rgb"), under :data:`MODELS_DIR`
    as it is at call time (tests point it elsewhere)."""
    for entry in bundled_table():
        if entry.key == key:
            return MODELS_DIR / entry.file
    raise KeyError(f"no bundled model {key!r}")


def bundled_models() -> list[Path]:
    """The bundled model files in order of preference (present or not)."""
    return [MODELS_DIR / entry.file for entry in bundled_table()]


def bundled_key(path: Path) -> str | None:
    """The key of the bundled model ``path`` is (or links to), else None."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for entry in bundled_table():
        if resolved == (MODELS_DIR / entry.file).resolve():
            return entry.key
    return None


def bundled_sha256(path: Path) -> str | None:
    """The SHA-256 recorded beside a bundled model (``path`` may be a link to one); None for
    any other file or without a record."""
    key = bundled_key(path)
    if key is None:
        return None
    record = bundled_file(key).with_name(bundled_file(key).name + ".sha256")
    try:
        return record.read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return None
