"""scripts/train_ms.py: the 5-band model's shapes with and without NIR/SWIR, its start from a
3-band RGB model, the pseudo-labels of the engine's adaptive index on a generated scene, and a
short training run on generated data (seconds; no weights file needed)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.models import create_model
from backend.models.loading import load_model
from tests.backend.rasters import write_raster

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "train_ms.py"
_SPEC = importlib.util.spec_from_file_location("train_ms", _PATH)
train_ms = importlib.util.module_from_spec(_SPEC)
sys.modules["train_ms"] = train_ms  # its dataclasses look their module up
_SPEC.loader.exec_module(train_ms)


def _small(**changes) -> "train_ms.Config":
    base = {"width": 0.125, "init": "random", "crop": 64, "batch_size": 2, "steps": 3}
    return train_ms.Config(**{**base, "warmup_steps": 1, **changes})


def test_the_model_takes_five_bands_with_or_without_nir_and_swir():
    torch.manual_seed(0)
    model = train_ms.build_model(_small()).eval()
    x = torch.randn(2, len(train_ms.BANDS), 64, 64)
    missing = x.clone()
    missing[:, [train_ms.NIR, train_ms.SWIR]] = 0.0  # missing = 0 after normalisation
    with torch.no_grad():
        assert model(x).shape == (2, 2, 64, 64)
        assert model(missing).shape == (2, 2, 64, 64)
    assert train_ms.BANDS == ["B4", "B3", "B2", "B8", "B11"]


def test_starting_from_an_rgb_model_keeps_its_rgb_path_intact():
    torch.manual_seed(0)
    rgb = create_model("lite0_unet", width=0.125, in_channels=3).eval()
    five = create_model("lite0_unet", width=0.125, in_channels=5)
    train_ms.init_from_rgb(five, rgb.state_dict())
    five.eval()
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(five(x), rgb(x[:, :3]))  # NIR/SWIR add nothing yet
    stem = five.encoder.stem.conv.weight
    assert not stem[:, 3:].any() and torch.equal(stem[:, :3], rgb.encoder.stem.conv.weight)


def test_the_rgb_channels_are_normalised_as_the_rgb_model_sees_a_render():
    spec = train_ms.Config().input_spec()
    white = round(train_ms.RGB_WHITE * 1e4)  # 0.3 reflectance: 255 in a render
    raw = np.array([0, 0, 0, 2000, 1700], np.uint16).reshape(5, 1, 1)
    raw[:3] = white
    x = spec.normalise(raw).ravel()
    np.testing.assert_allclose(x[:3], (255 - 127) / 128, atol=1e-5)
    np.testing.assert_allclose(x[3:], 0.0, atol=1e-5)  # NIR and SWIR at their means


def test_pseudo_labels_keep_confident_pixels_and_ignore_the_rest():
    distance = np.array([-1.0, -0.2, -0.1, 0.0, 0.1, 0.2, 1.0, 0.5, 0.5], np.float32)
    prob = (1 / (1 + np.exp(-10 * distance))).astype(np.float32)
    prob[-2] = np.nan  # nodata
    mask = (prob >= 0.5).astype(np.uint8)
    mask[-1] = 255  # cloud
    labels = train_ms.pseudo_labels(prob[None], mask[None], margin=0.15)[0]
    assert labels.tolist() == [0, 0, 255, 255, 255, 1, 1, 255, 255]


def _bank_scene(h: int = 96, w: int = 96) -> tuple[np.ndarray, slice, tuple[slice, slice]]:
    """uint16 (6, h, w) B2 B3 B4 B8 B11 QA60: land on the left, water on the right, a linear
    ramp of mixed pixels between (columns 40-55), an opaque cloud flagged in QA60 on the land."""
    rng = np.random.default_rng(0)
    land = np.array([400, 900, 1000, 3000, 2500], np.float64)
    water = np.array([300, 800, 500, 300, 200], np.float64)
    f = np.clip((np.arange(w) - 40) / 15, 0, 1)  # water fraction per column
    bands = land[:, None, None] * (1 - f) + water[:, None, None] * f
    bands = np.broadcast_to(bands, (5, h, w)) + rng.normal(0, 15, (5, h, w))
    cloud = (slice(10, 26), slice(8, 24))
    qa60 = np.zeros((1, h, w))
    qa60[0][cloud] = 1024
    bands[(slice(None), *cloud)] = 4000
    return np.concatenate([bands, qa60]).astype(np.uint16), slice(40, 56), cloud


def test_engine_pseudo_labels_on_a_generated_scene(tmp_path):
    scene, ramp, cloud = _bank_scene()
    tif = write_raster(
        tmp_path / "2020-01-01.tif", scene, descriptions=["B2", "B3", "B4", "B8", "B11", "QA60"]
    )
    labels = train_ms.engine_pseudo_labels([tif], tmp_path / "out", margin=0.15)["2020-01-01"]
    assert labels.shape == scene.shape[1:]
    assert (labels[cloud] == 255).all()  # the engine's cloud mask: ignored
    land = np.ones(labels.shape, bool)
    land[:, ramp.start - 2 :] = False
    land[cloud] = False
    assert (labels[land] == 0).all()  # far from the threshold: labelled
    assert (labels[:, ramp.stop + 2 :] == 1).all()
    in_ramp = labels[:, ramp]
    assert (in_ramp == 255).any() and (in_ramp == 0).any() and (in_ramp == 1).any()
    ignored = labels == 255
    ignored[cloud] = False
    assert not ignored[:, : ramp.start - 2].any() and not ignored[:, ramp.stop + 2 :].any()


def _date(seed: int) -> "train_ms.LabelledDate":
    """A generated 5-band date (96 px): land, a lake, a ring of ignored pixels at its edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    r2 = (yy - 48) ** 2 + (xx - 40) ** 2
    lake = r2 < 25**2
    land = np.array([1000, 900, 700, 3000, 2500])[:, None, None]
    water = np.array([500, 800, 900, 300, 200])[:, None, None]
    raw = np.where(lake, water, land) + rng.normal(0, 20, (5, 96, 96))
    labels = lake.astype(np.uint8)
    labels[np.abs(np.sqrt(r2) - 25) < 1.5] = train_ms.IGNORE
    return train_ms.LabelledDate(
        f"site/{seed}", raw.astype(np.uint16), labels, np.zeros(5, np.float32)
    )


