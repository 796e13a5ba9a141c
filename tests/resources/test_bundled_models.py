"""The bundled models in resources/models/: their checksums, cards and leave-one-out tables,
and how ``segment`` checks and chooses them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from backend.core import paths
from backend.core.checkpoint import (
    InputSpec,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
    sha256_of,
)
from backend.core.errors import UserError
from backend.core.water_indices import ndwi_water_mask
from backend.datasets.synthetic import generate_scene, make_demo_scene
from backend.models.loading import load_model
from tests.band_names import MODEL_METHOD

# --- Checksum check --------------------------------------------------------------------


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    from backend.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", width=0.0625)
    ckpt = build_checkpoint(model, "unet", {"width": 0.0625}, InputSpec())
    ckpt["torch_version"] = str(ckpt["torch_version"])  # TorchVersion is not weights_only-safe
    return save_checkpoint(ckpt, tmp_path / "tiny.pt")


def test_corrupted_model_is_refused_with_a_clear_error(tiny_checkpoint, tmp_path):
    good_sha = sha256_of(tiny_checkpoint)
    assert good_sha == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    read_checkpoint(tiny_checkpoint, good_sha)  # intact: accepted

    corrupt = tmp_path / "corrupt.pt"
    shutil.copyfile(tiny_checkpoint, corrupt)
    raw = bytearray(corrupt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the weights
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="corrupt.*SHA-256.*reinstall"):
        read_checkpoint(corrupt, good_sha)
    with pytest.raises(UserError, match="corrupt"):
        load_model(corrupt, good_sha)


# --- The bundled default model ---------------------------------------------------------

BUNDLED = [
    # (model, card, bands, spectral_indices of the architecture)
    pytest.param(
        "DEFAULT_MODEL",
        "MODEL_CARD.md",
        ["B2", "B3", "B4", "B8", "B11", "B12"],
        "anchored",
        id="default",
    ),
    pytest.param(
        "RGBN_MODEL", "MODEL_CARD-rgbn.md", ["B2", "B3", "B4", "B8"], "residual", id="rgbn"
    ),
]


def _bundled(name: str):
    path = getattr(paths, name)
    if not path.is_file():
        pytest.skip(f"bundled model {path.name} not built (scripts/train_default.py)")
    return path


@pytest.mark.parametrize(("name", "card_name", "bands", "mode"), BUNDLED)
def test_bundled_model_checksum_size_and_card(name, card_name, bands, mode):
    path = _bundled(name)
    assert path.stat().st_size < 20 * 1024 * 1024
    recorded = paths.bundled_sha256(path)
    assert recorded is not None and len(recorded) == 64
    assert sha256_of(path) == recorded
    card = (paths.MODELS_DIR / card_name).read_text()
    assert path.name in card and recorded in card
    for needed in ("Andria", "Sensors 23(9):4491", "Copernicus Sentinel", "NDWI", ", ".join(bands)):
        assert needed in card


def _train_default():
    """scripts/train_default.py, which trains these models and writes their cards."""
    path = Path(__file__).resolve().parents[2] / "scripts" / "train_default.py"
    spec = importlib.util.spec_from_file_location("train_default", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "card_name", "bands", "mode"), BUNDLED)
def test_the_card_is_its_template_filled_from_the_results_file_and_the_model(
    name, card_name, bands, mode
):
    """Byte for byte, so card, results and model cannot drift apart: change the template
    (MODEL_CARD-snowed.md.in) or the results file and rerun scripts/train_default.py
    --card-only, never the card by hand."""
    train_default = _train_default()
    path = _bundled(name)
    results = json.loads(train_default.results_path(paths.MODELS_DIR, path.stem).read_text())
    card = train_default.render_card(results, path)
    assert card == (paths.MODELS_DIR / card_name).read_text()


def test_a_new_run_keeps_the_cards_text_and_writes_the_rest_from_the_model(tmp_path):
    """A run records its command in a results file that starts from the bundled model's with
    the same kind of bands (hand-written text and search log), without the parts kept as the
    old card published them; the architecture is then written from the model."""
    train_default = _train_default()
    shutil.copyfile(_bundled("RGBN_MODEL"), tmp_path / "waterseg-test.pt")
    where = ["--dest", str(tmp_path), "--name", "waterseg-test", "--card", "CARD.md"]
    args = train_default.parse_args(
        [*where, "--bands", "B2,B3,B4,B8", "--spectral-indices", "residual"]
    )
    results = json.loads(train_default.write_results(args).read_text())
    bundled = json.loads((paths.MODELS_DIR / "results-rgbn.json").read_text())
    assert results["command"] == train_default.command_line(args)
    assert "--bands B2,B3,B4,B8 --name waterseg-test --card CARD.md" in results["command"]
    assert results["search"] == bundled["search"] and results["card"] == bundled["card"]
    assert "as_published" in bundled and "as_published" not in results
    assert train_default.main(["--card-only", *where, "--threads", "0"]) == 0
    card = (tmp_path / "CARD.md").read_text()
    assert "of every band pair (6 pairs):" in card  # written from the model, not as published
    assert '`spectral_indices="residual"`' in card  # the option as this checkpoint stores it
    assert "**B2, B3, B4, B8** of Sentinel-2" in card and results["command"] in card


@pytest.mark.parametrize(("name", "card_name", "bands", "mode"), BUNDLED)
def test_bundled_model_loads_weights_only_and_segments_a_tile(name, card_name, bands, mode):
    path = _bundled(name)
    model, spec, meta = load_model(path, paths.bundled_sha256(path))
    assert spec.bands == bands and spec.scale == pytest.approx(1e-4)
    assert meta["format"] == "waterseg-checkpoint"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert all(
        v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point()
    )

    # a synthetic tile: sea on the left, vegetation on the right
    scene = generate_scene(size=256, seed=0)
    image = scene.image[[scene.bands.index(b) for b in spec.bands]]
    x = torch.from_numpy(spec.normalise(image))[None]
    with torch.no_grad():
        out = model(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (1, 2, 256, 256) and torch.isfinite(logits).all()
    pred = logits.argmax(1)[0].numpy()
    valid = scene.truth != 255
    assert (pred[valid] == scene.truth[valid]).mean() > 0.9


def test_segment_checks_the_bundled_model_checksum(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """`segment` without --model verifies the bundled model's SHA-256 (exit 2 if corrupt)."""
    from backend import cli

    bundled = tmp_path / "models" / "waterseg-default.pt"
    bundled.parent.mkdir()
    shutil.copyfile(tiny_checkpoint, bundled)
    sha_file = bundled.with_name(bundled.name + ".sha256")
    sha_file.write_text(f"{sha256_of(bundled)}  {bundled.name}\n")
    monkeypatch.setattr(paths, "MODELS_DIR", bundled.parent)
    image, _ = make_demo_scene(tmp_path / "scene", size=256)

    argv = ["segment", str(image), "--out-dir", str(tmp_path / "ok"), "--progress", "none"]
    argv += MODEL_METHOD
    assert cli.main(argv) == 0  # intact: runs
    assert (tmp_path / "ok" / "synthetic_s2_scene_water.tif").is_file()

    raw = bytearray(bundled.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bundled.write_bytes(bytes(raw))
    capsys.readouterr()
    argv = ["segment", str(image), "--out-dir", str(tmp_path / "bad"), "--progress", "none"]
    argv += MODEL_METHOD
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "SHA-256" in err and "Traceback" not in err
    assert not list((tmp_path / "bad").glob("*.tif"))


@pytest.mark.parametrize(("name", "card_name", "bands", "mode"), BUNDLED)
def test_bundled_model_records_a_real_leave_one_out_table(
    snowed_sample, name, card_name, bands, mode
):
    """The bundled model's architecture and its stored leave-one-out table: the table holds
    the real NDWI scores of the real held-out samples, and the card prints the same means."""
    from backend.datasets.snowed import band_indices
    from backend.learning.metrics import ConfusionMatrix
    from backend.models import upgrade_kwargs

    path = _bundled(name)
    ckpt = read_checkpoint(path, paths.bundled_sha256(path))
    # written before SpectralOptions: the old flat key, read by upgrade_kwargs
    assert ckpt["arch"]["kwargs"].get("spectral_indices") == mode
    assert upgrade_kwargs(ckpt["arch"]["kwargs"])["spectral"]["mode"] == mode
    loo = ckpt["metrics"]["loo"]
    assert sorted(loo) == sorted(p.name for p in snowed_sample.iterdir() if p.is_dir())
    for sample_id, result in loo.items():
        image = np.load(snowed_sample / sample_id / "sample_2A.npy")[:, :, band_indices(bands)]
        label = np.load(snowed_sample / sample_id / "label.npy")
        cm = ConfusionMatrix()
        cm.update(ndwi_water_mask(image.transpose(2, 0, 1), bands=bands, nodata_value=None), label)
        assert cm.compute()["iou_mean"] == pytest.approx(result["ndwi"]["iou_mean"], abs=1e-9)
    model_mean = np.mean([r["model"]["iou_mean"] for r in loo.values()])
    ndwi_mean = np.mean([r["ndwi"]["iou_mean"] for r in loo.values()])
    assert model_mean > ndwi_mean  # what the card claims, on these five folds (seed 0)
    card = (paths.MODELS_DIR / card_name).read_text()
    assert f"| {100 * model_mean:.2f} |" in card and f"| {100 * ndwi_mean:.2f} |" in card
    assert "Seed variance" in card and "Configurations tried" in card
    if "B11" in bands:  # the SWIR model also beats MNDWI, which uses the same bands
        mndwi_mean = np.mean([r["mndwi"]["iou_mean"] for r in loo.values()])
        assert model_mean > mndwi_mean + 0.02


# --- Choosing a bundled model from the input's bands ----------------------------------

needs_both_bundled = pytest.mark.skipif(
    not (paths.DEFAULT_MODEL.is_file() and paths.RGBN_MODEL.is_file()),
    reason="bundled models not built (scripts/train_default.py)",
)


def _four_band_copy(src_path, dst_path, names=("B2", "B3", "B4", "B8")):
    """Write the bands ``names`` of a described raster to a new GeoTIFF (same grid)."""
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "count": len(names)}
        order = [src.descriptions.index(n) + 1 for n in names]
        data = src.read(order)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, name)
    return dst_path


