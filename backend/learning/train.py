"""Train a water/land model on SNOWED: ``python -m backend train --data DIR --model NAME ...``.

Reads top to bottom like nanoGPT's train.py: a typed config (whose fields are also the
command-line options), the steps of a run as small functions over a few dataclasses (``Run``:
config, rank and device; ``Learner``: model, loss, optimizer; ``Data``: datasets and loaders;
``Progress``: epochs done and the best so far), then :func:`train`, which shows the loop
(epoch -> train steps -> validate -> log -> checkpoint) on one screen.

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
import typing
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from backend.core.checkpoint import (
    DEFAULT_BANDS,
    InputSpec,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from backend.core.device import check_device_name, choose_device
from backend.core.errors import Cancelled, UserError
from backend.datasets.augment import Augment
from backend.datasets.snowed import (
    SNOWED,
    band_indices,
    list_samples,
    make_split,
    read_split,
    tile_groups,
    write_split,
)
from backend.datasets.transforms import CenterCrop, TrainSet
from backend.learning.metrics import evaluate_model

# Table II of the paper (epochs, batch size, learning rate; Adam). U-Net: our choice.
MODEL_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "senet": (1000, 4, 1e-5),
    "deepunet": (100, 11, 1e-4),
    "munet": (100, 10, 1e-3),
    "unet": (100, 8, 1e-4),
}
FALLBACK_DEFAULTS = (100, 8, 1e-4)
SNOWED_TILE = 256  # SNOWED samples are 256 x 256: the training tile unless --crop is given
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
SPECTRAL_INDEX_CHOICES = [True, "only", "residual", "ndwi-init", "ndwi-anchored", "anchored"]


def option(
    default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **cli: Any
) -> Any:
    """A :class:`TrainConfig` field that is also an option of ``python -m backend train``.

    The option is ``--field-name`` with the field's default; ``int``/``float`` fields get
    ``type=int``/``float`` and ``bool`` fields ``store_true``. ``cli`` overrides or adds
    argparse keywords (``type``, ``action``, ``required``, ...; ``flag``: another spelling).
    """
    metadata = {"help": help, "cli": cli}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints).

    ``epochs``, ``batch_size`` and ``lr`` left as None take the model's Table II defaults.
    ``batch_size`` is per process under DDP. ``limit`` keeps the first N samples of each
    subset (quick runs). ``crop`` trains on random crops of crop x crop pixels and validates
    on the centre crop (tests and smoke runs; the paper uses full 256 x 256 tiles).
    ``spectral_indices``: put the fixed normalised-difference input layer of
    backend/models/spectral.py in front of the model (True: appended to the bands; "only":
    instead of them); stored in the checkpoint's arch kwargs. ``brightness`` [lo, hi]: multiply
    each training crop by one factor drawn log-uniformly from [lo, hi] (all bands alike).
    ``anchor_bound``: with ``spectral_indices="ndwi-anchored"``, the most the net may move each
    logit away from the fixed NDWI decision (default ``spectral.DEFAULT_ANCHOR_BOUND``);
    ``anchor_bands`` [a, b]: anchor on (a - b) / (a + b) instead of NDWI (["B3", "B11"]: MNDWI).

    Fields made with :func:`option` are the command-line options, in this order; the last two
    are for Python callers only: ``loss_kwargs`` for the loss, and ``split``, a split dict (as
    :func:`backend.datasets.make_split` returns) that overrides ``split_file`` and the seeded
    split -- for cross-validation loops in Python.
    """

    data: str = option(help="the SNOWED folder (holding <id>/sample_2A.npy)")
    model: str = option("munet", "senet, deepunet, munet or unet (default munet)")
    width: str | float = option("half", "base, half or a multiplier of base (default half)")
    loss: str = option("seg+edge", "ce, sd, ce+sd, seg, edge or seg+edge (default seg+edge)")
    out: str = option("runs/train", "output folder of the run", required=True)
    epochs: int | None = option(None, "default: Table II (senet 1000, others 100)")
    batch_size: int | None = option(None, "per process; default: Table II (4/11/10, unet 8)")
    lr: float | None = option(None, "Adam learning rate; default: Table II")
    seed: int = option(0, "seed of split, init, shuffling, augmentation")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    workers: int | None = option(None, "DataLoader workers (default 0 on CPU, up to 8 on CUDA)")
    resume: bool = option(False, "continue the run in --out from last.pt")
    bands: list[str] = option(
        help="input bands, e.g. B2,B3,B4,B8",
        default_factory=lambda: list(DEFAULT_BANDS),
        type=lambda t: [b for b in t.split(",") if b.strip()],
    )
    augment: bool = option(
        True,
        "random flips and 90-degree rotations (default on)",
        action=argparse.BooleanOptionalAction,
    )
    spectral_gain: float = option(0.0, "per-band gain jitter, e.g. 0.05 (default off)")
    spectral_offset: float = option(
        0.0, "per-band offset jitter in reflectance, e.g. 0.01 (default off)"
    )
    brightness: list[float] | None = option(
        None,
        "multiply each training crop by a factor drawn log-uniformly from LO,HI, e.g. "
        "0.3,2 (all bands alike; default off)",
        type=lambda t: [float(v) for v in t.split(",")],
    )
    tensorboard: bool = option(False, "also log to OUT/tensorboard (needs the tensorboard package)")
    split_file: str | None = option(None, "a split.json to use instead of a new seeded split")
    group_by_tile: bool = option(False, "split by Sentinel-2 tile (needs metadata.pkl)")
    limit: int | None = option(None, "use at most N samples of each subset (quick runs)")
    crop: int | None = option(
        None,
        "train on random NxN crops, validate on the centre crop (default: whole 256 px tiles); "
        "the checkpoint records it as the tile size segment uses",
    )
    spectral_indices: bool | str = option(
        False,
        "append fixed normalised differences of all band pairs (NDWI, ...) to the input "
        "bands; 'only': the indices instead of the bands; 'residual': appended, plus a learned "
        "per-pixel linear map of them added to the logits; 'ndwi-init': 'residual' started so "
        "that the untrained model predicts NDWI > 0; 'ndwi-anchored': fixed NDWI decision plus "
        "the net's bounded correction; 'anchored': the same with a logistic regression on all "
        "the indices, fitted on the training tiles first",
        nargs="?",
        const=True,
        choices=SPECTRAL_INDEX_CHOICES,
    )
    anchor_bound: float | None = option(
        None,
        "with --spectral-indices ndwi-anchored: the most the net may move each logit "
        "(default 1.5: it can overrule NDWI only where |NDWI| < 0.3)",
    )
    anchor_bands: list[str] | None = option(
        None,
        "with --spectral-indices ndwi-anchored: the two bands of the anchoring index "
        "(default B3,B8 = NDWI; B3,B11 = MNDWI)",
        type=lambda t: t.split(","),
    )
    amp: bool = option(True, "no mixed precision on CUDA", flag="--no-amp", action="store_false")
    quiet: bool = option(False, "no per-epoch lines")
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] | None = None

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


