"""Evaluate a checkpoint on a SNOWED split: ``python -m backend evaluate CKPT --data DIR``.

Prints the paper's Table I metrics -- F1 (water), IoU water, IoU land, IoU mean -- from one
confusion matrix accumulated over every pixel of the split, plus accuracy, the per-image mean
IoU, the shoreline distance (median and 90th percentile, in metres at 10 m pixels, from the
predicted to the true water edge) and the NDWI > 0 baseline on the same samples (the
classical figure a learned model must beat). ``--json`` prints one JSON object instead.

The split comes from the checkpoint (the ids its training run used), or ``--split-file``;
``--split all`` takes every sample in --data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from backend.core.device import choose_device
from backend.core.errors import UserError
from backend.core.water_indices import ndwi
from backend.datasets.snowed import SNOWED, list_samples, read_split
from backend.datasets.transforms import CenterCrop
from backend.learning.metrics import ConfusionMatrix, evaluate_model
from backend.models.loading import load_model

TABLE1_KEYS = ("f1_water", "iou_water", "iou_land", "iou_mean")
LABELS = {
    "f1_water": "F1 water",
    "iou_water": "IoU water",
    "iou_land": "IoU land",
    "iou_mean": "IoU mean",
    "accuracy": "accuracy",
}


def ndwi_baseline(root: str | os.PathLike, ids: list[str]) -> dict[str, Any]:
    """Table I metrics of the classical rule NDWI = (B3 - B8) / (B3 + B8) > 0 -> water."""
    cm = ConfusionMatrix()
    ds = SNOWED(root, ids, bands=["B3", "B8"])
    for i in range(len(ds)):
        s = ds[i]
        water = ndwi(s["image"][0].numpy(), s["image"][1].numpy()) > 0  # NaN (0 + 0): land
        cm.update(torch.from_numpy(water).long(), s["mask"])
    out = cm.compute()
    out["samples"] = len(ds)
    return out


def split_ids(
    ckpt_meta: dict[str, Any], data: str, split: str, split_file: str | None
) -> list[str]:
    """Sample ids of ``split`` (train | val | test | all) for evaluating a checkpoint."""
    if split == "all":
        return list_samples(data)
    source = read_split(split_file) if split_file else ckpt_meta.get("split")
    if not source:
        raise UserError(
            "this checkpoint stores no split (it was not trained by 'python -m backend train'); "
            "pass --split all or --split-file split.json"
        )
    ids = list(source.get(split) or [])
    if not ids:
        raise UserError(
            f"the {split} subset of this split is empty (too few samples); choose another --split"
        )
    return ids


def _clean(value: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "test",
    *,
    split_file: str | None = None,
    device: str = "auto",
    batch_size: int = 8,
    workers: int = 0,
    crop: int | None = None,
    shoreline: bool = True,
    baseline: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a split -> JSON-ready dict (see module docstring)."""
    if not Path(checkpoint).is_file():
        raise UserError(
            f"checkpoint not found: {checkpoint}; train one first (make train, which writes "
            "runs/<model>-<width>-<loss>/best.pt) or pass the path of a WaterSeg .pt file "
            "(make evaluate CHECKPOINT=path/to/best.pt)"
        )
    model, spec, meta = load_model(checkpoint)
    ids = split_ids(meta, str(data), split, split_file)
    dev = torch.device(choose_device(device))
    model.to(dev)
    ds = CenterCrop(SNOWED(data, ids, bands=spec.bands, input_spec=spec), crop)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    metrics = evaluate_model(model, loader, dev, shoreline=shoreline)
    arch = meta.get("arch", {})
    result = {
        "checkpoint": str(checkpoint),
        "arch": arch.get("name"),
        "width": arch.get("kwargs", {}).get("width"),
        "loss": meta.get("loss"),
        "epoch": meta.get("epoch"),
        "data": str(data),
        "split": split,
        "samples": metrics["samples"],
        "device": str(dev),
        "metrics": {k: v for k, v in metrics.items() if k not in ("shoreline", "samples", "loss")},
    }
    if shoreline:
        result["shoreline"] = metrics["shoreline"]
    if baseline:
        result["baseline_ndwi"] = ndwi_baseline(data, ids)
    return _clean(result)


def format_text(result: dict[str, Any]) -> str:
    """Human-readable report of :func:`evaluate_checkpoint`'s result."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:6.2f} %"

    m = result["metrics"]
    lines = [
        f"checkpoint  {result['checkpoint']} ({result['arch']}, width {result['width']}, "
        f"loss {result['loss']}, epoch {result['epoch']})",
        f"data        {result['data']}: split {result['split']}, {result['samples']} samples, "
        f"{m.get('pixels', 0)} pixels, on {result['device']}",
    ]
    lines += [f"{LABELS[k]:<11} {pct(m.get(k))}" for k in (*TABLE1_KEYS, "accuracy")]
    lines.append(f"{'per-image mean IoU':<11} {pct(m.get('per_image_iou_mean'))}")
    sh = result.get("shoreline")
    if sh:
        if sh.get("median_m") is None:
            lines.append("shoreline   n/a (no water edge in truth or prediction)")
        else:
            lines.append(
                f"shoreline   median {sh['median_m']:.1f} m, p90 {sh['p90_m']:.1f} m from the "
                f"predicted to the true water edge ({sh['edge_pixels']} edge pixels)"
            )
    b = result.get("baseline_ndwi")
    if b:
        lines.append(
            f"baseline    NDWI > 0 on the same samples: F1 {pct(b.get('f1_water')).strip()}, "
            f"IoU mean {pct(b.get('iou_mean')).strip()}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend evaluate",
        description="Table I metrics (F1, IoU water/land/mean) of a checkpoint on a SNOWED split.",
    )
    p.add_argument("checkpoint", help="a .pt written by 'python -m backend train'")
    p.add_argument("--data", required=True, help="the SNOWED folder")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    p.add_argument("--split-file", help="take the subset from this split.json, not the checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="also write the JSON result to this file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--crop", type=int, help="evaluate on the centre NxN crop of each tile")
    p.add_argument("--no-shoreline", action="store_true", help="skip the shoreline distance")
    p.add_argument("--no-baseline", action="store_true", help="skip the NDWI baseline")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        split_file=args.split_file,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        crop=args.crop,
        shoreline=not args.no_shoreline,
        baseline=not args.no_baseline,
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result) if args.json else format_text(result), flush=True)
    return 0
