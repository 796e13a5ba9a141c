"""``python -m backend demo``: segment a demo scene with the bundled model and show the result.

Without ``--scene`` it generates the synthetic Sentinel-2 scene of
:mod:`backend.datasets.synthetic` (with its true water mask) into the output folder, runs the
real ``segment`` command on it (mask, shoreline GeoPackage, quicklook PNG), prints where the
outputs are and how long it took, and scores the water mask against the truth next to the
classical NDWI > 0 baseline on the same pixels. With ``--scene PATH`` it segments the user's
own raster instead (no truth, so no scores).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from backend.core.contract import contract, option
from backend.core.errors import UserError

DEFAULT_OUT = Path("out") / "demo"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backend demo",
        description="Segment the synthetic demo scene (or --scene PATH) as segment does by default; "
        "writes the water mask, the shoreline and a quicklook PNG.",
    )
    p.add_argument(
        "--scene", type=Path, help="a raster of your own (default: generate the demo scene)"
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    p.add_argument("--model", type=Path, help="checkpoint (default: as segment chooses)")
    method = option("method")
    p.add_argument(
        "--method",
        default=method["default"],
        choices=method["choices"],
        help=f"as segment's --method (default {method['default']})",
    )
    p.add_argument("--device", default="auto", choices=list(contract()["devices"]))
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene (default 0)")
    p.add_argument(
        "--size", type=int, default=1024, help="synthetic scene size in pixels (default 1024)"
    )
    return p


def score_masks(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """IoU water / land / mean of a (H, W) uint8 prediction against a (H, W) uint8 truth.

    Both use 1 water / 0 land / 255 nodata; pixels that are 255 in either are left out.
    Returns the keys of ``backend.learning.metrics.ConfusionMatrix.compute()`` (iou_water, iou_land,
    iou_mean, f1_water, accuracy, ...).
    """
    from backend.learning.metrics import ConfusionMatrix

    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    target = np.where(prediction == 255, 255, truth).astype(np.uint8)
    pred = np.where(target == 255, 0, prediction).astype(np.uint8)
    cm = ConfusionMatrix(ignore_index=255)
    cm.update(pred, target)
    return cm.compute()


def _read_band(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(1)


def _index_mask_of_raster(path: Path, other: str = "B8") -> np.ndarray | None:
    """NDWI > 0 mask (H, W) uint8 of a raster whose bands are described B3 and B8 (255 at
    nodata); ``other="B11"``: MNDWI > 0. None when the raster has no such bands."""
    import rasterio

    from backend.core.water_indices import ndwi_water_mask

    with rasterio.open(path) as src:
        names = [(d or "").upper() for d in src.descriptions]
        if "B3" not in names or other not in names:
            return None
        green = src.read(names.index("B3") + 1)
        second = src.read(names.index(other) + 1)
        nodata = src.nodata
    mask = ndwi_water_mask(np.stack([green, second]), bands=["B3", other], other=other)
    if nodata is not None:
        mask[(green == nodata) & (second == nodata)] = 255
    return mask


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code of the segment step (0 on success)."""
    args = _parser().parse_args(argv)
    if args.scene is not None and not args.scene.is_file():
        raise UserError(
            f"scene not found: {args.scene}; pass --scene PATH to a raster (e.g. a GeoTIFF)"
        )
    if args.model is not None and not args.model.is_file():
        raise UserError(
            f"model not found: {args.model}; pass --model PATH to a WaterSeg .pt checkpoint"
        )

    from backend.datasets.synthetic import make_demo_scene
    from backend.segment.cli import main as segment_main

    out: Path = args.out
    t0 = time.perf_counter()
    truth_path: Path | None = None
    if args.scene is None:
        scene, truth_path = make_demo_scene(out, size=args.size, seed=args.seed)
        print(
            f"demo: generated synthetic Sentinel-2 scene {scene} ({args.size} x {args.size} px, "
            f"10 m, EPSG:32633) and its true mask {truth_path}",
            flush=True,
        )
    else:
        scene = args.scene
        if not scene.is_file():
            raise UserError(
                f"scene not found: {scene}; pass --scene PATH to a raster (e.g. a GeoTIFF)"
            )
    t_seg = time.perf_counter()
    seg_argv = [
        str(scene),
        "--out-dir",
        str(out),
        "--quicklook",
        "--shoreline",
        "gpkg",
        "--device",
        args.device,
        "--overwrite",
        "--progress",
        "text",
    ]
    if args.model is not None:
        seg_argv += ["--model", str(args.model)]
    rc = int(segment_main([*seg_argv, "--method", args.method]) or 0)
    if rc != 0:
        return rc
    seg_s = time.perf_counter() - t_seg

    stem = Path(scene).stem
    outputs = {
        "water mask": out / f"{stem}_water.tif",
        "shoreline": out / f"{stem}_shoreline.gpkg",
        "quicklook": out / f"{stem}_quicklook.png",
    }
    print("demo: outputs")
    for kind, path in outputs.items():
        state = "" if path.exists() else "  (missing!)"
        print(f"  {kind:<11} {path}{state}")
    print(f"demo: segmentation took {seg_s:.1f} s, {time.perf_counter() - t0:.1f} s in all")

    if truth_path is not None:
        truth = _read_band(truth_path)
        rows = [
            (f"WaterSeg ({args.method})", score_masks(_read_band(outputs["water mask"]), truth))
        ]
        if args.method == "auto" and args.model is None:  # the learned model, for comparison
            learned = out / "learned-model"
            learned.mkdir(exist_ok=True)
            seg_model = [str(scene), "--out-dir", str(learned), "--method", "model"]
            seg_model += ["--shoreline", "none", "--overwrite", "--progress", "none"]
            if int(segment_main([*seg_model, "--device", args.device]) or 0) == 0:
                learned_mask = _read_band(learned / f"{stem}_water.tif")
                rows.append(("learned model", score_masks(learned_mask, truth)))
        for name, other in (("NDWI > 0", "B8"), ("MNDWI > 0", "B11")):
            index_mask = _index_mask_of_raster(scene, other)
            if index_mask is not None:
                rows.append((name, score_masks(index_mask, truth)))
        print("demo: scores against the true mask of the synthetic scene (IoU, %)")
        print(f"  {'method':<16} {'water':>7} {'land':>7} {'mean':>7}")
        for name, s in rows:
            print(
                f"  {name:<16} {100 * s['iou_water']:7.2f} {100 * s['iou_land']:7.2f} "
                f"{100 * s['iou_mean']:7.2f}"
            )
    return 0
