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


def bundled_models() -> list[Path]:
    """The bundled models in order of preference (read at call time, so tests can patch)."""
    return [DEFAULT_MODEL, RGBN_MODEL]


def _sha_file(model: Path) -> Path:
    if model == DEFAULT_MODEL:
        return DEFAULT_MODEL_SHA256
    if model == RGBN_MODEL:
        return RGBN_MODEL_SHA256
    return model.with_name(model.name + ".sha256")


def is_bundled(path: Path) -> bool:
    """Whether ``path`` is one of the bundled model files (after resolving links)."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return any(resolved == m.resolve() for m in bundled_models())


def bundled_sha256(path: Path) -> str | None:
    """The SHA-256 recorded beside a bundled model; None for other files or without a record."""
    if not is_bundled(path):
        return None
    model = next(m for m in bundled_models() if Path(path).resolve() == m.resolve())
    return _read(_sha_file(model))


def default_model_sha256() -> str | None:
    """The SHA-256 recorded beside the default model, or None if no record exists."""
    return _read(DEFAULT_MODEL_SHA256)


def _read(sha_file: Path) -> str | None:
    try:
        return sha_file.read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return None