def _esw_scene(seed: int) -> "train_ms.train_rgb.Scene":
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96]
    lake = (yy - 40) ** 2 + (xx - 50) ** 2 < 20**2
    rgb = np.where(
        lake, np.array([20, 40, 70])[:, None, None], np.array([80, 110, 60])[:, None, None]
    )
    rgb = np.clip(rgb + rng.normal(0, 5, rgb.shape), 0, 255).astype(np.uint8)
    return train_ms.train_rgb.Scene(f"e{seed}_S1", f"e{seed}", rgb, lake.astype(np.uint8))


def test_a_short_training_run_writes_a_checkpoint_the_engine_reads(tmp_path):
    cfg = _small(esw_fraction=0.5)
    torch.manual_seed(0)
    before = train_ms.build_model(cfg).state_dict()
    model = train_ms.train_model([_date(0), _date(1)], [_esw_scene(2)], cfg, "test")
    assert not model.training
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.stem") for k in changed)
    assert any(k.startswith("decoder.") for k in changed)
    path = tmp_path / "ms.pt"
    train_ms.save_checkpoint(train_ms.make_checkpoint(model, cfg, {"train": ["site"]}, {}), path)
    loaded, spec, meta = load_model(path)  # torch.load(weights_only=True) inside
    assert meta["arch"] == {"name": "lite0_unet", "kwargs": cfg.arch_kwargs()}
    assert spec.bands == train_ms.BANDS and spec.scale == pytest.approx(1e-4)
    x = spec.normalise(_date(3).raw)
    prob = train_ms.predict_array(x, loaded, tile=64, batch_size=2)
    assert prob.shape == (96, 96) and np.isfinite(prob).all()


def test_the_verdict_needs_every_table():
    def site(model_fw, auto_fw):
        s = {"false_water_mean": 0.0, "missed_water_mean": 0.01}
        return {
            "summary": {
                "model": {**s, "false_water_mean": model_fw},
                "auto": {**s, "false_water_mean": auto_fw},
            }
        }

    def snowed(model, auto):
        return {"model": {"mean": {"iou_mean": model}}, "auto": {"mean": {"iou_mean": auto}}}

    win = {"sen2dwater": {"tevere": site(0.01, 0.02)}, "snowed": snowed(0.96, 0.95)}
    assert train_ms.verdict(win)["wins_all"]
    lose = {"sen2dwater": {"tevere": site(0.03, 0.02)}, "snowed": snowed(0.96, 0.95)}
    v = train_ms.verdict(lose)
    assert not v["wins_all"] and v["checks"] == {
        "tevere false water": False,
        "tevere missed water": True,
        "snowed iou mean": True,
    }


def test_painted_strokes_are_water_spectra_labelled_water_with_an_ignored_ring():
    rng = np.random.default_rng(0)
    raw = np.full((5, 64, 64), 3000.0, np.float32)  # all land
    labels = np.zeros((64, 64), np.int64)
    water = np.array([[500, 800, 900, 300, 200], [520, 790, 880, 310, 190]], np.float32)
    train_ms.paint_strokes(raw, labels, water, rng)
    core, ring = labels == 1, labels == train_ms.IGNORE
    assert core.sum() > 64 and ring.any() and (labels[~core & ~ring] == 0).all()
    assert np.isin(raw[3][core], water[:, 3]).all()  # whole water spectra, pixel by pixel
    assert (raw[3][ring] > 300).all() and (raw[3][ring] < 3000).all()  # half water, half land
    assert (raw[3][~core & ~ring] == 3000).all()
