"""scripts/train_rgb.py: the v2 recipe's options, a short training run of the pretrained-encoder
model on generated scenes (seconds), and its checkpoint read back weights-only."""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.models.loading import load_model

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "train_rgb.py"
_SPEC = importlib.util.spec_from_file_location("train_rgb", _PATH)
train_rgb = importlib.util.module_from_spec(_SPEC)
sys.modules["train_rgb"] = train_rgb  # its dataclasses look their module up
_SPEC.loader.exec_module(train_rgb)


def test_versions_set_their_recipe_and_options_still_win():
    v1, _, _ = train_rgb.parse_args([])
    assert v1.arch == "unet" and not v1.pretrained and v1.p_scale == 0.0
    v2, out, _ = train_rgb.parse_args(["--version", "v2", "--steps", "7", "--no-final"])
    assert v2.arch == "lite0_unet" and v2.pretrained and v2.channels_last
    assert v2.steps == 7 and not v2.final and v2.cv
    assert out.results.name == "results-rgb-v2.json" and out.card.name == "MODEL_CARD-rgb-v2.md"
    _, elsewhere, _ = train_rgb.parse_args(["--version", "v2", "--results", "runs/x/r.json"])
    assert elsewhere.results == Path("runs/x/r.json") and elsewhere.card == Path("runs/x/r.md")
    spec = v2.input_spec()
    raw = np.array([0, 127, 255], np.uint8).reshape(3, 1, 1)
    np.testing.assert_allclose(spec.normalise(raw).ravel(), [-127 / 128, 0.0, 1.0], atol=1e-6)
    assert train_rgb.same_recipe(train_rgb.asdict(v2), train_rgb.asdict(replace(v2, folds=0)))
    assert not train_rgb.same_recipe(train_rgb.asdict(v1), train_rgb.asdict(v2))


def _scene(name: str, acquisition: str, seed: int) -> "train_rgb.Scene":
    """uint8 (3, 96, 96) green land with a dark blue lake disk, and its mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    lake = (yy - 48) ** 2 + (xx - 40) ** 2 < 25**2
    rgb = np.where(
        lake, np.array([20, 40, 70])[:, None, None], np.array([80, 110, 60])[:, None, None]
    )
    rgb = np.clip(rgb + rng.normal(0, 5, rgb.shape), 0, 255).astype(np.uint8)
    return train_rgb.Scene(name, acquisition, rgb, lake.astype(np.uint8))


def test_a_short_v2_training_run_writes_a_self_describing_checkpoint(tmp_path):
    cfg, _, _ = train_rgb.parse_args(
        ["--version", "v2", "--steps", "3", "--warmup-steps", "1", "--batch-size", "2",
         "--crop", "64", "--width", "0.125", "--no-pretrained", "--threads", "1"]
    )  # fmt: skip
    scenes = [_scene("a_S1", "a", 0), _scene("b_S1", "b", 1)]
    torch.manual_seed(0)
    before = train_rgb.build_model(cfg).state_dict()
    model = train_rgb.train_model(scenes, cfg, seed=0, tag="test")
    assert not model.training
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    ckpt = train_rgb.make_checkpoint(model, cfg, {"train": ["a_S1", "b_S1"]}, {}, half=True)
    path = tmp_path / "rgb-v2.pt"
    train_rgb.save_checkpoint(ckpt, path)
    loaded, spec, meta = load_model(path)  # torch.load(weights_only=True) inside
    assert meta["arch"]["name"] == "lite0_unet" and spec.bands == ["red", "green", "blue"]
    assert spec.scale == pytest.approx(1 / 255) and spec.mean == pytest.approx([127 / 255] * 3)
    prob = train_rgb.predict_scene(loaded, spec, scenes[0], replace(cfg, crop=64))
    assert prob.shape == (96, 96) and np.isfinite(prob).all()
