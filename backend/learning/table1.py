"""Reproduce Table I of the paper: ``python -m backend table1 --data DIR --out DIR``.

Trains and evaluates the 12 configurations of Table I -- SeNet, DeepUNet and MU-Net, each at
half and base width, each with L_Seg+Edge (6) and L_CE+SD (3) -- with the Table II settings,
all on one seeded split (OUT/split.json), and writes OUT/table1.md (our test-split metrics
beside the paper's) and OUT/table1.json. Every run lives in OUT/NN-model-width-loss/ and is
resumable: rerunning the command continues unfinished runs and skips finished ones.

Meant for a GPU machine with the full SNOWED (4334 samples; SeNet's 1000 epochs dominate).
``--smoke`` checks the whole path in a minute or two on a CPU: 1 epoch, batch 2, at most 2
samples per subset, random 64 x 64 training crops (128 for DeepUNet; validation on the
centre crop, test on full tiles), and every width divided by 8 (base -> 0.125, half ->
0.0625 of the base channels) -- its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from backend.core.errors import UserError
from backend.datasets.snowed import list_samples, make_split, read_split, tile_groups, write_split
from backend.learning.evaluate import TABLE1_KEYS, evaluate_checkpoint, ndwi_baseline
from backend.learning.train import TrainConfig, train

# Table I of Gruba & Ciecholewski: (no, model, width, loss) -> F1, IoU water, land, mean (%)
PAPER_TABLE1: list[tuple[int, str, str, str, tuple[float, float, float, float]]] = [
    (1, "senet", "half", "seg+edge", (73.72, 64.38, 12.56, 38.47)),
    (2, "senet", "base", "seg+edge", (81.74, 76.39, 40.2, 58.30)),
    (3, "senet", "half", "ce+sd", (95.69, 95.51, 90.82, 93.16)),
    (4, "senet", "base", "ce+sd", (96.69, 96.28, 92.61, 94.45)),
    (5, "deepunet", "half", "seg+edge", (96.03, 95.52, 90.82, 93.17)),
    (6, "deepunet", "base", "seg+edge", (96.71, 96.43, 92.66, 94.54)),
    (7, "deepunet", "half", "ce+sd", (95.74, 95.4, 91.0, 93.2)),
    (8, "deepunet", "base", "ce+sd", (96.55, 96.3, 92.63, 94.46)),
    (9, "munet", "half", "seg+edge", (97.27, 96.98, 93.9, 95.44)),
    (10, "munet", "base", "seg+edge", (97.71, 97.39, 94.71, 96.05)),
    (11, "munet", "half", "ce+sd", (96.29, 96.41, 92.65, 94.53)),
    (12, "munet", "base", "ce+sd", (97.4, 97.01, 93.94, 95.52)),
]
MODEL_NAMES = {"senet": "SeNet", "deepunet": "DeepUNet", "munet": "MU-Net"}
LOSS_NAMES = {"seg+edge": "L_Seg+Edge", "ce+sd": "L_CE+SD"}
SMOKE = {"epochs": 1, "batch_size": 2, "limit": 2}
SMOKE_CROP = {"deepunet": 128}  # its 7 poolings need multiples of 128; others use 64
SMOKE_WIDTH = {"base": 0.125, "half": 0.0625}


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def render_markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    """Markdown table of our metrics beside the paper's (percent, test split)."""
    lines = [
        "# Table I reproduction",
        "",
        f"Data: `{header['data']}`, split seed {header['seed']} "
        f"({header['sizes']['train']}/{header['sizes']['val']}/{header['sizes']['test']} "
        f"train/val/test{', grouped by tile' if header.get('grouped') else ''}), metrics on "
        "the test split from one confusion matrix over all its pixels, best checkpoint by "
        "validation IoU mean. Paper: Gruba & Ciecholewski, Table I (its own split, unpublished).",
    ]
    if header.get("smoke"):
        lines += [
            "",
            "**Smoke run**: 1 epoch, batch 2, <= 2 samples per subset, 64 px crops (DeepUNet "
            "128), widths "
            "/ 8. These numbers only show that the pipeline runs; they are not results.",
        ]
    lines += [
        "",
        "| No. | Model | Width | Loss | Epochs | F1 | IoU water | IoU land | IoU mean "
        "| Paper F1 | Paper IoU water | Paper IoU land | Paper IoU mean | Diff. IoU mean |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ours = r["ours"]
        diff = (
            "n/a"
            if ours.get("iou_mean") is None
            else f"{100 * ours['iou_mean'] - r['paper']['iou_mean']:+.2f}"
        )
        paper = " | ".join(f"{r['paper'][k]:.2f}" for k in TABLE1_KEYS)
        lines.append(
            f"| {r['no']} | {MODEL_NAMES[r['model']]} | {r['width']} | {LOSS_NAMES[r['loss']]} "
            f"| {r['epochs']} | "
            + " | ".join(_pct(ours.get(k)) for k in TABLE1_KEYS)
            + f" | {paper} | {diff} |"
        )
    b = header.get("baseline_ndwi")
    if b:
        lines += [
            "",
            f"Classical baseline on the same test samples, NDWI = (B3 - B8) / (B3 + B8) > 0: "
            f"F1 {_pct(b['f1_water'])}, IoU water {_pct(b['iou_water'])}, IoU land "
            f"{_pct(b['iou_land'])}, IoU mean {_pct(b['iou_mean'])} (%).",
        ]
    return "\n".join(lines) + "\n"


def run_table1(
    data: str,
    out: str,
    *,
    smoke: bool = False,
    only: list[int] | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    split_file: str | None = None,
    group_by_tile: bool = False,
) -> dict[str, Any]:
    """Train + evaluate the selected Table I configurations; write table1.md/.json in ``out``."""
    out_dir = Path(out)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if split_file:
        split = read_split(split_file)
    else:
        ids = list_samples(data)
        groups = tile_groups(data, ids) if group_by_tile else None
        split = make_split(ids, seed, groups=groups)
    limit = overrides.get("limit", SMOKE["limit"] if smoke else None)
    if limit:
        split = {**split, **{k: split[k][:limit] for k in ("train", "val", "test")}, "limit": limit}
    split_path = write_split(split, out_dir / "split.json")
    if not split["test"]:
        raise UserError("the test subset is empty (too few samples); table1 needs at least 3")
    rows = []
    selected = [c for c in PAPER_TABLE1 if not only or c[0] in only]
    if not selected:
        raise UserError(f"--only {only}: choose configuration numbers 1 to 12")
    for no, model, width, loss, paper in selected:
        run_name = f"{no:02d}-{model}-{width}-{loss}"
        smoke_settings = {**SMOKE, "crop": SMOKE_CROP.get(model, 64)} if smoke else {}
        settings = {**smoke_settings, **overrides}
        settings.pop("limit", None)  # already applied to the split
        cfg = TrainConfig(
            data=str(data),
            model=model,
            width=SMOKE_WIDTH[width] if smoke else width,
            loss=loss,
            out=str(out_dir / run_name),
            seed=seed,
            split_file=str(split_path),
            resume=True,
            **settings,
        )
        print(f"== {no}/12 {run_name}", flush=True)
        t0 = time.perf_counter()
        best = train(cfg)
        result = evaluate_checkpoint(
            best, data, "test", split_file=str(split_path), device=cfg.device, baseline=False,
            shoreline=False,
        )  # fmt: skip
        rows.append(
            {
                "no": no,
                "model": model,
                "width": width,
                "loss": loss,
                "run": run_name,
                "epochs": cfg.resolved().epochs,
                "seconds": round(time.perf_counter() - t0, 1),
                "ours": {**result["metrics"], "samples": result["samples"]},
                "paper": dict(zip(TABLE1_KEYS, paper, strict=True)),
            }
        )
    header = {
        "data": str(data),
        "seed": seed,
        "smoke": smoke,
        "grouped": split.get("grouped_by") is not None,
        "sizes": {k: len(split[k]) for k in ("train", "val", "test")},
        "baseline_ndwi": ndwi_baseline(data, split["test"]),
    }
    report = {"header": header, "rows": rows}
    (out_dir / "table1.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "table1.md").write_text(render_markdown(rows, header))
    print(f"wrote {out_dir / 'table1.md'}", flush=True)
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend table1",
        description="Train and evaluate the paper's 12 Table I configurations on SNOWED and write "
        "OUT/table1.md beside the paper's numbers. Resumable: rerun to continue.",
    )
    p.add_argument("--data", required=True, help="the SNOWED folder")
    p.add_argument("--out", required=True, help="output folder (one subfolder per run)")
    p.add_argument(
        "--smoke", action="store_true", help="1 epoch, tiny subset and widths: path check"
    )
    p.add_argument("--only", help="comma-separated configuration numbers, e.g. 9,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-file", help="use this split.json")
    p.add_argument("--group-by-tile", action="store_true", help="split by Sentinel-2 tile")
    p.add_argument("--epochs", type=int, help="override Table II for every run")
    p.add_argument("--batch-size", type=int, help="override Table II for every run")
    p.add_argument("--lr", type=float, help="override Table II for every run")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int)
    p.add_argument("--limit", type=int, help="at most N samples per subset")
    p.add_argument(
        "--crop", type=int, help="train/validate on NxN crops (DeepUNet: a multiple of 128)"
    )
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        only = [int(v) for v in args.only.split(",")] if args.only else None
    except ValueError:
        raise UserError(f"--only {args.only!r}: give numbers such as 9,10") from None
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": args.device,
        "workers": args.workers,
        "limit": args.limit,
        "crop": args.crop,
        "quiet": args.quiet or None,
    }
    run_table1(
        args.data,
        args.out,
        smoke=args.smoke,
        only=only,
        overrides=overrides,
        seed=args.seed,
        split_file=args.split_file,
        group_by_tile=args.group_by_tile,
    )
    return 0
