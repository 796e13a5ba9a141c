"""Where the backend finds its bundled files.

Two models are bundled in ``resources/models/`` (each with ``<file>.sha256`` beside it):

- :data:`DEFAULT_MODEL`, bands B2 B3 B4 B8 B11 B12: the default whenever the input has the
  SWIR bands B11 and B12 (the more accurate model; ``MODEL_CARD.md``);
- :data:`RGBN_MODEL`, bands B2 B3 B4 B8: for rasters with only the 10 m bands
  (``MODEL_CARD-rgbn.md``).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = REPO_ROOT / "resources"
MODELS_DIR = RESOURCES / "models"
DEFAULT_MODEL = MODELS_DIR / "waterseg-default.pt"
DEFAULT_MODEL_SHA256 = MODELS_DIR / "waterseg-default.pt.sha256"
RGBN_MODEL = MODELS_DIR / "waterseg-rgbn.pt"
RGBN_MODEL_SHA256 = MODELS_DIR / "waterseg-rgbn.pt.sha256"


def _bundled() -> list[tuple[Path, Path]]:
    """(model, its SHA-256 record) in order of preference (read at call time: tests patch)."""
    return [(DEFAULT_MODEL, DEFAULT_MODEL_SHA256), (RGBN_MODEL, RGBN_MODEL_SHA256)]


def bundled_models() -> list[Path]:
    """The bundled models in order of preference: the default first."""
    return [model for model, _ in _bundled()]


def bundled_sha256(path: Path) -> str | None:
    """The SHA-256 recorded beside a bundled model (``path`` may be a link to one); None for
    any other file or without a record."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for model, record in _bundled():
        if resolved == model.resolve():
            return _read(record)
    return None


def _read(sha_file: Path) -> str | None:
    try:
        return sha_file.read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return None
