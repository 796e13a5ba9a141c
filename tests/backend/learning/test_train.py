"""Training, resume, evaluation and Table I on the five real SNOWED samples.

Tiny widths and small crops keep the default suite fast; full-model runs are marked slow.
"""

import csv
import json
import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from backend.core.checkpoint import read_checkpoint
from backend.core.errors import UserError
from backend.datasets import SNOWED, read_split
from backend.learning.evaluate import evaluate_checkpoint, format_text
from backend.learning.metrics import ConfusionMatrix
from backend.learning.train import (
    MODEL_DEFAULTS,
    TrainConfig,
    parse_width,
    rng_state,
    set_rng_state,
    train,
)
from backend.models import list_models
from backend.models.loading import load_model

TINY = {"model": "unet", "width": 0.0625, "loss": "ce+sd", "crop": 32, "batch_size": 2}


def _config(data, out, **kw):
    return TrainConfig(data=str(data), out=str(out), **{**TINY, "quiet": True, **kw})


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _metric_rows(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(path)]


def _assert_same_weights(a, b):
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"weights differ at {k}"


def test_table2_defaults_and_width_parsing(tmp_path):
    assert MODEL_DEFAULTS["senet"] == (1000, 4, 1e-5)
    cfg = TrainConfig(data="x", model="deepunet").resolved()
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (100, 11, 1e-4)
    cfg = TrainConfig(data="x", model="munet", epochs=3, lr=0.5).resolved()
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (3, 10, 0.5)
    assert parse_width("HALF") == "half" and parse_width("0.25") == 0.25
    with pytest.raises(UserError, match="--width 'wide'"):
        parse_width("wide")
    with pytest.raises(UserError, match="unknown SNOWED band"):
        TrainConfig(data="x", bands=["B2", "B13"]).resolved()


def test_parser_options_are_the_config_fields():
    from dataclasses import fields

    from backend.learning.train import build_parser, cli_fields, config_from_args

    parser = build_parser()
    dests = [a.dest for a in parser._actions if a.dest != "help"]
    python_only = {"loss_kwargs", "split"}
    names = [f.name for f in fields(TrainConfig) if f.name not in python_only]
    assert [f.name for f in cli_fields()] == names
    assert sorted(dests) == sorted([*names, "nproc"])
    flags = {s for a in parser._actions for s in a.option_strings}
    assert {"--data", "--batch-size", "--no-amp", "--augment", "--no-augment", "--nproc"} <= flags
    assert "--amp" not in flags and "--loss-kwargs" not in flags and "--split" not in flags
    with pytest.raises(SystemExit):  # --data and --out are required
        parser.parse_args(["--data", "D"])
    # the defaults are the dataclass's, and every option lands in its field
    assert config_from_args(parser.parse_args(["--data", "D", "--out", "O"])) == TrainConfig(
        data="D", out="O"
    )
    args = parser.parse_args(
        ["--data", "D", "--out", "O", "--bands", "B3, b8,", "--no-amp", "--no-augment",
         "--brightness", "0.5,2", "--anchor-bands", "B3,B11", "--spectral-indices",
         "--epochs", "3", "--lr", "0.01", "--width", "0.25", "--nproc", "2", "--quiet"]
    )  # fmt: skip
    assert args.nproc == 2
    cfg = config_from_args(args)
    assert cfg.bands == ["B3", " b8"] and cfg.amp is False and cfg.augment is False
    assert cfg.brightness == [0.5, 2.0] and cfg.anchor_bands == ["B3", "B11"]
    assert cfg.spectral_indices is True and cfg.epochs == 3 and cfg.lr == 0.01
    assert cfg.width == "0.25" and cfg.quiet and cfg.resolved().width == 0.25