# ----------------------------------------------------------------------------- the run's state


@dataclass
class Run:
    """Where a run happens: its (resolved) config, this process's rank of ``world`` and its
    device; the output files."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    @property
    def show_bar(self) -> bool:
        return self.rank == 0 and not self.cfg.quiet and sys.stderr.isatty()

    def log(self, msg: str) -> None:
        _log(msg, self.rank, self.cfg.quiet)


@dataclass
class Learner:
    """The model and what trains it. ``ddp_model`` is the model to train (the model itself,
    or its DistributedDataParallel wrapper); ``model`` is what is validated and saved."""

    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    arch_kwargs: dict[str, Any]
    input_spec: InputSpec
    ddp_model: torch.nn.Module | None = None

    def __post_init__(self) -> None:
        if self.ddp_model is None:
            self.ddp_model = self.model

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward pass (autocast when AMP is on), then the loss in fp32."""
        with torch.autocast(
            x.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
        ):
            outputs = self.ddp_model(x)
        return self.criterion(_float_outputs(outputs), y, x)

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss`` (through the GradScaler when there is one)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()


@dataclass
class Data:
    """The training and validation subsets and their loaders (this process's share)."""

    train_base: SNOWED  # the training tiles, neither cropped nor augmented
    train_set: TrainSet
    sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader

    def set_epoch(self, epoch: int) -> None:
        """Shuffling and augmentation of ``epoch`` (functions of seed, epoch, sample)."""
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)


