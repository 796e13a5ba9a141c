"""Train WaterSeg's learned multispectral models and write their model cards.

    .venv/bin/python scripts/train_default.py [--data ../shared/data/snowed-sample/SNOWED]
    .venv/bin/python scripts/train_default.py --card-only [--name waterseg-rgbn --card ...]

1. Leave-one-sample-out cross-validation over the SNOWED samples in --data: for each sample,
   train on the others with the project's own training code (``backend.learning.train.train``, the
   code behind ``make train`` / ``python -m backend train``), then score the model and the
   NDWI > 0 baseline on the held-out sample's pixels (IoU water / land / mean, plus the
   calibration of the model's water probability: NLL, Brier score, expected calibration error).
2. Train the final model on all samples with the same config.
3. Convert its weights to fp16, write ``resources/models/waterseg-default.pt`` (inference-only
   checkpoint, no optimizer state; the cross-validation table is in it) and its SHA-256
   beside it, record the command in ``resources/models/results-default.json`` and render
   ``resources/models/MODEL_CARD.md`` from the template ``MODEL_CARD-snowed.md.in``, that
   results file (the card's hand-written text and every configuration tried while choosing
   the model, with its leave-one-out result) and the model file. ``--card-only`` renders the
   card again, e.g. after an edit of the results file.

With so few samples an "epoch" is short, so each sample is listed ``--repeat`` times in the
training split (a folder of symbolic links under the run folder): every copy gets its own
random crop, flip/rotation and spectral jitter, and checkpoints are written once per
``repeat`` passes instead of once per pass. No sample is ever used for model selection: the
validation subset is empty; the shipped weights average the last ``--swa`` epochs (constant
learning rate, fixed epoch count). The fixed spectral-index input layer
(``--spectral-indices``, backend/models/spectral.py) is on by default.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import string
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.core import paths  # noqa: E402
from backend.core.checkpoint import read_checkpoint, save_checkpoint, sha256_of  # noqa: E402
from backend.core.water_indices import ndwi_water_mask  # noqa: E402
from backend.datasets.snowed import band_indices, list_samples, load_sample_arrays  # noqa: E402
from backend.learning.metrics import ConfusionMatrix  # noqa: E402
from backend.learning.train import TrainConfig, train  # noqa: E402
from backend.models.blocks import scale_channels  # noqa: E402
from backend.models.ensemble import ensemble_checkpoint  # noqa: E402
from backend.models.loading import load_model  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "snowed-sample" / "SNOWED"
MODELS = REPO / "resources" / "models"
CARD_TEMPLATE = MODELS / "MODEL_CARD-snowed.md.in"
KEYS = ("iou_water", "iou_land", "iou_mean")


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
        "factor for every crop in every epoch (backend.datasets.augment.Augment brightness)",
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
        "--card-only",
        action="store_true",
        help="train nothing: render the card of the model --name in --dest from its results file",
    )
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


# ---------------------------------------------------------------- results file and model card
# Generic wording of the blocks the card writes from the model; the results file holds what was
# measured and written by hand (resources/models/results-<name>.json).

ANCHORED_TEXT = """\
**Anchored decision** (`{option}`): the output is a fixed per-pixel linear
decision on the {n_pairs} indices plus a bounded correction from the U-Net:
logit(water) - logit(land) = d + e, d = w . indices + c, |e| < {limit:g}
(`backend/models/spectral.py`, `WithSpectralIndices`). w and c are fitted first, by logistic
regression (L-BFGS, convex: no seed lottery) on the training tiles (`spectral.fit_anchor`,
called by `backend.learning.train.train`), and then frozen; the U-Net's logits pass through
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

ENSEMBLE_NOTES = """\
**Seed variance.** Each fold's model is a seed ensemble (see Architecture) to average out
the run-to-run noise of training on four tiles; the single seeds and other seed sets of the
same configuration are in the table below.
"""


