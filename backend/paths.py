"""Where the backend finds its bundled files."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESOURCES = REPO_ROOT / "resources"
MODELS_DIR = RESOURCES / "models"
DEFAULT_MODEL = MODELS_DIR / "waterseg-default.pt"
DEFAULT_MODEL_SHA256 = MODELS_DIR / "waterseg-default.pt.sha256"


def default_model_sha256() -> str | None:
    """The SHA-256 recorded beside the bundled model, or None if no record exists."""
    try:
        return DEFAULT_MODEL_SHA256.read_text().split()[0].strip().lower()
    except (OSError, IndexError):
        return None