@dataclass
class EpochResult:
    """What one epoch gave: its training loss, validation metrics and time."""

    epoch: int  # 1-based: the number of epochs completed
    train_loss: float
    val: dict[str, Any]
    seconds: float
    is_best: bool = False

    def line(self, epochs: int) -> str:
        val = self.val
        return (
            f"epoch {self.epoch}/{epochs}  train_loss {self.train_loss:.4f}  "
            f"val_loss {val['loss']:.4f}  val IoU mean {100 * val['iou_mean']:.2f} %  "
            f"F1 {100 * val['f1_water']:.2f} %  {self.seconds:.1f} s"
            + ("  (best)" if self.is_best else "")
        )


@dataclass
class Progress:
    """Epochs completed before this process started, and the best epoch so far."""

    start_epoch: int = 0
    best: dict[str, Any] = field(
        default_factory=lambda: {"epoch": 0, "score": -math.inf, "metric": ""}
    )

    def update(self, result: EpochResult) -> bool:
        """Record ``result``; True when it is the new best epoch: highest val IoU mean
        (highest -train_loss when there is no validation subset)."""
        val = result.val
        score = val["iou_mean"] if val["samples"] else -result.train_loss
        previous = self.best["score"] if math.isfinite(self.best["score"]) else -math.inf
        is_best = self.best["epoch"] == 0 or (math.isfinite(score) and score > previous)
        if is_best:
            metric = "val_iou_mean" if val["samples"] else "-train_loss"
            self.best = {"epoch": result.epoch, "score": float(score), "metric": metric}
        return is_best


@dataclass
class EpochLog:
    """log.csv (rank 0) and TensorBoard (rank 0, with --tensorboard): one row per epoch."""

    csv_file: Any = None
    csv_writer: csv.DictWriter | None = None
    tb: Any = None

    @classmethod
    def open(cls, run: Run, completed_epochs: int) -> EpochLog:
        if run.rank != 0:
            return cls()
        csv_file, csv_writer = _open_csv(run.out / "log.csv", completed_epochs)
        return cls(csv_file, csv_writer, _open_tensorboard(run.cfg, run.out, run.rank))

    def write(self, result: EpochResult, learner: Learner) -> None:
        val = result.val
        self.csv_writer.writerow(
            {
                "epoch": result.epoch,
                "train_loss": f"{result.train_loss:.6f}",
                "val_loss": f"{val['loss']:.6f}",
                **{
                    f"val_{k}": f"{val[k]:.6f}"
                    for k in ("f1_water", "iou_water", "iou_land", "iou_mean", "accuracy")
                },
                "lr": f"{learner.optimizer.param_groups[0]['lr']:g}",
                "seconds": f"{result.seconds:.2f}",
                "best": int(result.is_best),
            }
        )
        self.csv_file.flush()
        if self.tb is not None:
            self.tb.add_scalar("loss/train", result.train_loss, result.epoch)
            for k in ("loss", "f1_water", "iou_water", "iou_land", "iou_mean"):
                self.tb.add_scalar(f"val/{k}", val[k], result.epoch)
            for k, v in (getattr(learner.criterion, "last_terms", None) or {}).items():
                self.tb.add_scalar(f"terms/{k}", float(v), result.epoch)

    def close(self) -> None:
        if self.csv_file is not None:
            self.csv_file.close()
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- the steps


def load_resume_checkpoint(run: Run) -> dict[str, Any] | None:
    """last.pt of the run in --out when resuming it; None for a new run. Refuses to overwrite
    a run without --resume, or to resume one trained with other settings."""
    cfg, last_path = run.cfg, run.last_path
    if last_path.exists():
        if not cfg.resume:
            raise UserError(
                f"{run.out} already holds a training run ({last_path.name}); pass --resume to "
                "continue it or choose another --out"
            )
        ckpt = read_checkpoint(last_path)
        _check_resumable(ckpt, cfg, last_path)
        return ckpt
    if cfg.resume:
        run.log(f"--resume: no {last_path} yet; starting a new run")
    return None


def prepare_out(run: Run, split: dict[str, Any]) -> None:
    """Write split.json and delete temporary files a kill during a checkpoint save left."""
    if run.rank == 0:
        write_split(split, run.out / "split.json")
        for stale in run.out.glob(".*.pt.*.tmp"):
            stale.unlink(missing_ok=True)


