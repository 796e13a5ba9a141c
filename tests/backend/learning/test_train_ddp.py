"""DistributedDataParallel: 2 CPU processes (gloo) under torchrun on the real samples."""

import json
import os
import subprocess

import pytest

from backend.core.checkpoint import read_checkpoint
from backend.learning.evaluate import evaluate_checkpoint
from backend.learning.train import _spawn_torchrun


def test_nproc_respawns_under_torchrun(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    assert _spawn_torchrun(2, ["--data", "D", "--nproc", "2", "--epochs", "1", "--nproc=3"]) == 0
    cmd = calls[0]
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert cmd[6:] == ["backend", "train", "--data", "D", "--epochs", "1"]


@pytest.mark.slow
def test_two_gloo_processes_give_one_process_metrics(
    snowed_sample, tmp_path, backend_python, repo_root
):
    split = {
        "seed": 0,
        "train": ["sample_0001", "sample_0002", "sample_0003"],
        "val": ["sample_0004", "sample_0006"],  # one per process: the counts must be summed
        "test": [],
    }
    (tmp_path / "split.json").write_text(json.dumps(split))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [backend_python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "backend", "train", "--data", str(snowed_sample), "--model", "unet", "--width",
         "0.0625", "--loss", "ce+sd", "--out", str(out), "--epochs", "2", "--batch-size", "2",
         "--crop", "64", "--device", "cpu", "--split-file", str(tmp_path / "split.json")],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "DistributedDataParallel over 2 processes (gloo)" in run.stdout
    assert run.stdout.count("epoch 2/2") == 1  # only rank 0 logs
    ckpt = read_checkpoint(out / "last.pt")
    val = ckpt["metrics"]["val"]
    assert val["samples"] == 2 and val["pixels"] == 2 * 64 * 64
    # the same checkpoint evaluated by ONE process on the same centre crops
    single = evaluate_checkpoint(out / "last.pt", snowed_sample, "val", crop=64, baseline=False)
    assert single["metrics"]["pixels"] == val["pixels"]
    for key in ("f1_water", "iou_water", "iou_land", "iou_mean", "accuracy"):
        assert single["metrics"][key] == pytest.approx(val[key], abs=1e-12), key
