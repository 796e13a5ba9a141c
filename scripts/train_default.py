"""Train WaterSeg's bundled default model and write its model card.

    .venv/bin/python scripts/train_default.py [--data ../shared/data/snowed-sample/SNOWED]

1. Leave-one-sample-out cross-validation over the SNOWED samples in --data: for each sample,
   train on the others with the project's own training code (``backend.train.train``, the
   code behind ``make train`` / ``python -m backend train``), then score the model and the
   NDWI > 0 baseline on the held-out sample's pixels (IoU water / land / mean, plus the
   calibration of the model's water probability: NLL, Brier score, expected calibration error).
2. Train the final model on all samples with the same config.
3. Convert its weights to fp16, write ``resources/models/waterseg-default.pt`` (inference-only
   checkpoint, no optimizer state) and its SHA-256 beside it, and write
   ``resources/models/MODEL_CARD.md`` with the cross-validation table.

With so few samples an "epoch" is short, so each sample is listed ``--repeat`` times in the
training split (a folder of symbolic links under the run folder): every copy gets its own
random crop, flip/rotation and spectral jitter, and checkpoints are written once per
``repeat`` passes instead of once per pass. No sample is ever used for model selection: the
validation subset is empty; the shipped weights average the last ``--swa`` epochs (constant
learning rate, fixed epoch count). The fixed spectral-index input layer
(``--spectral-indices``, backend/models/spectral.py) is on by default. :data:`SEARCH` records
every configuration tried and its leave-one-out result; the model card prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend import paths  # noqa: E402
from backend.baselines import ndwi_water_mask  # noqa: E402
from backend.checkpoint import (  # noqa: E402
    load_model,
    read_checkpoint,
    save_checkpoint,
    sha256_of,
)
from backend.datasets.snowed import band_indices, list_samples, load_sample_arrays  # noqa: E402
from backend.metrics import ConfusionMatrix  # noqa: E402
from backend.models.blocks import scale_channels  # noqa: E402
from backend.models.ensemble import ensemble_checkpoint  # noqa: E402
from backend.train import TrainConfig, train  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "snowed-sample" / "SNOWED"
KEYS = ("iou_water", "iou_land", "iou_mean")

# Every configuration tried while choosing the shipped one (engineer H, 2026-11-28), with its
# leave-one-out IoU mean (%) per held-out sample 0001/0002/0003/0004/0006 and the mean; NDWI
# scores 97.04/93.64/70.42/99.30/96.63, mean 91.40. Choice rule: the highest LOO mean over all
# folds, confirmed with a second seed; nothing chosen per fold. Written into the model card.
SEARCH: list[tuple[str, str]] = [
    (
        "U-Net 0.125, no spectral layer, lr 5e-4, 20 epochs, SWA 10 (engineer F's model)",
        "97.74 / 90.75 / 65.53 / 98.58 / 95.36 -> 89.59",
    ),
    (
        "U-Net 0.125 + spectral layer, lr 5e-4, 20 epochs, SWA 10",
        "90.19 / 92.23 / 72.66 / 99.08 / 95.35 -> 89.90",
    ),
    (
        "U-Net 0.125 + spectral layer, lr 2e-4, 20 epochs, SWA 10",
        "93.34 / 90.75 / 73.67 / 98.76 / 92.27 -> 89.76",
    ),
    (
        "U-Net 0.125 + spectral layer, crop 256 (repeat 4), 20 epochs, SWA 10",
        "90.77 / 83.38 / 71.03 / 98.25 / (stopped) -> below NDWI",
    ),
    (
        "U-Net 0.0625 + spectral layer, lr 5e-4, 20 epochs, SWA 10, seed 0",
        "98.59 / 93.32 / 73.84 / 99.14 / 96.16 -> 92.21",
    ),
    (
        "U-Net 0.0625 + spectral layer, lr 5e-4, 20 epochs, SWA 10, seed 1",
        "97.84 / 88.67 / 61.66 / 97.01 / 96.42 -> 88.32",
    ),
    (
        "U-Net 0.0625, no spectral layer, 20 epochs, SWA 10 (ablation)",
        "42.16 / 41.19 / 0.85 / 19.13 / (stopped) -> fails",
    ),
    (
        "U-Net 0.0625 + spectral layer, lr 5e-4, 40 epochs, SWA 20, seed 0",
        "93.91 / 93.36 / 72.99 / 99.43 / 96.03 -> 91.14",
    ),
    (
        "U-Net 0.0625 + spectral layer, lr 5e-4, 40 epochs, SWA 20, seed 1",
        "97.99 / 89.77 / 62.24 / (stopped) -> below NDWI",
    ),
    (
        "U-Net 0.0625, spectral indices only (no raw bands), 20 epochs, SWA 10",
        "73.79 / (stopped) -> below NDWI",
    ),
    (
        "U-Net 0.0625 + spectral layer, lr 5e-4, 20 epochs, SWA 10, seed 2",
        "90.44 / 87.38 / 82.19 / 98.75 / 93.16 -> 90.38",
    ),
]
SEARCH += [
    (
        "U-Net 0.0625 + spectral layer, spectral offset jitter 0.002 (not 0.01), seed 0",
        "97.13 / 93.78 / 75.35 / 99.05 / 94.13 -> 91.89",
    ),
    (
        "U-Net 0.0625 + spectral layer, spectral offset jitter 0.002 (not 0.01), seed 1",
        "98.20 / 88.32 / 62.18 / 97.44 / 95.69 -> 88.37",
    ),
    (
        "**U-Net 0.0625 + spectral layer, residual index head, 20 epochs, SWA 10, seed 0 "
        "(shipped)**",
        "99.00 / 93.49 / 72.67 / 99.06 / 96.20 -> **92.08**",
    ),
    (
        "U-Net 0.0625 + spectral layer, residual index head, 20 epochs, SWA 10, seed 1",
        "97.68 / 90.10 / 63.64 / 97.97 / 97.45 -> 89.37",
    ),
    (
        "U-Net 0.0625 + spectral layer, residual index head, lr 2e-4, 40 epochs, SWA 20, seed 0",
        "98.79 / 92.76 / 73.77 / 99.41 / 95.84 -> 92.11",
    ),
    (
        "U-Net 0.0625 + spectral layer, residual index head, lr 2e-4, 40 epochs, SWA 20, seed 1",
        "90.26 / 87.50 / 63.07 / (stopped) -> at most 88.17",
    ),
    (
        "U-Net 0.0625 + spectral layer, residual index head, brightness per crop "
        "(--brightness-mode online), seed 0",
        "95.73 / 93.08 / 72.20 / 98.99 / 96.20 -> 91.24",
    ),
    (
        "U-Net 0.0625 + spectral layer, residual index head, brightness per crop "
        "(--brightness-mode online), seed 1",
        "97.30 / 90.61 / 64.00 / 97.96 / 96.30 -> 89.23",
    ),
]
# Seed ensembles of the shipped configuration (engineer I, 2026-11-28; --ensemble / --seeds:
# each fold's K members trained with the seeds listed, logits averaged; rule fixed beforehand:
# ship the ensemble only if two disjoint seed sets both beat NDWI's 91.40 on the LOO mean).
SEARCH += [
    (
        f"U-Net 0.0625 + spectral layer, residual index head, 20 epochs, SWA 10, seed {seed}",
        result,
    )
    for seed, result in (
        (2, "90.74 / 90.06 / 75.35 / 99.22 / 93.50 -> 89.78"),
        (3, "74.10 / 89.12 / 67.75 / 98.23 / 95.47 -> 84.93"),
        (4, "94.32 / 94.46 / 69.13 / 98.19 / 97.43 -> 90.70"),
        (5, "91.81 / 88.78 / 75.51 / 99.67 / 95.07 -> 90.17"),
    )
]
SEARCH += [
    (
        f"Seed ensemble (mean of logits) of the residual configuration, seeds {seeds}",
        result,
    )
    for seeds, result in (
        ("0, 1", "98.41 / 91.98 / 70.28 / 98.74 / 96.71 -> 91.22"),
        ("0, 1, 2", "96.84 / 92.00 / 71.43 / 99.19 / 95.94 -> 91.08"),
        ("3, 4, 5", "87.19 / 94.52 / 70.32 / 98.63 / 96.81 -> 89.50"),
        ("0 - 5", "91.44 / 92.95 / 70.94 / 98.94 / 96.43 -> 90.14"),
    )
]
# Started from NDWI (engineer J, 2026-11-28; --spectral-indices ndwi-init: the untrained model
# predicts exactly NDWI > 0, k = 10, head 0 zeroed; the shipped recipe otherwise; rule fixed
# beforehand: ship only if seeds 0 and 1 both beat NDWI's 91.40 on the LOO mean). Neither
# does: the seeds agree within 0.05 (the start removes the seed lottery), but training only
# moves the threshold slightly below NDWI = 0 (bright surf on sample_0001; clipped pixels
# with NDWI exactly 0 on sample_0003). Not shipped.
SEARCH += [
    (f"U-Net 0.0625, residual index head started from NDWI > 0 (ndwi-init), {lr}, seed {seed}", r)
    for lr, seed, r in (
        ("lr 5e-4", 0, "90.90 / 93.76 / 68.17 / 99.27 / 96.62 -> 89.74"),
        ("lr 5e-4", 1, "90.37 / 93.86 / 68.41 / 99.22 / 96.61 -> 89.69"),
        ("lr 1e-4", 0, "96.23 / 93.63 / 68.40 / 99.29 / 96.62 -> 90.83"),
        ("lr 1e-4", 1, "96.36 / 93.70 / 68.43 / 99.28 / 96.63 -> 90.88"),
    )
]
# Neither seed set's ensemble beats NDWI (91.08 and 89.50 vs 91.40; all six seeds: 90.14), so
# the single seed-0 model below stays shipped: the residual configuration's expected LOO mean
# is about 90 - 91 (single seeds 84.93 - 92.08), and seed 0's 92.08 is the luckiest draw.

# Shipped: the configuration with the highest mean over seeds 0 and 1 (residual index head:
# 90.73; spectral layer alone 90.27, with less offset jitter 90.13, residual at lr 2e-4 for 40
# epochs at most 90.14, residual with per-crop brightness 90.24), trained with seed 0 (the
# default seed). No configuration beats NDWI's 91.40 averaged over seeds -- see the card.


# ---- The SWIR default model (second session, 2026-11-28) ---------------------------------
# Bands B2 B3 B4 B8 B11 B12 (SNOWED has them all; 15 band-pair indices, among them MNDWI =
# (B3 - B11) / (B3 + B11)). Reference baselines on the same pixels: NDWI 97.04 / 93.64 /
# 70.42 / 99.30 / 96.63 -> 91.40; MNDWI 96.37 / 93.73 / 86.75 / 99.45 / 95.60 -> 94.38.
# Choice rule, fixed before the anchored runs: the highest LOO mean averaged over seeds 0 and
# 3 (3: the seed on which the residual configuration failed worst); ship seed 0.
SWIR_SEARCH: list[tuple[str, str]] = (
    [
        (
            f"6 bands, U-Net 0.0625 + spectral layer, residual index head (the 4-band recipe), seed {sd}",
            r,
        )
        for sd, r in (
            (0, "98.85 / 94.85 / 98.61 / 99.69 / 95.86 -> 97.57"),
            (1, "91.94 / 94.71 / 98.39 / 99.55 / 95.08 -> 95.93"),
            (2, "98.35 / 94.71 / 99.32 / 99.51 / 95.85 -> 97.55"),
            (3, "80.74 / 84.05 / 71.92 / 98.57 / 92.66 -> 85.59"),
            (4, "82.77 / 89.15 / 98.09 / 98.68 / 95.54 -> 92.85"),
        )
    ]
    + [
        (
            "6 bands, fixed anchor 10 x NDWI + U-Net correction bounded by 1.5 (ndwi-anchored), seed 0",
            "97.55 / 94.48 / 70.76 / 99.35 / 96.86 -> 91.80",
        ),
        (
            "6 bands, fixed anchor 10 x MNDWI + U-Net correction bounded by 1.5, seed 0",
            "97.23 / 93.95 / 86.28 / 99.47 / 95.46 -> 94.48",
        ),
        (
            "6 bands, fixed anchor 10 x MNDWI + U-Net correction bounded by 1.5, seed 3",
            "94.10 / 92.30 / 84.06 / 99.33 / 95.43 -> 93.04",
        ),
        (
            "6 bands, per-pixel logistic regression on the 15 indices only (no network; L-BFGS, "
            "outside train_default.py)",
            "97.10 / 94.88 / 99.01 / 99.58 / 96.25 -> 97.36",
        ),
        (
            "6 bands, the same with a 5 x 5 linear filter instead of per-pixel (spatial context)",
            "98.60 / 93.89 / 78.56 / 99.60 / 95.24 -> 93.18",
        ),
        (
            "6 bands, fitted anchor (logistic regression) + U-Net correction bounded by 1.5, seed 0",
            "97.18 / 94.91 / 95.69 / 99.58 / 96.29 -> 96.73",
        ),
        (
            "6 bands, fitted anchor (logistic regression) + U-Net correction bounded by 1.5, seed 3",
            "92.35 / 94.54 / 95.81 / 99.53 / 96.09 -> 95.66",
        ),
    ]
    + [
        (f"**6 bands, fitted anchor + U-Net correction bounded by 0.25 (anchored), seed {sd}**", r)
        for sd, r in (
            (0, "97.61 / 94.84 / 99.01 / 99.59 / 96.22 -> **97.45** (shipped)"),
            (3, "96.07 / 94.76 / 97.88 / 99.56 / 96.39 -> 96.93"),
            (1, "96.79 / 94.81 / 98.52 / 99.55 / 96.29 -> 97.19 (after the choice)"),
            (2, "97.06 / 94.76 / 99.01 / 99.58 / 96.33 -> 97.35 (after the choice)"),
        )
    ]
)
# 4-band runs of the same session (anchoring cannot fix the 4-band model: the net learns from
# four tiles to lower the NDWI threshold, which fails on sample_0001's bright beach):
RGBN_SEARCH_2: list[tuple[str, str]] = [
    (
        "4 bands, fixed anchor 10 x NDWI + U-Net correction bounded by 1.5, seed 0",
        "84.64 / 94.47 / 68.67 / 99.26 / 96.53 -> 88.71",
    ),
    (
        "4 bands, fixed anchor 10 x NDWI + U-Net correction bounded by 1.5, seed 1",
        "94.70 / 94.16 / 68.44 / 99.04 / 96.86 -> 90.64",
    ),
    (
        "4 bands, fixed anchor 10 x NDWI + U-Net correction bounded by 0.5, seed 0",
        "87.06 / 94.23 / 68.53 / 99.25 / 96.94 -> 89.20",
    ),
    (
        "4 bands, fixed anchor 10 x NDWI + U-Net correction bounded by 0.25, seed 0",
        "88.96 / 93.97 / 68.65 / 99.30 / 96.88 -> 89.55",
    ),
    (
        "4 bands, per-pixel logistic regression on the 6 indices only (no network)",
        "87.25 / 90.22 / 72.63 / 99.27 / 96.58 -> 89.19",
    ),
]
SEARCH += RGBN_SEARCH_2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "default", help="run folders")
    p.add_argument(
        "--bands",
        type=lambda t: [b.strip().upper() for b in t.split(",")],
        default=["B2", "B3", "B4", "B8", "B11", "B12"],
        help="input bands in model order (B3 and B8 must be among them, for the NDWI baseline; "
        "B2,B3,B4,B8 with --name waterseg-rgbn --card MODEL_CARD-rgbn.md for the 4-band model)",
    )
    p.add_argument("--model", default="unet")
    p.add_argument("--width", default="0.0625")
    p.add_argument("--loss", default="ce")
    p.add_argument("--epochs", type=int, default=20, help="epochs (each of --repeat passes)")
    p.add_argument("--repeat", type=int, default=16, help="copies of each sample per epoch")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--spectral-gain", type=float, default=0.05)
    p.add_argument("--spectral-offset", type=float, default=0.01)
    p.add_argument(
        "--brightness",
        type=lambda t: tuple(float(v) for v in t.split(",")),
        default=(0.3, 2.0),
        help="range of the per-copy brightness factor, e.g. 0.4,2.5 (1,1: off)",
    )
    p.add_argument(
        "--spectral-indices",
        choices=["all", "only", "residual", "ndwi-init", "ndwi-anchored", "anchored", "none"],
        default="anchored",
        help="fixed normalised differences of all band pairs: appended to the bands (all; "
        "residual: also a learned per-pixel linear map of them added to the logits; "
        "ndwi-init: residual, started so that the untrained model predicts NDWI > 0 exactly; "
        "the default anchored: a logistic regression on them, fitted first and frozen, plus "
        "the net's correction bounded by --anchor-bound; ndwi-anchored: the same with a fixed "
        "10 x NDWI), instead of the bands (only), or none",
    )
    p.add_argument(
        "--anchor-bound",
        type=float,
        default=0.25,
        help="with --spectral-indices (ndwi-)anchored: the most the net may move each logit",
    )
    p.add_argument(
        "--anchor-bands",
        type=lambda t: [b.strip().upper() for b in t.split(",")],
        help="with --spectral-indices ndwi-anchored: the anchoring index (default B3,B8)",
    )
    p.add_argument(
        "--brightness-mode",
        choices=["copies", "online"],
        default="copies",
        help="copies: one fixed factor per repeated copy (written beforehand); online: a new "
        "factor for every crop in every epoch (backend.augment.Augment brightness)",
    )
    p.add_argument("--swa", type=int, default=10, help="average the weights of the last K epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="K > 1: every fold and the final model are a seed ensemble of K members trained "
        "with seeds --seed .. --seed + K - 1 (or --seeds), logits averaged",
    )
    p.add_argument("--seeds", help="comma-separated member seeds (overrides --seed/--ensemble)")
    p.add_argument("--folds", help="comma-separated held-out ids (default: all)")
    p.add_argument("--skip-final", action="store_true", help="cross-validation only")
    p.add_argument("--skip-cv", action="store_true", help="final model only (card keeps old table)")
    p.add_argument("--dest", type=Path, default=paths.MODELS_DIR, help="where the model goes")
    p.add_argument(
        "--name",
        default=paths.DEFAULT_MODEL.stem,
        help="file name of the model without .pt (waterseg-default; waterseg-rgbn for the "
        "4-band model)",
    )
    p.add_argument("--card", default="MODEL_CARD.md", help="file name of the model card")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: shared machines)"
    )
    args = p.parse_args(argv)
    if args.seeds:
        args.seed_list = [int(v) for v in args.seeds.split(",")]
    else:
        args.seed_list = [args.seed + i for i in range(max(1, args.ensemble))]
    args.ensemble = len(args.seed_list)
    return args


def repeated_folder(
    data: Path, ids: list[str], repeat: int, dest: Path, brightness: tuple[float, float], seed: int
) -> list[str]:
    """Make ``dest/<id>__r<k>`` (k < repeat) from ``data/<id>``; return the new ids.

    Copy 0 links to the original sample. Copies k >= 1 hold the image times one brightness
    factor drawn log-uniformly from ``brightness`` (seeded by seed, sample and k; the same
    factor for all bands, so band ratios such as NDWI are kept) and link the original label.
    This teaches the model that water is a spectral shape, not a brightness: the five
    training tiles span only a narrow range of illumination, haze and land cover.
    """
    dest.mkdir(parents=True, exist_ok=True)
    lo, hi = np.log(brightness[0]), np.log(brightness[1])
    out = []
    for n, sample_id in enumerate(ids):
        src = (data / sample_id).resolve()
        for k in range(repeat):
            folder = dest / f"{sample_id}__r{k}"
            out.append(folder.name)
            if folder.exists():
                continue
            if k == 0 or hi <= lo:
                folder.symlink_to(src, target_is_directory=True)
                continue
            rng = np.random.default_rng([seed, n, k])
            factor = float(np.exp(rng.uniform(lo, hi)))
            image, _ = load_sample_arrays(src)
            tmp = dest / f".{folder.name}.tmp"
            tmp.mkdir(exist_ok=True)
            scaled = np.clip(np.rint(image.astype(np.float32) * factor), 1, 65535).astype(np.uint16)
            np.save(tmp / "sample_2A.npy", scaled)
            (tmp / "label.npy").symlink_to(src / "label.npy")
            tmp.rename(folder)
    return out


def train_run(args: argparse.Namespace, train_ids: list[str], run_dir: Path) -> Path:
    """Train on ``train_ids`` with the project's training code; return the final checkpoint.

    With ``--swa K`` > 1 the run stops after each of the last K epochs (``--resume`` makes the
    stops invisible to training) and keeps those weights; their average, with BatchNorm
    statistics recomputed on the training tiles (stochastic weight averaging, Izmailov et
    al. 2018), is written to ``run_dir/swa.pt``. BatchNorm running statistics are averaged
    too: recomputing them on the unaugmented training tiles (the usual SWA step) was measured
    to hurt badly here, since the model was trained on augmented statistics.
    """
    online = args.brightness_mode == "online"
    reps = repeated_folder(
        args.data,
        train_ids,
        args.repeat,
        run_dir / "data",
        (1.0, 1.0) if online else args.brightness,
        args.seed,
    )
    cfg = TrainConfig(
        data=str(run_dir / "data"),
        model=args.model,
        width=args.width,
        loss=args.loss,
        out=str(run_dir),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device="auto",
        resume=True,
        augment=True,
        spectral_gain=args.spectral_gain,
        spectral_offset=args.spectral_offset,
        crop=args.crop,
        brightness=list(args.brightness) if online else None,
        spectral_indices={"all": True, "none": False}.get(
            args.spectral_indices, args.spectral_indices
        ),
        split={"seed": args.seed, "train": reps, "val": [], "test": []},
        quiet=True,
        anchor_bound=args.anchor_bound if "anchored" in args.spectral_indices else None,
        anchor_bands=args.anchor_bands,
        bands=list(args.bands),
    )
    t0 = time.perf_counter()
    first = max(1, args.epochs - max(1, args.swa) + 1)
    snapshots = []
    for stop in range(first, args.epochs + 1):
        snap = run_dir / f"snapshot-{stop:03d}.pt"
        if not snap.exists():
            cfg.epochs = stop
            train(cfg)
            ckpt = read_checkpoint(run_dir / "last.pt")
            if int(ckpt["epoch"]) != stop:
                raise RuntimeError(f"{run_dir / 'last.pt'} is at epoch {ckpt['epoch']}, not {stop}")
            torch.save(ckpt["state_dict"], snap)
        snapshots.append(torch.load(snap, map_location="cpu", weights_only=True))
    print(f"  trained on {','.join(train_ids)} in {time.perf_counter() - t0:.0f} s", flush=True)
    if len(snapshots) == 1:
        return run_dir / "last.pt"

    ckpt = read_checkpoint(run_dir / "last.pt")
    for key in ("optimizer", "scheduler", "scaler", "rng", "best"):
        ckpt.pop(key, None)
    ckpt["state_dict"] = {
        k: torch.stack([s[k].float() for s in snapshots]).mean(0) if v.is_floating_point() else v
        for k, v in snapshots[-1].items()
    }
    ckpt["swa"] = {"epochs": list(range(first, args.epochs + 1))}
    return save_checkpoint(ckpt, run_dir / "swa.pt")


def fold_checkpoint(args: argparse.Namespace, train_ids: list[str], run_dir: Path) -> Path:
    """Train the model (or the seed ensemble) of one run; return its checkpoint path.

    One seed: :func:`train_run` in ``run_dir``. A seed ensemble: member i is trained by
    :func:`train_run` with seed ``args.seed_list[i]`` in ``<out>/seed<s>/<run_dir name>``
    (its own brightness copies, crops, initialisation; an existing member run is reused), and
    the members' SWA checkpoints are merged into ``run_dir/ensemble.pt``
    (:func:`backend.models.ensemble.ensemble_checkpoint`: the mean of the members' logits).
    """
    if args.ensemble == 1:
        return train_run(args, train_ids, run_dir)
    members = []
    for seed in args.seed_list:
        print(f"  member seed {seed}", flush=True)
        member_args = argparse.Namespace(**{**vars(args), "seed": seed})
        members.append(
            read_checkpoint(
                train_run(member_args, train_ids, args.out / f"seed{seed}" / run_dir.name)
            )
        )
    ckpt = ensemble_checkpoint(members)
    ckpt["config"] = {**ckpt.get("config", {}), "seed": None, "ensemble_seeds": args.seed_list}
    run_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(ckpt, run_dir / "ensemble.pt")


def run_checkpoint(run_dir: Path) -> Path:
    """The checkpoint a run folder's evaluation uses: ensemble.pt, else swa.pt, else last.pt."""
    for name in ("ensemble.pt", "swa.pt"):
        if (run_dir / name).exists():
            return run_dir / name
    return run_dir / "last.pt"


def water_probability(model, spec, raw: np.ndarray) -> np.ndarray:
    """Raw (4, H, W) uint16 -> water probability (H, W) float32 from head 0."""
    x = torch.from_numpy(spec.normalise(raw))[None]
    with torch.inference_mode():
        out = model(x)
    logits = out[0] if isinstance(out, tuple | list) else out
    return torch.softmax(logits.float(), dim=1)[0, 1].numpy()


def scores(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    cm = ConfusionMatrix()
    cm.update(pred.astype(np.uint8), label.astype(np.uint8))
    return cm.compute()


def calibration(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> dict[str, float]:
    """NLL, Brier score and expected calibration error (10 equal-width bins) of p(water)."""
    p = np.clip(prob.ravel().astype(np.float64), 1e-6, 1 - 1e-6)
    y = label.ravel().astype(np.float64)
    nll = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    brier = float(((p - y) ** 2).mean())
    conf = np.maximum(p, 1 - p)
    correct = ((p > 0.5) == (y > 0.5)).astype(np.float64)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return {"nll": nll, "brier": brier, "ece": float(ece)}


def scale_head(model_or_state, temperature: float):
    """Divide the segmentation head's weights and bias by ``temperature`` (in place).

    In a seed ensemble every member's head is divided: the ensemble's output, the mean of the
    members' logits, is then divided by ``temperature`` exactly.
    """
    state = model_or_state.state_dict() if hasattr(model_or_state, "state_dict") else model_or_state
    keys = [k for k in state if k.endswith(("head.heads.0.weight", "head.heads.0.bias"))]
    prefixes = {k.rsplit("head.heads.0.", 1)[0] for k in keys}
    if not keys or len(keys) != 2 * len(prefixes):
        raise RuntimeError(f"no unique segmentation head per member in the state dict: {keys}")
    keys += [k for k in state if k.endswith(("index_head.weight", "index_head.bias"))]  # residual
    # anchored: d(w, c) + bound * tanh(net / bound) is divided by T when w, c, bound and the
    # net's head are
    keys += [k for k in state if k.endswith(("anchor_weight", "anchor_bias", "anchor_bound"))]
    for key in keys:
        state[key].copy_((state[key].float() / temperature).to(state[key].dtype))
    return model_or_state


def model_bands(image: np.ndarray, spec) -> np.ndarray:
    """A SNOWED image (H, W, 12) -> the model's bands (C, H, W), in the checkpoint's order."""
    return np.ascontiguousarray(image[:, :, band_indices(spec.bands)].transpose(2, 0, 1))


def evaluate_fold(
    ckpt_path: Path, data: Path, sample_id: str, temperature: float = 1.0
) -> dict[str, dict[str, float]]:
    """Scores of the model and of NDWI on one held-out sample."""
    model, spec, _ = load_model(ckpt_path)
    scale_head(model, temperature)
    image, label = load_sample_arrays(data / sample_id)
    raw = model_bands(image, spec)
    prob = water_probability(model, spec, raw)
    model_scores = scores(prob > 0.5, label)
    model_scores.update(calibration(prob, label))
    result = {
        "model": model_scores,
        "ndwi": scores(ndwi_water_mask(raw, bands=spec.bands, nodata_value=None), label),
        "water_fraction": float(label.mean()),
    }
    if "B11" in spec.bands:
        mndwi = ndwi_water_mask(raw, bands=spec.bands, nodata_value=None, other="B11")
        result["mndwi"] = scores(mndwi, label)
    return result


def fit_temperature(args: argparse.Namespace, ids: list[str]) -> float:
    """Temperature T minimising the NLL of softmax(logits / T) on the pooled held-out
    predictions of the cross-validation folds (every pixel predicted by a model that never
    saw it). One number; it changes probabilities, never the water/land decision."""
    diffs, labels = [], []
    for sample_id in ids:
        model, spec, _ = load_model(run_checkpoint(args.out / f"loo-{sample_id}"))
        image, label = load_sample_arrays(args.data / sample_id)
        raw = model_bands(image, spec)
        with torch.inference_mode():
            out = model(torch.from_numpy(spec.normalise(raw))[None])
        logits = (out[0] if isinstance(out, tuple | list) else out).double()[0]
        diffs.append((logits[1] - logits[0]).ravel())
        labels.append(torch.from_numpy(label.astype(np.float64)).ravel())
    d, y = torch.cat(diffs), torch.cat(labels)
    grid = torch.exp(torch.linspace(np.log(0.05), np.log(5.0), 401, dtype=torch.float64))
    nll = [torch.nn.functional.binary_cross_entropy_with_logits(d / t, y).item() for t in grid]
    return float(grid[int(np.argmin(nll))])


def cross_validate(args: argparse.Namespace, ids: list[str]) -> dict[str, dict]:
    held = args.folds.split(",") if args.folds else ids
    results = {}
    for sample_id in held:
        print(f"fold: hold out {sample_id}", flush=True)
        run_dir = args.out / f"loo-{sample_id}"
        ckpt = fold_checkpoint(args, [i for i in ids if i != sample_id], run_dir)
        results[sample_id] = evaluate_fold(ckpt, args.data, sample_id, args.temperature)
        m, n = results[sample_id]["model"], results[sample_id]["ndwi"]
        print(
            f"  {sample_id}: model IoU mean {100 * m['iou_mean']:.2f}  NDWI {100 * n['iou_mean']:.2f}  "
            f"(ECE {m['ece']:.4f})",
            flush=True,
        )
        (args.out / "cv.json").write_text(json.dumps(results, indent=1))
    return results


def export_default(last: Path, dest_dir: Path, cv: dict | None, args: argparse.Namespace) -> Path:
    """Strip training state, cast weights to fp16, write the bundled model and its SHA-256."""
    ckpt = read_checkpoint(last)
    for key in ("optimizer", "scheduler", "scaler", "rng", "best"):
        ckpt.pop(key, None)
    state = {
        k: v.float().clone() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    scale_head(state, args.temperature)
    ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    ckpt["temperature_folded_into_head"] = float(args.temperature)
    ckpt["torch_version"] = str(ckpt.get("torch_version", torch.__version__))
    seed = args.seed_list if args.ensemble > 1 else args.seed
    ckpt["split"] = {"seed": seed, "train": list_samples(args.data), "val": [], "test": []}
    ckpt["metrics"] = {"loo": cv or {}}
    ckpt["config"] = {
        **ckpt.get("config", {}),
        "data": "SNOWED sample (5 tiles)",
        "repeat": args.repeat,
    }
    ckpt["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    dest = save_checkpoint(ckpt, dest_dir / f"{args.name}.pt")
    sha = sha256_of(dest)
    (dest_dir / f"{dest.name}.sha256").write_text(f"{sha}  {dest.name}\n")
    load_model(dest, sha)  # round trip: weights_only load + checksum
    return dest


ANCHORED_TEXT = """\
**Anchored decision** (`spectral_indices="anchored"`): the output is a fixed per-pixel linear
decision on the {n_pairs} indices plus a bounded correction from the U-Net:
logit(water) - logit(land) = d + e, d = w . indices + c, |e| < {limit:g}
(`backend/models/spectral.py`, `WithSpectralIndices`). w and c are fitted first, by logistic
regression (L-BFGS, convex: no seed lottery) on the training tiles (`spectral.fit_anchor`,
called by `backend.train.train`), and then frozen; the U-Net's logits pass through
{bound:g} x tanh(. / {bound:g}), so it can change the decision only where the linear rule is
unsure (|d| < {limit:g}, i.e. p(water) between about 0.38 and 0.62) and never overrule a clear
spectral decision, whatever it learned from four or five tiles. Without the bound, the same
U-Net trained on four tiles sometimes called a whole bright beach water (see the search
table: single seeds from 85.6 to 97.6).

"""

MNDWI_TEXT = (
    " (and, in the last column, the IoU mean of\nMNDWI = (B3 - B11) / (B3 + B11) > 0, "
    "the index that uses short-wave infrared)"
)

SWIR_BANDS_TEXT = (
    "; B11 and B12 short-wave infrared at 20 m, resampled to the 10 m grid as in SNOWED"
)

RGBN_LIMITS = """\
- **Shadows, dark urban surfaces, burnt areas** can look like water in these four bands. On
  the 4 bands of the synthetic demo scene the model scores IoU mean 97.4 % against NDWI's
  98.9 %, mostly through false water patches between the town's buildings (dark roofs and
  street shadows): check urban waterfronts, or use the default model with B11/B12."""

SWIR_LIMITS = """\
- **Needs B11 and B12**, resampled to the 10 m grid of B2 - B8 (as in SNOWED and in a 10 m
  stack made with GDAL or SNAP). Without them WaterSeg uses `waterseg-rgbn.pt` instead.
- **Shadows** (terrain, building, cloud) are dark in every band, short-wave infrared too,
  and can still look like water; dark urban surfaces are mostly kept apart by B11/B12. On
  the synthetic demo scene (`make demo`) the model scores IoU mean 99.5 % against NDWI's
  98.9 % and MNDWI's 98.4 %.
- **Shallow or turbid water** near the shore is under-detected (sample_0006 above)."""

ENSEMBLE_NOTES = """\
**Seed variance.** Each fold's model is a seed ensemble (see Architecture) to average out
the run-to-run noise of training on four tiles; the single seeds and other seed sets of the
same configuration are in the table below.
"""

SWIR_NOTES = """\
The model beats NDWI by about 6 IoU-mean points and MNDWI by about 3 on average; per sample
(errors in pixels of 65,536; model / NDWI / MNDWI; from the seed-0 fold models):

- sample_0001 (sea, beach, town; +0.6): false water 307 / 398 / 564, missed 167 / 190 /
  154. The remaining false water is surf and wet sand along the beach that the label calls
  land.
- sample_0002 (dark marsh; +1.2): false water 439 / 465 / 806, missed 585 / 817 / 427:
  narrow dark channels are still partly missed.
- sample_0003 (+28.6): NDWI calls 1,460 pixels of small inland ponds water that the label
  calls land; in short-wave infrared these pixels are not dark (MNDWI and the model call
  21 - 365 of them water). This one sample gives most of the mean margin: read the other
  four samples for the typical gain (+0.4 on average).
- sample_0004 (+0.3): false water 108 / 210 / 135, missed 18 / 9 / 37.
- sample_0006 (**-0.4**, the one loss): shallow, turbid water along the shore (NDWI 0.02 -
  0.3) is missed: 1,185 / 1,061 / 908 pixels; the label there is also shifted onto the forest
  shore by about a pixel.

**Seed variance.** Seeds 0 - 3 of this configuration score 97.45, 97.19, 97.35 and 96.93
(IoU mean, LOO); the linear anchor depends on the seed only through its 2-million-pixel
subsample, and the bounded U-Net moves the result by at most about 1.5 points on a sample. Seeds 0 and 3 decided the configuration
(the rule in the search table); the shipped model is seed 0, the default seed.

**Brightness.** The shipped model on sample_0001 (a training tile here; the property is what
counts) with the whole image scaled by 0.5, 1 and 1.5: IoU mean 98.10, 98.09 and 98.10 (the
4-band model: 95.46, 98.84, 97.93). Haze, illumination and sensor gain that scale all bands
alike do not move its decision (tested in `tests/backend/test_default_model.py`).
"""

NOTES = """\
These five tiles are a tiny test with automatic, noisy labels (sample_0003's inland ponds are
labelled land, sample_0006's label is shifted onto the forest shore): each fold's model learns
from four tiles only, and NDWI is very hard to beat on them. Where the shipped configuration
(cross-validation models of seed 0) differs from NDWI, from the error counts per held-out
sample (65,536 pixels each):

- sample_0001 (sea, beach, town; +2.0): 193 false water pixels (NDWI 398) and 3 missed
  (NDWI 190). The remaining false water is bright surf / wet sand along the beach (NDWI
  about 0) that the label calls land.
- sample_0002 (dark marsh; -0.15): fewer false water pixels on the dark marsh (325 vs 465),
  but more missed water (1002 vs 817): dark, narrow channels with NDWI 0.01 - 0.43 are
  called land.
- sample_0003 (+2.3): label noise. None of the 1460 pond pixels NDWI calls water are called
  water by the model; its 1230 false water pixels are pond pixels whose reflectance is clipped
  to the minimum (0.0001 in every band, so NDWI = 0, which counts as land).
- sample_0004 (-0.2): 284 false water pixels (NDWI 210), land with NDWI -0.11 - 0 next to
  the water.
- sample_0006 (-0.4): shallow or turbid water along the shore (NDWI 0.02 - 0.3, NIR
  reflectance 0.02 - 0.08) is called land: 1200 missed pixels vs 1061.

**Seed variance -- read this before quoting the margin.** The same configuration trained
with seeds 1 - 5 scored 89.37, 89.78, 84.93, 90.70 and 90.17 (mean of the six seeds 89.51,
below NDWI's 91.40), and every configuration tried with a second seed dropped by 2 - 4
points (table below; the held-out IoU of sample_0001, sample_0002 and sample_0003 swings
most). Seed ensembles (logits of 3 members averaged, `--ensemble 3`) reduce the swing but
do not close the gap: seeds 0, 1, 2 score 91.08 and seeds 3, 4, 5 score 89.50 (all six
seeds: 90.14), so they were not shipped. Seed 0's margin is a lucky draw within the
run-to-run noise of training on four tiles: treat the model as slightly less accurate than
NDWI on these tiles on average (about 1 IoU-mean point), with fewer false water pixels on
bright surf and dark marsh, a spatially coherent mask and calibrated probabilities -- not
as an improvement over NDWI.
"""


def search_table(swir: bool = False) -> str:
    """Markdown list of every configuration tried (:data:`SEARCH`, or :data:`SWIR_SEARCH`)."""
    rows = SWIR_SEARCH if swir else SEARCH
    rule = (
        "the shipped one has the highest leave-one-out IoU mean averaged over seeds 0 and 3"
        if swir
        else "the shipped one has the highest leave-one-out IoU mean over all five folds "
        "averaged over seeds 0 and 1"
    )
    lines = [
        f"Configurations tried ({len(rows)} runs; {rule}; nothing was "
        "chosen per fold; IoU mean % of held-out samples 0001 / 0002 / 0003 / 0004 / 0006 -> "
        "mean; NDWI: 97.04 / 93.64 / 70.42 / 99.30 / 96.63 -> 91.40"
        + ("; MNDWI: 96.37 / 93.73 / 86.75 / 99.45 / 95.60 -> 94.38" if swir else "")
        + "; '(stopped)': run ended early once clearly below NDWI):",
        "",
        "| configuration | LOO IoU mean (%) |",
        "|---|---|",
    ]
    lines += [f"| {name} | {result} |" for name, result in rows]
    return "\n".join(lines)


def cv_table(cv: dict[str, dict]) -> tuple[str, dict[str, float]]:
    """Markdown table of the cross-validation results and the mean of each column."""
    mndwi = bool(cv) and all("mndwi" in r for r in cv.values())
    lines = [
        "| held-out sample | water % | model IoU water | land | **mean** | NDWI IoU water | land "
        "| **mean** | model - NDWI (mean) |" + (" MNDWI mean |" if mndwi else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if mndwi else ""),
    ]
    cols: dict[str, list[float]] = {}
    for sample_id, r in cv.items():
        m, n = r["model"], r["ndwi"]
        values = {f"model_{k}": m[k] for k in KEYS} | {f"ndwi_{k}": n[k] for k in KEYS}
        values["delta"] = m["iou_mean"] - n["iou_mean"]
        if mndwi:
            values["mndwi"] = r["mndwi"]["iou_mean"]
        for k, v in values.items():
            cols.setdefault(k, []).append(v)
        lines.append(
            f"| {sample_id} | {100 * r['water_fraction']:.1f} | "
            + " | ".join(f"{100 * values[f'model_{k}']:.2f}" for k in KEYS)
            + " | "
            + " | ".join(f"{100 * values[f'ndwi_{k}']:.2f}" for k in KEYS)
            + f" | {100 * values['delta']:+.2f} |"
            + (f" {100 * values['mndwi']:.2f} |" if mndwi else "")
        )
    means = {k: float(np.mean(v)) for k, v in cols.items()}
    if cv:
        lines.append(
            "| **mean of samples** | | "
            + " | ".join(f"{100 * means[f'model_{k}']:.2f}" for k in KEYS)
            + " | "
            + " | ".join(f"{100 * means[f'ndwi_{k}']:.2f}" for k in KEYS)
            + f" | **{100 * means['delta']:+.2f}** |"
            + (f" {100 * means['mndwi']:.2f} |" if mndwi else "")
        )
    return "\n".join(lines), means


def calibration_table(cv: dict[str, dict]) -> str:
    lines = ["| held-out sample | NLL | Brier | ECE |", "|---|---:|---:|---:|"]
    for sample_id, r in cv.items():
        m = r["model"]
        lines.append(f"| {sample_id} | {m['nll']:.4f} | {m['brier']:.4f} | {m['ece']:.4f} |")
    return "\n".join(lines)


def write_model_card(path: Path, model_path: Path, cv: dict, args: argparse.Namespace) -> Path:
    """Write MODEL_CARD.md for the bundled model (architecture, data, command, CV, limits)."""
    ckpt = read_checkpoint(model_path)
    n_params = sum(v.numel() for k, v in ckpt["state_dict"].items() if "num_batches" not in k)
    sha = sha256_of(model_path)
    table, means = cv_table(cv)
    cfg = {k: v for k, v in ckpt.get("config", {}).items() if k not in ("data", "out", "split")}
    command = (
        f".venv/bin/python scripts/train_default.py --bands {','.join(args.bands)} "
        f"--name {args.name} "
        f"--card {args.card} --model {args.model} --width {args.width} "
        f"--loss {args.loss} --epochs {args.epochs} --repeat {args.repeat} "
        f"--batch-size {args.batch_size} --lr {args.lr:g} --crop {args.crop} "
        f"--spectral-gain {args.spectral_gain:g} --spectral-offset {args.spectral_offset:g} "
        f"--brightness {args.brightness[0]:g},{args.brightness[1]:g} --swa {args.swa} "
        + (
            f"--seeds {','.join(map(str, args.seed_list))} "
            if args.ensemble > 1
            else f"--seed {args.seed} "
        )
        + f"--spectral-indices {args.spectral_indices} "
        + (f"--anchor-bound {args.anchor_bound:g} " if "anchored" in args.spectral_indices else "")
        + f"--brightness-mode {args.brightness_mode}"
    )
    make_equiv = (
        f"make train MODEL={args.model} WIDTH={args.width} LOSS={args.loss} "
        f'DATA=<SNOWED> TRAIN_ARGS="--bands {",".join(args.bands)} --epochs {args.epochs * args.repeat} --batch-size '
        f"{args.batch_size} --lr {args.lr:g} --crop {args.crop} --spectral-gain "
        f"{args.spectral_gain:g} --spectral-offset {args.spectral_offset:g}"
        + {"all": " --spectral-indices", "none": ""}.get(
            args.spectral_indices, f" --spectral-indices {args.spectral_indices}"
        )
        + (f" --anchor-bound {args.anchor_bound:g}" if "anchored" in args.spectral_indices else "")
        + (
            f" --brightness {args.brightness[0]:g},{args.brightness[1]:g}"
            if args.brightness_mode == "online"
            else ""
        )
        + '"'
    )
    ensemble_text = (
        f"**Seed ensemble of {args.ensemble} members** (`create_model(..., members="
        f"{args.ensemble})`, `backend/models/ensemble.py`): the same\narchitecture trained "
        f"{args.ensemble} times with seeds {', '.join(map(str, args.seed_list))} (initialisation, "
        "crops, brightness copies), weights under\n`members.<i>.`; the output is the mean of "
        "the members' logits (softmax of it = the normalised\ngeometric mean of their "
        "probabilities). Each member is the model described below.\n\n"
        if args.ensemble > 1
        else ""
    )
    bands = list(args.bands)
    n_pairs = len(bands) * (len(bands) - 1) // 2
    named = {("B3", "B8"): "NDWI", ("B4", "B8"): "-NDVI", ("B3", "B11"): "MNDWI"}
    pair_names = ", ".join(
        f"({a},{b})" + (f" = {named[(a, b)]}" if (a, b) in named else "")
        for i, a in enumerate(bands)
        for b in bands[i + 1 :]
    )
    spectral_text = ensemble_text + (
        "A fixed input layer (`SpectralIndices`, `backend/models/spectral.py`; no weights) "
        f"appends to the {len(bands)}\nreflectance bands the normalised difference (a - b) / "
        f"(a + b + 0.001) of every band pair ({n_pairs} pairs):\n{pair_names}, computed on "
        "the\nreflectances made finite and clamped to >= 0, so each lies in [-1, 1]. These "
        "ratios do not\nchange when a pixel gets uniformly brighter or darker (haze, "
        "illumination, shadow), the\ninductive bias that makes the classical indices robust; "
        f"the network sees them and the raw bands\n({len(bands) + n_pairs} input channels)."
        ' Built by `create_model("unet", width=..., spectral_indices=...)`; the\noption '
        "is stored in the checkpoint's architecture kwargs.\n\n"
        + (
            f"A learned 1 x 1 convolution of the {n_pairs} indices (a per-pixel logistic "
            'regression, zero-initialised;\n`spectral_indices="residual"`) is added to the '
            "U-Net's logits, so the network learns\nspatial corrections to a per-pixel "
            "decision on the indices, of which NDWI > 0 is one.\n\n"
            if args.spectral_indices == "residual"
            else ""
        )
        + (
            ANCHORED_TEXT.format(
                n_pairs=n_pairs,
                bound=args.anchor_bound or 1.5,
                limit=2 * (args.anchor_bound or 1.5),
            )
            if args.spectral_indices == "anchored"
            else ""
        )
        if args.spectral_indices in ("all", "residual", "anchored")
        else ""
    )
    lo, hi = args.brightness
    brightness_text = (
        f"; every crop in every epoch is multiplied by its own brightness factor\n"
        f"drawn log-uniformly from [{lo:g}, {hi:g}] (`--brightness {lo:g},{hi:g}` of "
        "`make train`; the same factor for all\nbands, so band ratios such as NDWI are kept: "
        "shadows, haze and dark or bright land covers\nthat five tiles do not show)."
        if args.brightness_mode == "online"
        else f": copy 0 as it is, copies 1..{args.repeat - 1} with the whole image\n"
        f"multiplied by one brightness factor drawn log-uniformly from [{lo:g}, {hi:g}] "
        "(written as new\nsample folders beforehand; the same factor for all bands, so band "
        "ratios such as NDWI are\nkept: shadows, haze and dark or bright land covers that "
        "five tiles do not show)."
    )
    wins = [s for s, r in cv.items() if r["model"]["iou_mean"] > r["ndwi"]["iou_mean"]]
    losses = [s for s in cv if s not in wins]
    verdict = (
        f"The model beats NDWI on {len(wins)} of {len(cv)} held-out samples"
        + (f" and loses on {', '.join(losses)}" if losses else "")
        + f"; on average by {100 * means.get('delta', float('nan')):+.2f} IoU-mean points."
        if cv
        else "No cross-validation results were recorded."
    )
    swir = "B11" in bands
    role = (
        "The learned model `segment --method model` uses when the input has the bands below.\n"
        "**Read first:** the leave-one-sample-out figures below are on the five SNOWED samples\n"
        "it learned from; on real scenes from other sources it did worse than NDWI, so\n"
        "`--method auto` (the default) uses the water indices instead. Cross-source figures\n"
        'and peers: README, "How good is it?".'
        if swir
        else "The learned model `segment --method model` uses when the input lacks the\n"
        "short-wave infrared bands B11 and B12 that `waterseg-default.pt` (`MODEL_CARD.md`)\n"
        "needs. **Read first:** it is no better than NDWI > 0 on unseen scenes, which\n"
        '`--method auto` (the default) uses; README, "How good is it?".'
    )
    text = f"""# WaterSeg bundled model `{model_path.name}`

{role} Written by `scripts/train_default.py` on
{ckpt.get("created", "?")} with WaterSeg {ckpt.get("waterseg_version", "?")} and torch
{ckpt.get("torch_version", "?")}.

- File: `resources/models/{model_path.name}`, {model_path.stat().st_size / 1e6:.2f} MB,
  SHA-256 `{sha}` (recorded in `{model_path.name}.sha256`; the backend refuses a bundled
  model whose checksum differs).
- Format: a WaterSeg checkpoint (format version {ckpt.get("format_version")}), loadable with
  `torch.load(..., weights_only=True)`; inference only (no optimizer state).

## Architecture

{spectral_text}Plain U-Net (Ronneberger et al. 2015; `backend/models/unet.py`) at width multiplier
{args.width} of the base channels (64..1024), i.e. channels
{", ".join(str(scale_channels(c, float(args.width))) for c in (64, 128, 256, 512, 1024))}
at 1/1 .. 1/16, four 2x2 poolings (input sides must be multiples of 16), 3x3 conv + BatchNorm
+ ReLU, one output head with 2 classes (0 land, 1 water). {n_params:,} parameters, stored as
fp16 (cast to fp32 when loaded). Chosen for CPU speed (WaterSeg must be usable without a GPU)
and by cross-validation: with five training tiles a small model generalises better than the
paper's MU-Net (width 0.0625 had the best leave-one-out mean of the 4-band model; see
`MODEL_CARD-rgbn.md`).

## Input and output

- Bands, in this order: **{", ".join(bands)}** of Sentinel-2 (B2 blue, B3 green, B4 red,
  B8 NIR at 10 m{SWIR_BANDS_TEXT if swir else ""}).
- Scaling: reflectance = raw x {ckpt.get("scale")} + {ckpt.get("offset")} (Sentinel-2 L2A
  digital numbers are reflectance x 10000); no further normalisation (mean/std: none).
  Products of processing baseline 04.00 or newer carry BOA_ADD_OFFSET = -1000: use
  `segment --l2a-offset`.
- Tiles of {ckpt.get("tile_size")} x {ckpt.get("tile_size")} px; the segment command tiles
  larger rasters with overlap and blends the probabilities.
- Output: logits per class; p(water) = softmax; water where p(water) > 0.5. The model was
  trained with cross-entropy only (a proper scoring rule), so p(water) is meant as a
  probability; see the calibration table below.

## Training data

The five SNOWED samples of `../shared/data/snowed-sample/SNOWED` ({", ".join(list_samples(args.data))}),
256 x 256 px each, Sentinel-2 Level-2A, labels 1 = water / 0 = land.

> Andria G., Scarpetta M., Spadavecchia M., Affuso P., Giaquinto N., "SNOWED: Automatically
> Constructed Dataset of Satellite Imagery for Water Edge Measurements", Sensors 23(9):4491,
> 2023, https://doi.org/10.3390/s23094491. Contains modified Copernicus Sentinel data.

The labels were made automatically from NOAA shoreline vectors and are noisy (e.g.
sample_0003 labels inland ponds as land).

## Training command and config

```
{command}
```

This calls the project's training code (`backend.train.train`, the code behind `make train`)
once per cross-validation fold and once on all samples, with Adam at a constant learning
rate {args.lr:g}, batch {args.batch_size}, cross-entropy loss. Each sample is listed
{args.repeat} times per epoch{brightness_text} In training every copy gets its own random {args.crop} x
{args.crop} crop, flip / 90-degree rotation, per-band gain jitter (x U(1 - {args.spectral_gain:g},
1 + {args.spectral_gain:g})) and per-band offset jitter (+ U(-{args.spectral_offset:g},
{args.spectral_offset:g}) reflectance). There is no validation set (with five samples every
sample is either training data or the held-out test, and nothing is selected on the test
sample): the shipped weights are the average of the weights after each of the last
{args.swa} of {args.epochs} epochs (stochastic weight averaging, BatchNorm statistics averaged
too), because single epochs of such a small, noisy training set swing widely on unseen
tiles. The nearest plain `make train` run (without the brightness copies and the
averaging) on a folder of the samples is

```
{make_equiv}
```

Config stored in the checkpoint:

```
{json.dumps(cfg, indent=1, default=str)}
```

## Leave-one-sample-out cross-validation against NDWI

For each sample: a model trained with the command above on the other four, scored on the
held-out sample's 65,536 pixels, beside the classical water index NDWI = (B3 - B8) /
(B3 + B8) > 0 on the same pixels{MNDWI_TEXT if swir else ""}. IoU in %, against the SNOWED labels.

{table}

{verdict}

{"The model does NOT beat NDWI on IoU mean in this test. " if means.get("delta", 0) <= 0 else ""}{(SWIR_NOTES if swir else NOTES) if args.ensemble == 1 else ENSEMBLE_NOTES}

{search_table(swir)}

Calibration: the softmax of the logits is divided by a temperature T = {args.temperature:.3f},
fitted by minimising the NLL of the pooled held-out predictions above (one parameter; it
changes probabilities, never the water/land decision). It is folded into the shipped
model's output layer. Figures of the held-out p(water) after T (NLL and Brier per pixel,
ECE over 10 confidence bins; T was fitted on these same pixels, so they are slightly
optimistic):

{calibration_table(cv) if cv else "(none)"}

## Known limits

- **Clouds and cloud shadows** are not a class: thick cloud is usually land, cloud shadow
  and dark terrain shadow may be called water. Mask clouds first (e.g. the L2A SCL band).
- **L1C vs L2A**: trained on L2A surface reflectance. L1C top-of-atmosphere input (brighter,
  bluer, hazier) is within the spectral jitter for moderate haze but is not what the model
  was trained on; expect more errors on turbid or shallow water.
- **Processing baseline 04.00+ offset**: raw L2A values then carry +1000; without
  `--l2a-offset` water looks bright and may be missed.
{SWIR_LIMITS if swir else RGBN_LIMITS}
- **Ice, snow, and frozen lakes** were not in the training data.
- **Sun glint, whitecaps, floating vegetation, very turbid (brown) water** are rare or absent
  in five tiles.
- **Small sample**: five 2.56 km tiles from the US coast. Rivers narrower than about 2
  pixels (20 m) are not resolved.

## Licence

The weights are distributed with WaterSeg under its MIT licence. They were derived from
SNOWED, whose own terms apply to the data (see the article above), and from Copernicus
Sentinel-2 data, which is free and open (attribution: "Contains modified Copernicus
Sentinel data").
"""
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ids = list_samples(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cv = None
    args.temperature = 1.0
    if not args.skip_cv:
        cross_validate(args, ids)  # trains the folds
        args.temperature = fit_temperature(args, ids)
        print(f"temperature fitted on the held-out predictions: {args.temperature:.3f}")
        cv = cross_validate(args, ids)  # scores with the temperature (folds are reused)
    elif (args.out / "cv.json").exists():
        cv = json.loads((args.out / "cv.json").read_text())
        args.temperature = fit_temperature(args, list(cv))
    if not args.skip_final:
        print("final: train on all samples", flush=True)
        last = fold_checkpoint(args, ids, args.out / "final")
        dest = export_default(last, args.dest, cv, args)
        print(f"wrote {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
        card = write_model_card(args.dest / args.card, dest, cv or {}, args)
        print(f"wrote {card}")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