def build_loss(cfg: TrainConfig) -> torch.nn.Module:
    from backend.losses import create_loss

    try:
        return create_loss(cfg.loss, **cfg.loss_kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--loss {cfg.loss!r}: {exc}") from None


def model_kwargs(cfg: TrainConfig, heads: int) -> dict[str, Any]:
    """The architecture's keyword arguments (stored in the checkpoints), options checked:
    the index-layer options become one ``spectral`` dict (``SpectralOptions.to_dict``)."""
    from backend.models.spectral import SpectralOptions

    arch_kwargs = {
        "width": cfg.width,
        "in_channels": len(cfg.bands),
        "num_classes": 2,
        "heads": heads,
    }
    spectral: dict[str, Any] = {}  # SpectralOptions fields; none when the layer is off
    if cfg.spectral_indices:  # only when on: without the layer the kwargs are as they were
        spectral["mode"] = "all" if cfg.spectral_indices is True else cfg.spectral_indices
    if cfg.anchor_bound is not None:
        if cfg.spectral_indices not in ("ndwi-anchored", "anchored"):
            raise UserError("--anchor-bound needs --spectral-indices anchored or ndwi-anchored")
        spectral["anchor_bound"] = float(cfg.anchor_bound)
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
        spectral["index_pair"] = [cfg.bands.index(b) for b in pair]
    if spectral:
        try:
            arch_kwargs["spectral"] = SpectralOptions(**spectral).to_dict()
        except ValueError as exc:
            raise UserError(f"--spectral-indices {cfg.spectral_indices}: {exc}") from None
    return arch_kwargs


def build_learner(run: Run, criterion: torch.nn.Module) -> Learner:
    """The model (initialised from the torch RNG), on the device with the loss; Adam; AMP."""
    from backend.models import create_model

    cfg, device = run.cfg, run.device
    arch_kwargs = model_kwargs(cfg, heads=int(criterion.num_heads))
    try:
        model = create_model(cfg.model, **arch_kwargs)
    except ValueError as exc:
        raise UserError(f"--model {cfg.model!r} / --width {cfg.width!r}: {exc}") from None
    multiple = int(getattr(model, "size_multiple", 1))
    tile = cfg.crop or SNOWED_TILE
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
    input_spec = InputSpec(bands=list(cfg.bands), tile_size=tile)  # inference uses it too
    return Learner(model, criterion, optimizer, scaler, amp_dtype, arch_kwargs, input_spec)


def restore(run: Run, learner: Learner, ckpt: dict[str, Any] | None) -> Progress:
    """Weights, optimizer, scaler, progress and RNG states from last.pt (nothing when None)."""
    progress = Progress()
    if ckpt is None:
        return progress
    learner.model.load_state_dict(ckpt["state_dict"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    if learner.scaler is not None and ckpt.get("scaler"):
        learner.scaler.load_state_dict(ckpt["scaler"])
    progress = Progress(int(ckpt["epoch"]), dict(ckpt.get("best") or progress.best))
    set_rng_state(ckpt["rng"])
    run.log(f"resuming {run.last_path} after epoch {progress.start_epoch}")
    return progress


def wrap_ddp(run: Run, learner: Learner) -> None:
    """Under torchrun: train through DistributedDataParallel (gradients averaged over ranks)."""
    if run.world > 1:
        learner.ddp_model = torch.nn.parallel.DistributedDataParallel(
            learner.model, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )


def build_data(run: Run, split: dict[str, Any], input_spec: InputSpec) -> Data:
    """Datasets (random crop + augmentation for training, centre crop for validation),
    samplers (this rank's share) and loaders."""
    cfg, device = run.cfg, run.device
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
        train_set, num_replicas=run.world, rank=run.rank, shuffle=True, seed=cfg.seed
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
        sampler=ShardSampler(len(val_set), run.rank, run.world),
        **loader_kw,
    )
    return Data(train_base, train_set, sampler, train_loader, val_loader)


def fit_spectral_anchor(run: Run, learner: Learner, data: Data) -> None:
    """Fit the linear anchor of an ``anchored`` model on the training tiles (no augmentation)
    before the net trains; the same on every rank (deterministic L-BFGS on the CPU)."""
    from backend.models.spectral import ANCHOR_PIXELS, fit_anchor

    dataset, seed = data.train_base, run.cfg.seed
    if len(dataset) == 0:
        raise UserError("the training split is empty; the anchor needs training tiles")
    # Pixels drawn at random from every tile (at most ANCHOR_PIXELS in all), laid out as one
    # (1, C, 1, M) image: the full dataset never has to be in memory at once.
    per_tile = max(1, -(-ANCHOR_PIXELS // len(dataset)))
    g = torch.Generator().manual_seed(seed)
    pixels, labels = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        image, mask = sample["image"].flatten(1), sample["mask"].flatten()
        pick = torch.randperm(mask.numel(), generator=g)[:per_tile]
        pixels.append(image[:, pick])
        labels.append(mask[pick])
    images = torch.cat(pixels, dim=1)[None, :, None]
    result = fit_anchor(learner.model, images, torch.cat(labels)[None, None], seed=seed)
    run.log(
        f"anchor: logistic regression on the spectral indices of {result['pixels']:,} pixels, "
        f"accuracy {100 * result['accuracy']:.2f} %"
    )


def log_setup(run: Run, learner: Learner, split: dict[str, Any]) -> None:
    cfg = run.cfg
    run.log(describe_device(run.device, learner.amp_dtype, run.world))
    n_params = sum(p.numel() for p in learner.model.parameters())
    run.log(
        f"model {cfg.model} width {cfg.width} ({n_params:,} parameters, "
        f"{learner.arch_kwargs['heads']} head(s)), "
        f"loss {cfg.loss}, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr:g}, "
        f"split {len(split['train'])}/{len(split['val'])}/{len(split['test'])} "
        f"train/val/test, out {run.out}"
    )


def train_one_epoch(run: Run, learner: Learner, data: Data, epoch: int) -> float:
    """One pass over this rank's share of the training subset -> the mean loss per sample
    over all ranks."""
    data.set_epoch(epoch)
    learner.ddp_model.train()
    loss_sum, count = 0.0, 0
    batches = data.train_loader
    if run.show_bar:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"epoch {epoch + 1}/{run.cfg.epochs}", leave=False)
    for step, batch in enumerate(batches):
        x = batch["image"].to(run.device, non_blocking=True)
        y = batch["mask"].to(run.device, non_blocking=True)
        loss = learner.loss(x, y)
        if not torch.isfinite(loss):
            raise UserError(
                f"training loss became {loss.item()} at epoch {epoch + 1} step {step + 1}; "
                "lower --lr or check the data"
            )
        learner.step(loss)
        loss_sum += loss.item() * len(x)
        count += len(x)
        if run.show_bar:
            batches.set_postfix(loss=f"{loss.item():.4f}")
    loss_sum, count = _all_reduce_sums(loss_sum, count)
    return loss_sum / max(count, 1)


def validate(run: Run, learner: Learner, data: Data) -> dict[str, Any]:
    """Table I metrics and loss on the validation subset (confusion matrix summed over ranks)."""
    # rank 0's BatchNorm statistics are the ones saved, so use them everywhere
    if run.world > 1:
        for buf in learner.model.buffers():
            dist.broadcast(buf, 0)
    return evaluate_model(
        learner.model,
        data.val_loader,
        run.device,
        criterion=learner.criterion,
        amp_dtype=learner.amp_dtype,
    )


def save_checkpoints(
    run: Run, learner: Learner, split: dict[str, Any], progress: Progress, result: EpochResult
) -> None:
    """best.pt when the epoch is the best, then last.pt (with optimizer and RNG states)."""
    cfg = run.cfg
    metrics = {"val": result.val, "train": {"loss": result.train_loss}, "best": progress.best}
    common = {
        "loss": cfg.loss,
        "config": cfg.to_dict(),
        "split": split,
        "metrics": metrics,
        "epoch": result.epoch,
    }
    model, arch_kwargs, spec = learner.model, learner.arch_kwargs, learner.input_spec
    if result.is_best:
        save_checkpoint(
            build_checkpoint(model, cfg.model, arch_kwargs, spec, **common), run.best_path
        )
    extra = {
        "optimizer": learner.optimizer.state_dict(),
        "scaler": learner.scaler.state_dict() if learner.scaler is not None else None,
        "rng": rng_state(),
        "best": progress.best,
    }
    save_checkpoint(
        build_checkpoint(model, cfg.model, arch_kwargs, spec, **common, extra=extra),
        run.last_path,
    )


def finish(run: Run, progress: Progress) -> None:
    if run.world > 1:
        dist.barrier()
    if progress.start_epoch >= run.cfg.epochs:
        run.log(f"{run.last_path} already completed {progress.start_epoch} epochs; nothing to do")
    best = progress.best
    run.log(
        f"best: epoch {best['epoch']} ({best['metric']} {best['score']:.4f}) -> {run.best_path}"
    )


# ----------------------------------------------------------------------------- training


def train(config: TrainConfig) -> Path:
    """Train (or resume) a run; returns the path of its best checkpoint (``OUT/best.pt``).

    Writes into ``config.out``: best.pt, last.pt, split.json, log.csv. Raises UserError for
    mistakes the user can fix (bad data folder, an existing run without --resume, ...).
    """
    cfg = config.resolved()
    run = Run(cfg, *setup_distributed(cfg.device))
    try:
        resume_ckpt = load_resume_checkpoint(run)
        split = resume_ckpt["split"] if resume_ckpt else resolve_split(cfg)
        prepare_out(run, split)
        seed_everything(cfg.seed)  # the model's initial weights come from the seed
        learner = build_learner(run, build_loss(cfg))
        progress = restore(run, learner, resume_ckpt)
        wrap_ddp(run, learner)
        data = build_data(run, split, learner.input_spec)
        if resume_ckpt is None and cfg.spectral_indices == "anchored":
            fit_spectral_anchor(run, learner, data)
        log_setup(run, learner, split)
        epoch_log = EpochLog.open(run, progress.start_epoch)

        for epoch in range(progress.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            train_loss = train_one_epoch(run, learner, data, epoch)
            val = validate(run, learner, data)
            result = EpochResult(epoch + 1, train_loss, val, time.perf_counter() - t0)
            result.is_best = progress.update(result)
            # rank 0 writes the CSV row, then best.pt, then last.pt: a kill between is harmless
            if run.rank == 0:
                epoch_log.write(result, learner)
                save_checkpoints(run, learner, split, progress, result)
            run.log(result.line(cfg.epochs))

        epoch_log.close()
        finish(run, progress)
        return run.best_path
    finally:
        if run.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- CLI


def cli_fields() -> list[Field]:
    """The TrainConfig fields that are command-line options (made with :func:`option`)."""
    return [f for f in fields(TrainConfig) if "cli" in f.metadata]


def _argparse_kwargs(f: Field, hint: Any) -> dict[str, Any]:
    """add_argument keywords of a TrainConfig field: derived from its type and default,
    then those given to :func:`option`."""
    kw: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
    if f.default is MISSING and f.default_factory is MISSING:
        kw["required"] = True
    elif not f.metadata["cli"].get("required"):
        kw["default"] = f.default_factory() if f.default is MISSING else f.default
    if hint is bool:
        kw["action"] = "store_true"
    elif hint in (int, int | None):
        kw["type"] = int
    elif hint in (float, float | None):
        kw["type"] = float
    return {**kw, **{k: v for k, v in f.metadata["cli"].items() if k != "flag"}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend train",
        description="Train a water/land segmentation model on SNOWED. Defaults per model follow "
        "Table II of the paper. Outputs in --out: best.pt, last.pt, split.json, log.csv.",
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in cli_fields():
        flag = f.metadata["cli"].get("flag", "--" + f.name.replace("_", "-"))
        p.add_argument(flag, **_argparse_kwargs(f, hints[f.name]))
        if f.name == "amp":  # not a TrainConfig field; after --no-amp, as --help always had it
            p.add_argument(
                "--nproc", type=int, default=1, help="start N processes with torchrun (DDP)"
            )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in cli_fields()})


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
    cfg = config_from_args(args)

    def _stop(signum, frame):
        raise Cancelled()

    with contextlib.suppress(ValueError):  # not in the main thread: keep default handling
        signal.signal(signal.SIGTERM, _stop)
    train(cfg)
    return 0
