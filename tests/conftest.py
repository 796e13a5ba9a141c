"""Shared fixtures. QGIS runs headless (QT_QPA_PLATFORM=offscreen, set before QGIS starts)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SNOWED_SAMPLE = SHARED_DATA / "snowed-sample" / "SNOWED"
DEMO_SCENE = SHARED_DATA / "demo" / "s2_l1c_bracciano_2016-07-18.tif"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def backend_python() -> str:
    """The interpreter that runs the backend in subprocess tests (this venv's)."""
    return sys.executable


@pytest.fixture(scope="session")
def snowed_sample() -> Path:
    if not SNOWED_SAMPLE.is_dir():
        pytest.skip(f"real SNOWED samples not found at {SNOWED_SAMPLE}")
    return SNOWED_SAMPLE


@pytest.fixture(scope="session")
def demo_scene() -> Path:
    if not DEMO_SCENE.is_file():
        pytest.skip(f"demo scene not found at {DEMO_SCENE}")
    return DEMO_SCENE