def results_path(dest: Path, name: str) -> Path:
    """``<dest>/results-<name without "waterseg-">.json``: results-default.json beside
    waterseg-default.pt (as results-rgb.json is beside waterseg-rgb.pt)."""
    return dest / f"results-{name.removeprefix('waterseg-')}.json"


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (recorded in the results file and the card)."""
    return (
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


def write_results(args: argparse.Namespace) -> Path:
    """Record this run's command in its results file, keeping the hand-written card text and
    the search log (from the existing file, else from the bundled model with the same kind of
    bands); the parts kept "as published" describe the replaced model and are dropped."""
    path = results_path(args.dest, args.name)
    bundled = "default" if "B11" in args.bands else "rgbn"
    for base in (
        path,
        results_path(paths.MODELS_DIR, args.name),
        MODELS / f"results-{bundled}.json",
    ):
        if base.is_file():
            results = json.loads(base.read_text())
            break
    results.pop("as_published", None)
    results["command"] = command_line(args)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def option_text(arch_kwargs: dict, mode: str | None = None) -> str:
    """The index-layer option as the checkpoint stores it: flat ``spectral_indices`` (written
    before ``SpectralOptions``) or one ``spectral`` dict."""
    if "spectral_indices" in arch_kwargs:
        return f'spectral_indices="{mode}"' if mode else "spectral_indices=..."
    return f'spectral={{"mode": "{mode}"}}' if mode else "spectral=..."


def architecture_text(args: argparse.Namespace, bands: list[str], arch_kwargs: dict) -> str:
    """The card's paragraphs on the seed ensemble and the spectral-index layer."""
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
    mode = args.spectral_indices
    if mode not in ("all", "residual", "anchored"):
        return ensemble_text
    n_pairs = len(bands) * (len(bands) - 1) // 2
    named = {("B3", "B8"): "NDWI", ("B4", "B8"): "-NDVI", ("B3", "B11"): "MNDWI"}
    pair_names = ", ".join(
        f"({a},{b})" + (f" = {named[(a, b)]}" if (a, b) in named else "")
        for i, a in enumerate(bands)
        for b in bands[i + 1 :]
    )
    text = (
        "A fixed input layer (`SpectralIndices`, `backend/models/spectral.py`; no weights) "
        f"appends to the {len(bands)}\nreflectance bands the normalised difference (a - b) / "
        f"(a + b + 0.001) of every band pair ({n_pairs} pairs):\n{pair_names}, computed on "
        "the\nreflectances made finite and clamped to >= 0, so each lies in [-1, 1]. These "
        "ratios do not\nchange when a pixel gets uniformly brighter or darker (haze, "
        "illumination, shadow), the\ninductive bias that makes the classical indices robust; "
        f"the network sees them and the raw bands\n({len(bands) + n_pairs} input channels)."
        f' Built by `create_model("unet", width=..., {option_text(arch_kwargs)})`; the\noption '
        "is stored in the checkpoint's architecture kwargs.\n\n"
    )
    if mode == "residual":
        text += (
            f"A learned 1 x 1 convolution of the {n_pairs} indices (a per-pixel logistic "
            f"regression, zero-initialised;\n`{option_text(arch_kwargs, 'residual')}`) is added "
            "to the U-Net's logits, so the network learns\nspatial corrections to a per-pixel "
            "decision on the indices, of which NDWI > 0 is one.\n\n"
        )
    if mode == "anchored":
        bound = args.anchor_bound or 1.5
        option = option_text(arch_kwargs, "anchored")
        text += ANCHORED_TEXT.format(option=option, n_pairs=n_pairs, bound=bound, limit=2 * bound)
    return ensemble_text + text


def search_table(search: dict) -> str:
    """Markdown list of every configuration tried (the results file's ``search.runs``)."""
    runs = search["runs"]
    lines = [
        f"Configurations tried ({len(runs)} runs; {search['rule']}; nothing was "
        "chosen per fold; IoU mean % of held-out samples 0001 / 0002 / 0003 / 0004 / 0006 -> "
        f"mean; {search['baselines']}; '(stopped)': run ended early once clearly below NDWI):",
        "",
        "| configuration | LOO IoU mean (%) |",
        "|---|---|",
    ]
    lines += [f"| {run['configuration']} | {run['result']} |" for run in runs]
    return "\n".join(lines + ([f"\n{search['after_table']}"] if search.get("after_table") else []))


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


# A new model's card until `make bench` has measured it and its results file quotes the run.
NO_SPEED = "Not measured yet: run `make bench` and quote its figures here (results file, `speed`)."