@needs_both_bundled
@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("six", [], "waterseg-default.pt"),  # B11, B12 described: the SWIR default
        ("four", [], "waterseg-rgbn.pt"),  # only the 10 m bands
        ("six", ["--bands", "1,2,3,4"], "waterseg-rgbn.pt"),  # four bands chosen by hand
    ],
)
def test_segment_without_model_picks_the_bundled_model_the_bands_allow(
    tmp_path, capsys, kind, extra, expected
):
    from backend import cli

    image, _ = make_demo_scene(tmp_path / "scene", size=128)
    if kind == "four":
        image = _four_band_copy(image, tmp_path / "four.tif")
    out = tmp_path / "out"
    argv = ["segment", str(image), "--out-dir", str(out), "--progress", "text", *extra]
    argv += MODEL_METHOD
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    chosen = [line for line in err.splitlines() if "model: bundled model" in line]
    assert len(chosen) == 1 and expected in chosen[0], err
    if expected == "waterseg-rgbn.pt" and not extra:
        assert "the raster has no B11, B12" in chosen[0]  # and says why not the default
    with rasterio.open(out / f"{image.stem}_water.tif") as src:
        assert src.read(1).any()


def test_a_bundled_file_named_with_model_is_checksum_checked_too(
    tiny_checkpoint, tmp_path, monkeypatch
):
    """--model pointing at a bundled file (the plugin does this) still verifies its SHA-256."""
    from backend.segment.cli import load_checkpoint_model

    bundled = tmp_path / "waterseg-rgbn.pt"
    shutil.copyfile(tiny_checkpoint, bundled)
    sha_file = tmp_path / "waterseg-rgbn.pt.sha256"
    sha_file.write_text("0" * 64 + "  waterseg-rgbn.pt\n")  # a record that does not match
    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path)
    with pytest.raises(UserError, match="SHA-256"):
        load_checkpoint_model(bundled)
    copy = tmp_path / "elsewhere.pt"  # the same bytes outside the bundle: no record, loads
    shutil.copyfile(tiny_checkpoint, copy)
    assert load_checkpoint_model(copy)[3] == copy


