"""Train a water/land model on SNOWED: ``python -m backend train --data DIR --model NAME ...``.

Reads top to bottom like nanoGPT's train.py: a typed config, a few helpers, then one visible
loop (epoch -> train steps -> validate -> checkpoint -> log).

- Defaults per model come from Table II of the paper (Adam, constant learning rate); the
  plain U-Net, which the paper does not train, gets 100 epochs, batch 8, lr 1e-4.
- The loss decides the number of model heads (``loss.num_heads``): one head per loss term.
- Every epoch: validation with the Table I metrics from one confusion matrix over the whole
  validation subset; ``best.pt`` (highest val IoU mean) and ``last.pt`` (with optimizer state,
  epoch and RNG states, for ``--resume``) are written atomically; one CSV row per epoch.
- Resume is exact on CPU: shuffling and augmentation are functions of (seed, epoch, sample
  index), and the torch/numpy/python RNG states are restored, so a run killed at any moment
  and resumed ends with the same weights as an uninterrupted one.
- CUDA: bf16 autocast (fp16 + GradScaler on GPUs without bf16); the loss runs in fp32.
- Distributed: under ``torchrun --nproc_per_node N -m backend train ...`` (RANK/WORLD_SIZE in
  the environment) the model is wrapped in DistributedDataParallel (NCCL on GPU, gloo on CPU),
  each process takes ``--batch-size`` samples per step from a DistributedSampler, and the
  validation confusion matrix is summed over processes, so the metrics equal those of one
  process. ``--nproc N`` starts torchrun itself.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from backend.augment import Augment, random_crop
from backend.checkpoint import (
    DEFAULT_BANDS,
    InputSpec,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from backend.datasets.snowed import (
    SNOWED,
    band_indices,
    list_samples,
    make_split,
    read_split,
    tile_groups,
    write_split,
)
from backend.device import check_device_name, choose_device
from backend.errors import Cancelled, UserError
from backend.evaluate import CenterCrop, evaluate_model

# Table II of the paper (epochs, batch size, learning rate; Adam). U-Net: our choice.
MODEL_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "senet": (1000, 4, 1e-5),
    "deepunet": (100, 11, 1e-4),
    "munet": (100, 10, 1e-3),
    "unet": (100, 8, 1e-4),
}
FALLBACK_DEFAULTS = (100, 8, 1e-4)
CSV_FIELDS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_f1_water",
    "val_iou_water",
    "val_iou_land",
    "val_iou_mean",
    "val_accuracy",
    "lr",
    "seconds",
    "best",
]
NOT_IN_CHECKPOINT_CONFIG = ("split",)  # stored under ckpt["split"] instead


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints).

    ``epochs``, ``batch_size`` and ``lr`` left as None take the model's Table II defaults.
    ``batch_size`` is per process under DDP. ``limit`` keeps the first N samples of each
    subset (quick runs). ``crop`` trains on random crops of crop x crop pixels and validates
    on the centre crop (tests and smoke runs; the paper uses full 256 x 256 tiles).
    ``split``: a split dict (as :func:`backend.datasets.make_split` returns) that overrides
    ``split_file`` and the seeded split -- for cross-validation loops in Python.
    ``spectral_indices``: put the fixed normalised-difference input layer of
    backend/models/spectral.py in front of the model (True: appended to the bands; "only":
    instead of them); stored in the checkpoint's arch kwargs. ``brightness`` [lo, hi]: multiply
    each training crop by one factor drawn log-uniformly from [lo, hi] (all bands alike).
    ``anchor_bound``: with ``spectral_indices="ndwi-anchored"``, the most the net may move each
    logit away from the fixed NDWI decision (default ``spectral.DEFAULT_ANCHOR_BOUND``);
    ``anchor_bands`` [a, b]: anchor on (a - b) / (a + b) instead of NDWI (["B3", "B11"]: MNDWI).
    """

    data: str
    model: str = "munet"
    width: str | float = "half"
    loss: str = "seg+edge"
    out: str = "runs/train"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    resume: bool = False
    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    augment: bool = True
    spectral_gain: float = 0.0
    spectral_offset: float = 0.0
    tensorboard: bool = False
    split_file: str | None = None
    group_by_tile: bool = False
    limit: int | None = None
    crop: int | None = None
    amp: bool = True
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] | None = None
    quiet: bool = False
    spectral_indices: bool | str = False
    brightness: list[float] | None = None
    anchor_bound: float | None = None
    anchor_bands: list[str] | None = None

    def resolved(self) -> TrainConfig:
        """A copy with the model's Table II defaults filled in and values checked."""
        epochs, batch, lr = MODEL_DEFAULTS.get(self.model, FALLBACK_DEFAULTS)
        cfg = TrainConfig(**{**asdict(self), "split": self.split})
        cfg.epochs = epochs if cfg.epochs is None else int(cfg.epochs)
        cfg.batch_size = batch if cfg.batch_size is None else int(cfg.batch_size)
        cfg.lr = lr if cfg.lr is None else float(cfg.lr)
        cfg.width = parse_width(cfg.width)
        cfg.bands = [b.strip().upper() for b in cfg.bands]
        cfg.data, cfg.out = str(cfg.data), str(cfg.out)
        band_indices(cfg.bands)
        for name in ("epochs", "batch_size"):
            if getattr(cfg, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not cfg.lr > 0:
            raise UserError("--lr must be positive")
        if cfg.brightness is not None:
            cfg.brightness = [float(v) for v in cfg.brightness]
            if len(cfg.brightness) != 2 or not 0 < cfg.brightness[0] <= cfg.brightness[1]:
                raise UserError("--brightness LO,HI needs 0 < LO <= HI, e.g. 0.3,2")
        if cfg.limit is not None and cfg.limit < 1:
            raise UserError("--limit must be at least 1")
        cfg.device = check_device_name(cfg.device)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the checkpoint (weights_only-safe types only)."""
        d = asdict(self)
        for key in NOT_IN_CHECKPOINT_CONFIG:
            d.pop(key, None)
        return d


def parse_width(width: str | float) -> str | float:
    """'base' | 'half' | a positive float (also as text) -> 'base' | 'half' | float."""
    if isinstance(width, str) and width.strip().lower() in ("base", "half"):
        return width.strip().lower()
    try:
        value = float(width)
    except (TypeError, ValueError):
        raise UserError(f"--width {width!r}: use base, half or a multiplier such as 0.25") from None
    if not value > 0 or not math.isfinite(value):
        raise UserError(f"--width {width!r} must be positive")
    return value


# ----------------------------------------------------------------------------- helpers


def _log(msg: str, rank: int = 0, quiet: bool = False) -> None:
    if rank == 0 and not quiet:
        print(msg, flush=True)


def setup_distributed(device_pref: str) -> tuple[int, int, torch.device]:
    """Join the torchrun process group if WORLD_SIZE > 1 -> (rank, world_size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = choose_device(device_pref)
    want_cuda = chosen.startswith("cuda")
    if world > 1:
        if want_cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if want_cuda else "gloo")
        device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
    else:
        device = torch.device(chosen)
    return rank, world, device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch/numpy/python RNG states as tensors and lists (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainSet(Dataset):
    """A SNOWED subset with per-sample randomness drawn from (seed, epoch, index).

    Random crop (when ``crop``) then ``augment``; the same sample gets the same random
    transform in a given epoch whatever the worker count, process count or resume point.
    """

    def __init__(self, base: SNOWED, augment: Augment | None, crop: int | None, seed: int):
        self.base, self.augment, self.crop, self.seed = base, augment, crop, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop:
            image, mask = random_crop(sample["image"], sample["mask"], self.crop, rng)
            sample = {**sample, "image": image, "mask": mask}
        if self.augment is not None and self.augment.active:
            sample = self.augment(sample, rng)
        return sample


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world, ... in order: every sample exactly once over all ranks
    (unlike DistributedSampler, which pads), so summed metrics equal one-process metrics."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def resolve_split(cfg: TrainConfig) -> dict[str, Any]:
    """The split of a fresh run: cfg.split, cfg.split_file, or a seeded (tile-grouped) one."""
    if cfg.split is not None:
        split = {k: list(v) if isinstance(v, list | tuple) else v for k, v in cfg.split.items()}
    elif cfg.split_file:
        split = read_split(cfg.split_file)
    else:
        ids = list_samples(cfg.data)
        groups = tile_groups(cfg.data, ids) if cfg.group_by_tile else None
        if groups is not None and not any(groups.values()):
            raise UserError(
                f"--group-by-tile: no sample under {cfg.data} has a metadata.pkl naming its "
                "Sentinel-2 tile; drop --group-by-tile or use the full SNOWED download"
            )
        split = make_split(ids, cfg.seed, groups=groups)
    if cfg.limit:
        split = {**split, **{k: split[k][: cfg.limit] for k in ("train", "val", "test")}}
        split["limit"] = cfg.limit
    return split


def amp_settings(device: torch.device, enabled: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler): bf16 when supported, else fp16 + scaler."""
    if device.type != "cuda" or not enabled:
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def describe_device(device: torch.device, amp_dtype: torch.dtype | None, world: int) -> str:
    if device.type == "cuda":
        what = f"{device} ({torch.cuda.get_device_name(device)})"
        what += f", {str(amp_dtype).replace('torch.', '')} autocast" if amp_dtype else ", fp32"
    else:
        what = f"cpu ({torch.get_num_threads()} threads)"
    if world > 1:
        what += f", DistributedDataParallel over {world} processes ({dist.get_backend()})"
    return f"device: {what}; torch {torch.__version__}"


def _float_outputs(out):
    return tuple(o.float() for o in out) if isinstance(out, tuple | list) else out.float()


def _all_reduce_sums(*values: float) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _open_csv(path: Path, completed_epochs: int):
    """Open the CSV log for appending, dropping rows of epochs after ``completed_epochs``."""
    rows = []
    if path.exists() and completed_epochs > 0:
        with path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= completed_epochs]
    fh = path.open("w", newline="")
    writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    fh.flush()
    return fh, writer


def _open_tensorboard(cfg: TrainConfig, out: Path, rank: int):
    if not cfg.tensorboard or rank != 0:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        _log("TensorBoard is not installed (pip install tensorboard); logging to CSV only")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def _check_resumable(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    old = ckpt.get("config", {})
    for key in ("model", "width", "loss", "bands", "crop"):
        if old.get(key) != getattr(cfg, key):
            raise UserError(
                f"{path} was trained with {key}={old.get(key)!r}, not {getattr(cfg, key)!r}; "
                "resume with the same settings or choose another --out"
            )
    for key, missing in (
        ("spectral_indices", False),
        ("anchor_bound", None),
        ("anchor_bands", None),
    ):
        if old.get(key, missing) != getattr(cfg, key):
            raise UserError(
                f"{path} was trained with {key}={old.get(key, missing)!r}, not "
                f"{getattr(cfg, key)!r}; resume with the same settings or choose another --out"
            )
    if "optimizer" not in ckpt or "rng" not in ckpt:
        raise UserError(f"{path} has no optimizer/RNG state; it cannot be resumed")


def _fit_anchor(model, dataset, cfg: TrainConfig, rank: int, quiet: bool) -> None:
    """Fit the linear anchor of an ``anchored`` model on the training tiles (no augmentation)
    before the net trains; the same on every rank (deterministic L-BFGS on the CPU)."""
    from backend.models.spectral import ANCHOR_PIXELS, fit_anchor

    if len(dataset) == 0:
        raise UserError("the training split is empty; the anchor needs training tiles")
    # Pixels drawn at random from every tile (at most ANCHOR_PIXELS in all), laid out as one
    # (1, C, 1, M) image: the full dataset never has to be in memory at once.
    per_tile = max(1, -(-ANCHOR_PIXELS // len(dataset)))
    g = torch.Generator().manual_seed(cfg.seed)
    pixels, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        image, mask = sample["image"].flatten(1), sample["mask"].flatten()
        pick = torch.randperm(mask.numel(), generator=g)[:per_tile]
        pixels.append(image[:, pick])
        labels.append(mask[pick])
    images = torch.cat(pixels, dim=1)[None, :, None]
    result = fit_anchor(model, images, torch.cat(labels)[None, None], seed=cfg.seed)
    _log(
        f"anchor: logistic regression on the spectral indices of {result['pixels']:,} pixels, "
        f"accuracy {100 * result['accuracy']:.2f} %",
        rank,
        quiet,
    )


# ----------------------------------------------------------------------------- training


def train(config: TrainConfig) -> Path:
    """Train (or resume) a run; returns the path of its best checkpoint (``OUT/best.pt``).

    Writes into ``config.out``: best.pt, last.pt, split.json, log.csv. Raises UserError for
    mistakes the user can fix (bad data folder, an existing run without --resume, ...).
    """
    from backend.losses import create_loss
    from backend.models import create_model

    cfg = config.resolved()
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    rank, world, device = setup_distributed(cfg.device)
    quiet = cfg.quiet
    try:
        # ---- resume or start
        resume_ckpt = None
        if last_path.exists():
            if not cfg.resume:
                raise UserError(
                    f"{out} already holds a training run ({last_path.name}); pass --resume to "
                    "continue it or choose another --out"
                )
            resume_ckpt = read_checkpoint(last_path)
            _check_resumable(resume_ckpt, cfg, last_path)
        elif cfg.resume:
            _log(f"--resume: no {last_path} yet; starting a new run", rank, quiet)

        split = resume_ckpt["split"] if resume_ckpt else resolve_split(cfg)
        if rank == 0:
            write_split(split, out / "split.json")
            for stale in out.glob(".*.pt.*.tmp"):  # left by a kill during a checkpoint save
                stale.unlink(missing_ok=True)

        # ---- model, loss, optimizer
        seed_everything(cfg.seed)
        try:
            criterion = create_loss(cfg.loss, **cfg.loss_kwargs)
        except (ValueError, TypeError) as exc:
            raise UserError(f"--loss {cfg.loss!r}: {exc}") from None
        heads = int(criterion.num_heads)
        arch_kwargs = {
            "width": cfg.width,
            "in_channels": len(cfg.bands),
            "num_classes": 2,
            "heads": heads,
        }
        if cfg.spectral_indices:  # only when on: older checkpoints keep their exact kwargs
            arch_kwargs["spectral_indices"] = (
                True if cfg.spectral_indices in (True, "all") else cfg.spectral_indices
            )
        if cfg.anchor_bound is not None:
            if cfg.spectral_indices not in ("ndwi-anchored", "anchored"):
                raise UserError("--anchor-bound needs --spectral-indices anchored or ndwi-anchored")
            arch_kwargs["anchor_bound"] = float(cfg.anchor_bound)
        if cfg.anchor_bands is not None:
            pair = [b.strip().upper() for b in cfg.anchor_bands]
            if cfg.spectral_indices != "ndwi-anchored" or len(pair) != 2:
                raise UserError(
                    "--anchor-bands needs --spectral-indices ndwi-anchored and two bands, "
                    "e.g. --anchor-bands B3,B11"
                )
            missing = [b for b in pair if b not in cfg.bands]
            if missing:
                raise UserError(
                    f"--anchor-bands {','.join(pair)}: {', '.join(missing)} not among --bands "
                    f"{','.join(cfg.bands)}; add it to --bands"
                )
            arch_kwargs["index_init_pair"] = [cfg.bands.index(b) for b in pair]
        try:
            model = create_model(cfg.model, **arch_kwargs)
        except ValueError as exc:
            raise UserError(f"--model {cfg.model!r} / --width {cfg.width!r}: {exc}") from None
        multiple = int(getattr(model, "size_multiple", 1))
        tile = cfg.crop or 256
        if tile % multiple:
            raise UserError(
                f"--crop {tile} is not a multiple of {multiple}, which {cfg.model} needs; "
                f"use --crop {max(multiple, tile // multiple * multiple)}"
            )
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed tile size: let cuDNN pick kernels
        model.to(device)
        criterion.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        amp_dtype, use_scaler = amp_settings(device, cfg.amp)
        scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        input_spec = InputSpec(bands=list(cfg.bands), tile_size=256)

        start_epoch, best = 0, {"epoch": 0, "score": -math.inf, "metric": ""}
        if resume_ckpt is not None:
            model.load_state_dict(resume_ckpt["state_dict"])
            optimizer.load_state_dict(resume_ckpt["optimizer"])
            if scaler is not None and resume_ckpt.get("scaler"):
                scaler.load_state_dict(resume_ckpt["scaler"])
            start_epoch = int(resume_ckpt["epoch"])
            best = dict(resume_ckpt.get("best") or best)
            set_rng_state(resume_ckpt["rng"])
            _log(f"resuming {last_path} after epoch {start_epoch}", rank, quiet)
        ddp_model = model
        if world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )

        # ---- data
        augment = (
            Augment(
                gain=cfg.spectral_gain,
                offset=cfg.spectral_offset,
                brightness=tuple(cfg.brightness) if cfg.brightness else None,
            )
            if cfg.augment
            else None
        )
        train_base = SNOWED(cfg.data, split["train"], cfg.bands, input_spec)
        train_set = TrainSet(train_base, augment, cfg.crop, cfg.seed)
        val_set = CenterCrop(SNOWED(cfg.data, split["val"], cfg.bands, input_spec), cfg.crop)
        sampler = DistributedSampler(
            train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed
        )
        per_rank = len(sampler)
        # a last batch of one sample breaks BatchNorm at 1 x 1 resolution: drop just that one
        drop_last = per_rank > cfg.batch_size and per_rank % cfg.batch_size == 1
        workers = (
            cfg.workers
            if cfg.workers is not None
            else (min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
        )
        loader_kw = {"num_workers": workers, "pin_memory": device.type == "cuda"}
        train_loader = DataLoader(
            train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=drop_last, **loader_kw
        )
        val_loader = DataLoader(
            val_set,
            batch_size=cfg.batch_size,
            sampler=ShardSampler(len(val_set), rank, world),
            **loader_kw,
        )

        if resume_ckpt is None and cfg.spectral_indices == "anchored":
            _fit_anchor(model, train_base, cfg, rank, quiet)

        _log(describe_device(device, amp_dtype, world), rank, quiet)
        n_params = sum(p.numel() for p in model.parameters())
        _log(
            f"model {cfg.model} width {cfg.width} ({n_params:,} parameters, {heads} head(s)), "
            f"loss {cfg.loss}, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
            f"split {len(split['train'])}/{len(split['val'])}/{len(split['test'])} "
            f"train/val/test, out {out}",
            rank,
            quiet,
        )
        csv_file, csv_writer = (
            _open_csv(out / "log.csv", start_epoch) if rank == 0 else (None, None)
        )
        tb = _open_tensorboard(cfg, out, rank)
        show_bar = rank == 0 and not quiet and sys.stderr.isatty()
        config_dict = cfg.to_dict()

        # ---- the loop
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            ddp_model.train()
            loss_sum, count = 0.0, 0
            batches = train_loader
            if show_bar:
                from tqdm import tqdm

                batches = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
            for step, batch in enumerate(batches):
                x = batch["image"].to(device, non_blocking=True)
                y = batch["mask"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = ddp_model(x)
                loss = criterion(_float_outputs(outputs), y, x)
                if not torch.isfinite(loss):
                    raise UserError(
                        f"training loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; "
                        "lower --lr or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                loss_sum += loss.item() * len(x)
                count += len(x)
                if show_bar:
                    batches.set_postfix(loss=f"{loss.item():.4f}")
            loss_sum, count = _all_reduce_sums(loss_sum, count)
            train_loss = loss_sum / max(count, 1)

            # validation: rank 0's BatchNorm statistics are the ones saved, so use them everywhere
            if world > 1:
                for buf in model.buffers():
                    dist.broadcast(buf, 0)
            val = evaluate_model(
                model, val_loader, device, criterion=criterion, amp_dtype=amp_dtype
            )
            seconds = time.perf_counter() - t0
            # best = highest val IoU mean (highest -train_loss when there is no validation subset)
            score = val["iou_mean"] if val["samples"] else -train_loss
            previous = best["score"] if math.isfinite(best["score"]) else -math.inf
            is_best = best["epoch"] == 0 or (math.isfinite(score) and score > previous)
            if is_best:
                metric = "val_iou_mean" if val["samples"] else "-train_loss"
                best = {"epoch": epoch + 1, "score": float(score), "metric": metric}
            metrics = {"val": val, "train": {"loss": train_loss}, "best": best}

            if rank == 0:  # CSV row, then best.pt, then last.pt: a kill between them is harmless
                csv_writer.writerow(
                    {
                        "epoch": epoch + 1,
                        "train_loss": f"{train_loss:.6f}",
                        "val_loss": f"{val['loss']:.6f}",
                        **{
                            f"val_{k}": f"{val[k]:.6f}"
                            for k in ("f1_water", "iou_water", "iou_land", "iou_mean", "accuracy")
                        },
                        "lr": f"{optimizer.param_groups[0]['lr']:g}",
                        "seconds": f"{seconds:.2f}",
                        "best": int(is_best),
                    }
                )
                csv_file.flush()
                if tb is not None:
                    tb.add_scalar("loss/train", train_loss, epoch + 1)
                    for k in ("loss", "f1_water", "iou_water", "iou_land", "iou_mean"):
                        tb.add_scalar(f"val/{k}", val[k], epoch + 1)
                    for k, v in (getattr(criterion, "last_terms", None) or {}).items():
                        tb.add_scalar(f"terms/{k}", float(v), epoch + 1)
                common = {
                    "loss": cfg.loss,
                    "config": config_dict,
                    "split": split,
                    "metrics": metrics,
                    "epoch": epoch + 1,
                }
                if is_best:
                    save_checkpoint(
                        build_checkpoint(model, cfg.model, arch_kwargs, input_spec, **common),
                        best_path,
                    )
                extra = {
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng_state(),
                    "best": best,
                }
                save_checkpoint(
                    build_checkpoint(
                        model, cfg.model, arch_kwargs, input_spec, **common, extra=extra
                    ),
                    last_path,
                )
            _log(
                f"epoch {epoch + 1}/{cfg.epochs}  train_loss {train_loss:.4f}  "
                f"val_loss {val['loss']:.4f}  val IoU mean {100 * val['iou_mean']:.2f} %  "
                f"F1 {100 * val['f1_water']:.2f} %  {seconds:.1f} s"
                + ("  (best)" if is_best else ""),
                rank,
                quiet,
            )
        if csv_file is not None:
            csv_file.close()
        if tb is not None:
            tb.close()
        if world > 1:
            dist.barrier()
        if start_epoch >= cfg.epochs:
            _log(f"{last_path} already completed {start_epoch} epochs; nothing to do", rank, quiet)
        _log(
            f"best: epoch {best['epoch']} ({best['metric']} {best['score']:.4f}) -> {best_path}",
            rank,
            quiet,
        )
        return best_path
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend train",
        description="Train a water/land segmentation model on SNOWED. Defaults per model follow "
        "Table II of the paper. Outputs in --out: best.pt, last.pt, split.json, log.csv.",
    )
    p.add_argument("--data", required=True, help="the SNOWED folder (holding <id>/sample_2A.npy)")
    p.add_argument(
        "--model", default="munet", help="senet, deepunet, munet or unet (default munet)"
    )
    p.add_argument(
        "--width", default="half", help="base, half or a multiplier of base (default half)"
    )
    p.add_argument(
        "--loss", default="seg+edge", help="ce, sd, ce+sd, seg, edge or seg+edge (default seg+edge)"
    )
    p.add_argument("--out", required=True, help="output folder of the run")
    p.add_argument("--epochs", type=int, help="default: Table II (senet 1000, others 100)")
    p.add_argument(
        "--batch-size", type=int, help="per process; default: Table II (4/11/10, unet 8)"
    )
    p.add_argument("--lr", type=float, help="Adam learning rate; default: Table II")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of split, init, shuffling, augmentation"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument(
        "--workers", type=int, help="DataLoader workers (default 0 on CPU, up to 8 on CUDA)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--bands", default=",".join(DEFAULT_BANDS), help="input bands, e.g. B2,B3,B4,B8")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random flips and 90-degree rotations (default on)",
    )
    p.add_argument(
        "--spectral-gain",
        type=float,
        default=0.0,
        help="per-band gain jitter, e.g. 0.05 (default off)",
    )
    p.add_argument(
        "--spectral-offset",
        type=float,
        default=0.0,
        help="per-band offset jitter in reflectance, e.g. 0.01 (default off)",
    )
    p.add_argument(
        "--brightness",
        type=lambda t: [float(v) for v in t.split(",")],
        help="multiply each training crop by a factor drawn log-uniformly from LO,HI, e.g. "
        "0.3,2 (all bands alike; default off)",
    )
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log to OUT/tensorboard (needs the tensorboard package)",
    )
    p.add_argument("--split-file", help="a split.json to use instead of a new seeded split")
    p.add_argument(
        "--group-by-tile", action="store_true", help="split by Sentinel-2 tile (needs metadata.pkl)"
    )
    p.add_argument("--limit", type=int, help="use at most N samples of each subset (quick runs)")
    p.add_argument(
        "--crop", type=int, help="train on random NxN crops, validate on the centre crop"
    )
    p.add_argument(
        "--spectral-indices",
        nargs="?",
        const=True,
        default=False,
        choices=[True, "only", "residual", "ndwi-init", "ndwi-anchored", "anchored"],
        help="append fixed normalised differences of all band pairs (NDWI, ...) to the input "
        "bands; 'only': the indices instead of the bands; 'residual': appended, plus a learned "
        "per-pixel linear map of them added to the logits; 'ndwi-init': 'residual' started so "
        "that the untrained model predicts NDWI > 0; 'ndwi-anchored': fixed NDWI decision plus "
        "the net's bounded correction; 'anchored': the same with a logistic regression on all "
        "the indices, fitted on the training tiles first",
    )
    p.add_argument(
        "--anchor-bound",
        type=float,
        help="with --spectral-indices ndwi-anchored: the most the net may move each logit "
        "(default 1.5: it can overrule NDWI only where |NDWI| < 0.3)",
    )
    p.add_argument(
        "--anchor-bands",
        type=lambda t: t.split(","),
        help="with --spectral-indices ndwi-anchored: the two bands of the anchoring index "
        "(default B3,B8 = NDWI; B3,B11 = MNDWI)",
    )
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument("--nproc", type=int, default=1, help="start N processes with torchrun (DDP)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def _spawn_torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes; returns its exit code."""
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        rest.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "backend",
        "train",
        *rest,
    ]
    print("starting: " + " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _spawn_torchrun(args.nproc, argv)
    cfg = TrainConfig(
        data=args.data,
        model=args.model,
        width=args.width,
        loss=args.loss,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        resume=args.resume,
        bands=[b for b in args.bands.split(",") if b.strip()],
        augment=args.augment,
        spectral_gain=args.spectral_gain,
        spectral_offset=args.spectral_offset,
        tensorboard=args.tensorboard,
        split_file=args.split_file,
        group_by_tile=args.group_by_tile,
        limit=args.limit,
        crop=args.crop,
        amp=args.amp,
        quiet=args.quiet,
        spectral_indices=args.spectral_indices,
        brightness=args.brightness,
        anchor_bound=args.anchor_bound,
        anchor_bands=args.anchor_bands,
    )

    def _stop(signum, frame):
        raise Cancelled()

    with contextlib.suppress(ValueError):  # not in the main thread: keep default handling
        signal.signal(signal.SIGTERM, _stop)
    train(cfg)
    return 0
