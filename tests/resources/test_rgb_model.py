"""The bundled RGB model: loads weights-only, takes red/green/blue 8-bit, finds a lake."""

from pathlib import Path

import numpy as np
import pytest

from backend.core.checkpoint import sha256_of
from backend.models.loading import load_model
from backend.segment.pipeline import predict_array

MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "waterseg-rgb.pt"

pytestmark = pytest.mark.skipif(
    not MODEL.is_file(), reason=f"{MODEL.name} not bundled yet (run scripts/train_rgb.py)"
)


def lake_scene(size: int = 320, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3, size, size) true colour: a dark blue-green lake disk on a patchwork of green
    fields and brown soil, with pixel noise; and the disk as bool (size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    lake = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    green, brown = np.array([75, 105, 55]), np.array([140, 115, 85])
    patches = rng.random((size // 32 + 1, size // 32 + 1)) < 0.5
    field = np.repeat(np.repeat(patches, 32, 0), 32, 1)[:size, :size]
    rgb = np.where(field[None], green[:, None, None], brown[:, None, None]).astype(np.float32)
    rgb[:, lake] = np.array([25, 45, 60], np.float32)[:, None]
    rgb += rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), lake


def test_bundled_rgb_model_is_true_colour_8bit():
    model, spec, meta = load_model(MODEL)  # torch.load(weights_only=True) inside
    assert spec.bands == ["red", "green", "blue"]
    assert spec.scale == pytest.approx(1 / 255) and spec.offset == 0.0
    assert spec.tile_size == 256
    assert meta["arch"]["kwargs"]["in_channels"] == 3
    assert sum(p.numel() for p in model.parameters()) > 0
    recorded = (MODEL.parent / f"{MODEL.name}.sha256").read_text().split()
    assert recorded == [sha256_of(MODEL), MODEL.name]


def test_bundled_rgb_model_finds_a_lake_on_farmland():
    model, spec, _ = load_model(MODEL)
    rgb, lake = lake_scene()
    prob = predict_array(spec.normalise(rgb), model, tile=spec.tile_size, overlap=0.25)
    water = prob >= 0.5
    assert water[lake].mean() > 0.9, f"only {water[lake].mean():.2f} of the lake called water"
    assert (~water[~lake]).mean() > 0.9, f"{water[~lake].mean():.2f} of the land called water"


def test_bundled_rgb_model_is_the_one_its_results_describe():
    """The checkpoint names the results file of its cross-validation; that file says it was
    bundled, with this file's SHA-256, and that its CV mean beats the baseline it names."""
    import json

    _, _, meta = load_model(MODEL)
    metrics = meta["metrics"]
    results = json.loads((MODEL.parents[2] / metrics["cv_results"]).read_text())
    assert results["final"]["sha256"] == sha256_of(MODEL)
    mean = results["cross_validation"]["summary"]["mean_over_acquisitions"]["iou_mean"]
    assert metrics["cv_mean_over_acquisitions"]["iou_mean"] == pytest.approx(mean)
    if "baseline" in results:  # v2: bundled only because it beat v1 over complete folds
        assert results["bundled"] is True
        assert mean > results["baseline"]["mean_over_acquisitions"]["iou_mean"]
        assert results["cross_validation"]["folds_done"] == len(
            results["cross_validation"]["held_out"]
        )
