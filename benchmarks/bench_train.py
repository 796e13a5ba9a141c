"""Training throughput: samples per second per model, on this CPU and on CUDA when present.

``python -m benchmarks train`` (part of ``make bench``), or
``python -m benchmarks.bench_train [--models munet,unet] [--width half] [--steps 2]``.

Each measurement is the real training step of ``backend.learning.train`` -- forward, the L_Seg+Edge
loss (the paper's best) in fp32, backward, Adam step -- on random 256 x 256 x 4 inputs with
random labels (speed does not depend on the values), after one warm-up step. CPU: batch 2;
CUDA: the Table II batch size with bf16 autocast (fp16 where bf16 is missing), plus peak GPU
memory. Each line also gives the time of one epoch of the paper's 2730 training samples and
of the paper's whole schedule (Table II epochs), and a separate line measures the data
pipeline (reading + checking real SNOWED samples + flips/rot90), which must not be the
bottleneck.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from backend.datasets.augment import Augment
from backend.learning.train import MODEL_DEFAULTS, TrainSet, amp_settings
from backend.losses import create_loss
from backend.models import create_model, list_models

PAPER_TRAIN_SAMPLES = 2730
SNOWED_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared/data/snowed-sample/SNOWED"


def measure(
    name: str,
    device: torch.device,
    *,
    width: str | float = "half",
    batch: int = 2,
    size: int = 256,
    steps: int = 2,
    loss_name: str = "seg+edge",
) -> dict:
    """Time ``steps`` training steps of one model -> dict with samples_per_s, peak_mem_mb."""
    torch.manual_seed(0)
    criterion = create_loss(loss_name).to(device)
    model = create_model(name, width=width, heads=criterion.num_heads).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp_dtype, use_scaler = amp_settings(device, True)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    x = torch.rand(batch, 4, size, size, device=device) * 0.3
    y = (torch.rand(batch, size, size, device=device) > 0.5).long()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(x)
        out = tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()
        loss = criterion(out, y, x)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up (allocations, cuDNN autotuning)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - t0
    return {
        "model": name,
        "width": width,
        "device": str(device),
        "batch": batch,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": batch * steps / seconds,
        "peak_mem_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }


def measure_data(root: Path = SNOWED_SAMPLE, rounds: int = 4) -> float | None:
    """Samples per second of the training data pipeline on the real samples (None if absent)."""
    if not root.is_dir():
        return None
    from backend.datasets import SNOWED

    ds = TrainSet(SNOWED(root), Augment(), None, seed=0)
    t0 = time.perf_counter()
    for epoch in range(rounds):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            ds[i]
    return rounds * len(ds) / (time.perf_counter() - t0)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def run(
    report: Callable[[str], None] = print,
    *,
    models: list[str] | None = None,
    width: str | float = "half",
    steps: int | None = None,
    devices: list[str] | None = None,
) -> list[dict]:
    """Measure every model on CPU and, when present, CUDA; ``report`` each table line."""
    models = models or list_models()
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    report(
        f"training step = forward + L_Seg+Edge + backward + Adam, 256 x 256 x 4, width {width}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
    )
    report(
        f"{'model':<9} {'device':<7} {'batch':>5} {'amp':<5} {'params':>11} {'samples/s':>10} "
        f"{'epoch 2730':>11} {'Table II run':>13} {'peak MB':>8}"
    )
    for dev_name in devices:
        device = torch.device(dev_name)
        for name in models:
            epochs, paper_batch, _ = MODEL_DEFAULTS.get(name, (100, 8, 1e-4))
            batch = 2 if device.type == "cpu" else paper_batch
            n = steps or (2 if device.type == "cpu" else 10)
            r = measure(name, device, width=width, batch=batch, steps=n)
            epoch_s = PAPER_TRAIN_SAMPLES / r["samples_per_s"]
            r["epoch_seconds"], r["table2_seconds"] = epoch_s, epoch_s * epochs
            mem = f"{r['peak_mem_mb']:8.0f}" if r["peak_mem_mb"] is not None else f"{'-':>8}"
            report(
                f"{name:<9} {dev_name:<7} {batch:>5} {r['amp']:<5} {r['parameters']:>11,} "
                f"{r['samples_per_s']:>10.2f} {_duration(epoch_s):>11} "
                f"{_duration(epoch_s * epochs) + f' ({epochs} ep)':>13} {mem}"
            )
            results.append(r)
    data = measure_data()
    if data is not None:
        report(f"data pipeline (read + check + flips/rot90, 1 process): {data:.0f} samples/s")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__)
    p.add_argument("--models", help="comma-separated (default: all registered)")
    p.add_argument("--width", default="half", help="base, half or a multiplier (default half)")
    p.add_argument("--steps", type=int, help="timed steps (default 2 on CPU, 10 on CUDA)")
    p.add_argument("--device", action="append", help="cpu and/or cuda (default: all present)")
    args = p.parse_args(argv or [])
    width: str | float = args.width if args.width in ("base", "half") else float(args.width)
    run(
        models=args.models.split(",") if args.models else None,
        width=width,
        steps=args.steps,
        devices=args.device,
    )
    return 0


if __name__ == "__main__":
    import sys

    np.seterr(all="ignore")
    sys.exit(main(sys.argv[1:]))