def test_default_model_decision_does_not_depend_on_brightness(snowed_sample):
    """Haze, illumination and sensor gain scale all bands alike; the anchored default model
    decides on band ratios, so its IoU on a real sample hardly moves when the image is made
    half or one and a half times as bright (the 4-band model loses about 3 points at 0.5x on
    this sample's bright beach)."""
    from backend.datasets.snowed import band_indices
    from backend.learning.metrics import ConfusionMatrix

    path = _bundled("DEFAULT_MODEL")
    model, spec, _ = load_model(path, paths.bundled_sha256(path))
    image = np.load(snowed_sample / "sample_0001" / "sample_2A.npy")
    label = np.load(snowed_sample / "sample_0001" / "label.npy")
    raw = image[:, :, band_indices(spec.bands)].transpose(2, 0, 1).astype(np.float64)
    ious = {}
    for factor in (0.5, 1.0, 1.5):
        scaled = np.clip(np.rint(raw * factor), 1, 65535).astype(np.uint16)
        with torch.inference_mode():
            logits = model(torch.from_numpy(spec.normalise(scaled))[None])
        cm = ConfusionMatrix()
        cm.update(logits.argmax(1)[0].numpy().astype(np.uint8), label)
        ious[factor] = cm.compute()["iou_mean"]
    assert ious[1.0] > 0.95
    assert abs(ious[0.5] - ious[1.0]) < 0.005 and abs(ious[1.5] - ious[1.0]) < 0.005