def test_rng_state_survives_weights_only_save(tmp_path):
    import random

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_train_writes_self_describing_checkpoints(snowed_sample, tmp_path):
    best = train(_config(snowed_sample, tmp_path / "run", epochs=2))
    out = tmp_path / "run"
    assert best == out / "best.pt"
    ckpt = read_checkpoint(out / "last.pt")  # weights_only=True inside
    assert ckpt["arch"] == {
        "name": "unet",
        "kwargs": {"width": 0.0625, "in_channels": 4, "num_classes": 2, "heads": 2},
    }
    assert ckpt["bands"] == ["B2", "B3", "B4", "B8"] and ckpt["scale"] == 1e-4
    assert ckpt["tile_size"] == 32  # the training crop: the one tile-size setting
    assert ckpt["classes"] == ["land", "water"] and ckpt["loss"] == "ce+sd"
    assert ckpt["epoch"] == 2 and "optimizer" in ckpt and "rng" in ckpt
    assert ckpt["config"]["batch_size"] == 2 and ckpt["config"]["lr"] == 1e-4
    split = read_split(out / "split.json")
    assert ckpt["split"] == split
    assert [len(split[k]) for k in ("train", "val", "test")] == [3, 1, 1]
    val = ckpt["metrics"]["val"]
    assert val["samples"] == 1 and val["pixels"] == 32 * 32
    assert set(val) >= {"f1_water", "iou_water", "iou_land", "iou_mean", "loss"}
    best_ckpt = read_checkpoint(out / "best.pt")
    assert "optimizer" not in best_ckpt
    rows = _rows(out / "log.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [int(r["best"]) for r in rows].count(1) >= 1
    row_best = next(r for r in rows if int(r["epoch"]) == best_ckpt["epoch"])
    assert float(row_best["val_iou_mean"]) == pytest.approx(
        best_ckpt["metrics"]["val"]["iou_mean"], abs=1e-6
    )
    # rebuilt model predicts exactly as the confusion matrix of the checkpoint says
    model, spec, _ = load_model(out / "best.pt")
    ds = SNOWED(snowed_sample, split["val"], spec.bands, spec)
    cm = ConfusionMatrix()
    with torch.no_grad():
        s = ds[0]
        x = s["image"][:, 112:144, 112:144].unsqueeze(0)  # the centre 32 x 32 crop
        cm.update(model(x)[0].argmax(1), s["mask"][112:144, 112:144].unsqueeze(0))
    assert cm.compute()["iou_mean"] == pytest.approx(
        best_ckpt["metrics"]["val"]["iou_mean"], nan_ok=True
    )


def test_resume_in_process_is_exact(snowed_sample, tmp_path):
    train(_config(snowed_sample, tmp_path / "full", epochs=3))
    train(_config(snowed_sample, tmp_path / "split", epochs=1))
    stale = tmp_path / "split" / ".last.pt.x1y2.tmp"  # as a SIGKILL during a save leaves
    stale.write_bytes(b"half a checkpoint")
    train(_config(snowed_sample, tmp_path / "split", epochs=3, resume=True))
    assert not stale.exists()
    _assert_same_weights(tmp_path / "full" / "last.pt", tmp_path / "split" / "last.pt")
    assert _metric_rows(tmp_path / "full" / "log.csv") == _metric_rows(
        tmp_path / "split" / "log.csv"
    )
    # a different seed really gives different weights (the identity above is not trivial)
    train(_config(snowed_sample, tmp_path / "seed1", epochs=1, seed=1))
    a = read_checkpoint(tmp_path / "split" / "last.pt")["state_dict"]
    b = read_checkpoint(tmp_path / "seed1" / "last.pt")["state_dict"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_refuses_to_overwrite_or_resume_a_different_run(snowed_sample, tmp_path):
    train(_config(snowed_sample, tmp_path / "run", epochs=1))
    with pytest.raises(UserError, match="already holds a training run.*--resume"):
        train(_config(snowed_sample, tmp_path / "run", epochs=1))
    with pytest.raises(UserError, match="loss='ce\\+sd', not 'ce'"):
        train(_config(snowed_sample, tmp_path / "run", epochs=2, loss="ce", resume=True))
    with pytest.raises(UserError, match="not a multiple of 16"):
        train(_config(snowed_sample, tmp_path / "odd", epochs=1, crop=40))
    with pytest.raises(UserError, match="no sample .* has a metadata.pkl"):
        train(_config(snowed_sample, tmp_path / "tiles", epochs=1, group_by_tile=True))


def test_evaluate_reads_back_checkpoints(snowed_sample, tmp_path):
    train(_config(snowed_sample, tmp_path / "run", epochs=1))
    ckpt = tmp_path / "run" / "best.pt"
    res = evaluate_checkpoint(ckpt, snowed_sample, "val", crop=32, baseline=False)
    stored = read_checkpoint(ckpt)["metrics"]["val"]
    for k in ("f1_water", "iou_water", "iou_land", "iou_mean"):
        a, b = res["metrics"][k], stored[k]
        assert (a is None and math.isnan(b)) or a == pytest.approx(b)
    full = evaluate_checkpoint(ckpt, snowed_sample, "all")
    assert full["samples"] == 5 and full["metrics"]["pixels"] == 5 * 256 * 256
    # the NDWI > 0 baseline on the five samples: 97.2 % IoU mean (measured)
    assert full["baseline_ndwi"]["iou_mean"] == pytest.approx(0.97213, abs=1e-4)
    text = format_text(full)
    assert "IoU mean" in text and "NDWI > 0" in text and "split all, 5 samples" in text


@pytest.mark.slow
def test_cli_train_and_evaluate_subprocess(snowed_sample, tmp_path, backend_python, repo_root):
    out = tmp_path / "cli"
    run = subprocess.run(
        [backend_python, "-m", "backend", "train", "--data", str(snowed_sample), "--model",
         "unet", "--width", "0.0625", "--loss", "ce", "--out", str(out), "--epochs", "1",
         "--batch-size", "3", "--crop", "32", "--device", "auto"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "device: cpu" in run.stdout
    ev = subprocess.run(
        [backend_python, "-m", "backend", "evaluate", str(out / "best.pt"), "--data",
         str(snowed_sample), "--split", "test", "--json"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["split"] == "test" and result["samples"] == 1
    assert set(result["metrics"]) >= {"f1_water", "iou_water", "iou_land", "iou_mean"}
    bad = subprocess.run(
        [backend_python, "-m", "backend", "train", "--data", str(tmp_path / "nope"), "--model",
         "unet", "--width", "half", "--loss", "ce", "--out", str(tmp_path / "x")],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "download SNOWED" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_each_model_reduces_its_training_loss(name, snowed_sample, tmp_path):
    crop = 128 if name == "deepunet" else 32  # DeepUNet's 7 poolings need multiples of 128
    cfg = _config(
        snowed_sample, tmp_path / name, model=name, width=0.0625, loss="ce+sd", crop=crop,
        epochs=6, batch_size=3, lr=3e-3, augment=False,
    )  # fmt: skip
    train(cfg)
    losses = [float(r["train_loss"]) for r in _rows(tmp_path / name / "log.csv")]
    assert losses[-1] < losses[0], losses


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(
    snowed_sample, tmp_path, backend_python, repo_root
):
    args = ["--data", str(snowed_sample), "--model", "unet", "--width", "0.125", "--loss",
            "seg+edge", "--epochs", "6", "--batch-size", "1", "--crop", "64", "--seed", "5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [backend_python, "-m", "backend", "train"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, *args, "--out", str(killed)], cwd=repo_root, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    epoch_at_kill = read_checkpoint(killed / "last.pt")["epoch"]
    assert 1 <= epoch_at_kill < 6, "the run finished before it could be killed"
    resumed = subprocess.run(
        [*cmd, *args, "--out", str(killed), "--resume"], cwd=repo_root, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    full = tmp_path / "full"
    once = subprocess.run(
        [*cmd, *args, "--out", str(full)], cwd=repo_root, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    _assert_same_weights(killed / "last.pt", full / "last.pt")
    _assert_same_weights(killed / "best.pt", full / "best.pt")
    assert _metric_rows(killed / "log.csv") == _metric_rows(full / "log.csv")
    a, b = read_checkpoint(killed / "last.pt"), read_checkpoint(full / "last.pt")
    assert json.dumps(a["metrics"], sort_keys=True) == json.dumps(b["metrics"], sort_keys=True)
    assert a["epoch"] == b["epoch"] == 6


@pytest.mark.slow
def test_table1_smoke_runs_end_to_end(snowed_sample, tmp_path, backend_python, repo_root):
    out = tmp_path / "table1"
    run = subprocess.run(
        [backend_python, "-m", "backend", "table1", "--data", str(snowed_sample), "--out",
         str(out), "--smoke"],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    table = (out / "table1.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 12
    assert "96.05" in table and "38.47" in table  # the paper's numbers, side by side
    result = json.loads((out / "table1.json").read_text())
    assert [r["no"] for r in result["rows"]] == list(range(1, 13))
    for r in result["rows"]:
        assert (out / r["run"] / "best.pt").is_file()
        assert r["ours"]["samples"] == 1


def test_spectral_indices_option_is_stored_and_rebuilt(snowed_sample, tmp_path):
    from backend.models.spectral import WithSpectralIndices

    out = tmp_path / "spectral"
    train(_config(snowed_sample, out, epochs=1, loss="ce", spectral_indices=True))
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["arch"]["kwargs"]["spectral"]["mode"] == "all"
    assert ckpt["config"]["spectral_indices"] is True
    model, _, _ = load_model(out / "best.pt")
    assert isinstance(model, WithSpectralIndices) and model.spectral.out_channels == 10
    # a run without the layer keeps the old arch kwargs exactly; resuming across them is refused
    with pytest.raises(UserError, match="spectral_indices=True, not False"):
        train(_config(snowed_sample, out, epochs=2, loss="ce", resume=True))


def test_the_index_layer_options_become_one_spectral_dict_of_the_arch_kwargs():
    from backend.learning.train import model_kwargs
    from backend.models import SpectralOptions, create_model

    bands = ["B2", "B3", "B4", "B8", "B11", "B12"]
    cfg = _config("D", "O", bands=bands, spectral_indices="ndwi-anchored")
    cfg.anchor_bound, cfg.anchor_bands = 0.5, ["b3", "B11"]
    kwargs = model_kwargs(cfg, heads=1)
    assert (
        kwargs["spectral"]
        == SpectralOptions("ndwi-anchored", index_pair=(1, 4), anchor_bound=0.5).to_dict()
    )
    assert create_model("unet", **kwargs).anchor_weight.nonzero().tolist() == [[7]]  # pair (1, 4)
    assert "spectral" not in model_kwargs(_config("D", "O"), heads=1)  # off: no key at all
    with pytest.raises(UserError, match="--anchor-bound needs --spectral-indices anchored"):
        model_kwargs(_config("D", "O", spectral_indices="residual", anchor_bound=0.5), heads=1)
    with pytest.raises(UserError, match="spectral anchor_bound must be positive"):
        model_kwargs(_config("D", "O", spectral_indices="anchored", anchor_bound=0.0), heads=1)


def test_brightness_option_is_checked_and_stored(snowed_sample, tmp_path):
    with pytest.raises(UserError, match="--brightness LO,HI"):
        train(_config(snowed_sample, tmp_path / "bad", epochs=1, brightness=[2.0, 1.0]))
    out = tmp_path / "bright"
    train(_config(snowed_sample, out, epochs=1, loss="ce", brightness=[0.5, 2]))
    assert read_checkpoint(out / "last.pt")["config"]["brightness"] == [0.5, 2.0]


def test_evaluate_without_a_checkpoint_says_how_to_get_one(tmp_path, backend_python, repo_root):
    r = subprocess.run(
        [backend_python, "-m", "backend", "evaluate", str(tmp_path / "runs" / "best.pt"),
         "--data", str(tmp_path)],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "checkpoint not found" in r.stderr and "make train" in r.stderr
    assert "--model" not in r.stderr  # evaluate has no --model option