def render_card(results: dict, model_path: Path) -> str:
    """The model card: MODEL_CARD-snowed.md.in filled from the results file (the command, the
    hand-written text, the search log) and the model file (what it is, its config, its
    leave-one-out table and calibration temperature)."""
    args = parse_args(shlex.split(results["command"])[2:])
    ckpt = read_checkpoint(model_path)
    cv = ckpt.get("metrics", {}).get("loo", {})
    card, published = results["card"], results.get("as_published", {})
    bands = list(ckpt["bands"])
    swir = "B11" in bands
    table, means = cv_table(cv)
    wins = [s for s, r in cv.items() if r["model"]["iou_mean"] > r["ndwi"]["iou_mean"]]
    losses = [s for s in cv if s not in wins]
    lo, hi = args.brightness
    config = {k: v for k, v in ckpt.get("config", {}).items() if k not in ("data", "out", "split")}
    values = {
        "file": model_path.name,
        "title_note": card["title_note"],
        "role": card["role"],
        "created": ckpt.get("created", "?"),
        "waterseg_version": ckpt.get("waterseg_version", "?"),
        "torch_version": ckpt.get("torch_version", "?"),
        "size_mb": f"{model_path.stat().st_size / 1e6:.2f}",
        "sha256": sha256_of(model_path),
        "format_version": ckpt.get("format_version"),
        "architecture": published.get("architecture")
        or architecture_text(args, bands, ckpt["arch"].get("kwargs", {})),
        "width": args.width,
        "channels": ", ".join(
            str(scale_channels(c, float(args.width))) for c in (64, 128, 256, 512, 1024)
        ),
        "params": f"{sum(v.numel() for k, v in ckpt['state_dict'].items() if 'num_batches' not in k):,}",
        "model_choice": card["model_choice"],
        "bands": published.get("bands")
        or f"**{', '.join(bands)}** of Sentinel-2 (B2 blue, B3 green, B4 red,\n  B8 NIR at 10 m"
        f"{SWIR_BANDS_TEXT if swir else ''}).",
        "scale": ckpt.get("scale"),
        "offset": ckpt.get("offset"),
        "tile_size": ckpt.get("tile_size"),
        "samples": ", ".join((ckpt.get("split") or {}).get("train", [])),
        "command": results["command"],
        "lr": f"{args.lr:g}",
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "brightness": (
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
        ),
        "crop": args.crop,
        "spectral_gain": f"{args.spectral_gain:g}",
        "spectral_offset": f"{args.spectral_offset:g}",
        "swa": args.swa,
        "epochs": args.epochs,
        "make_train": make_train_line(args, "--bands" in results["command"].split()),
        "config": json.dumps(config, indent=1, default=str),
        "mndwi_note": MNDWI_TEXT if swir else "",
        "cv_table": table,
        "verdict": (
            f"The model beats NDWI on {len(wins)} of {len(cv)} held-out samples"
            + (f" and loses on {', '.join(losses)}" if losses else "")
            + f"; on average by {100 * means.get('delta', float('nan')):+.2f} IoU-mean points."
            if cv
            else "No cross-validation results were recorded."
        ),
        "shortfall": "The model does NOT beat NDWI on IoU mean in this test. "
        if means.get("delta", 0) <= 0
        else "",
        "notes": card["notes"] if args.ensemble == 1 else ENSEMBLE_NOTES,
        "search": search_table(results["search"]),
        "temperature": f"{float(ckpt.get('temperature_folded_into_head', 1.0)):.3f}",
        "calibration_table": calibration_table(cv) if cv else "(none)",
        "limits": card["limits"],
        "speed": card.get("speed", NO_SPEED),
    }
    return string.Template(CARD_TEMPLATE.read_text()).substitute(values)


def make_train_line(args: argparse.Namespace, with_bands: bool) -> str:
    """The nearest plain ``make train`` command (no brightness copies, no weight averaging)."""
    return (
        f"make train MODEL={args.model} WIDTH={args.width} LOSS={args.loss} "
        f'DATA=<SNOWED> TRAIN_ARGS="'
        + (f"--bands {','.join(args.bands)} " if with_bands else "")
        + f"--epochs {args.epochs * args.repeat} --batch-size "
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.card_only:
        results = json.loads(results_path(args.dest, args.name).read_text())
        card = args.dest / args.card
        card.write_text(render_card(results, args.dest / f"{args.name}.pt"))
        print(f"wrote {card}")
        return 0
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
        results = write_results(args)
        card = args.dest / args.card
        card.write_text(render_card(json.loads(results.read_text()), dest))
        print(f"wrote {results} and {card}")
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
