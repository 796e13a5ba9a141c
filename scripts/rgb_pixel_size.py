"""How the RGB model's cross-validation folds do at other pixel sizes, measured both ways.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/rgb_pixel_size.py [--runs runs/rgb-v2]

Each fold model of ``scripts/train_rgb.py`` (``--runs``/fold<k>.pt, its held-out acquisitions
in the checkpoint's split) segments its held-out ESW scenes rendered at another pixel size:
the 10 m scene resampled as a coarser (20 m, 30 m) or finer (5 m) sensor would see it
(``backend.datasets.augment_rgb.resample``: antialiased bilinear image; water where half the
ground is water). Two ways:

- **as is**: the model runs on the resampled raster directly (what scale augmentation is for);
- **resampled to 10 m**: the raster is first resampled to the 10 m the model was trained at,
  the probability is resampled back to the raster's grid (what a user could do instead).

Scored against the resampled truth, per acquisition (pixels pooled), as train_rgb scores.
5 m uses the central 512 x 512 px of each scene (4x the pixels otherwise). Writes
``docs/results/rgb-v2-pixel-size.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from train_rgb import Config, load_scenes, score, summarise, write_json  # noqa: E402

from backend.datasets.augment_rgb import resample  # noqa: E402
from backend.models.loading import load_model  # noqa: E402
from backend.segment.pipeline import predict_array  # noqa: E402

OUT = REPO / "docs" / "results" / "rgb-v2-pixel-size.json"


def to_pixel_size(
    rgb: np.ndarray, mask: np.ndarray, metres: float
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (3, H, W) and mask (H, W) at 10 m -> the same ground at ``metres`` per pixel."""
    h, w = mask.shape
    size = (round(h * 10 / metres), round(w * 10 / metres))
    image = torch.from_numpy(rgb).float() / 255.0
    img, m = _resample2(image, torch.from_numpy(mask.astype(np.int64)), size)
    return (img.numpy() * 255.0).round().astype(np.uint8), m.numpy().astype(np.uint8)


def _resample2(image: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]):
    """resample() for a non-square target: pad to square is not needed, interpolate directly."""
    if size[0] == size[1]:
        return resample(image, mask, size[0])
    shrink = size[0] < mask.shape[0]
    out = F.interpolate(image[None], size, mode="bilinear", antialias=shrink, align_corners=False)
    m = mask[None, None].float()
    m = F.interpolate(m, size, mode="area") if shrink else F.interpolate(m, size)
    return out[0].clamp(0, 1), (m[0, 0] >= 0.5).long()


def probability(model, spec, rgb: np.ndarray, overlap: float) -> np.ndarray:
    return predict_array(spec.normalise(rgb), model, tile=spec.tile_size, overlap=overlap)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(REPO / "runs" / "rgb-v2"))
    p.add_argument("--sizes", default="5,20,30", help="pixel sizes in metres")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT, help=f"results file (default {OUT})")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config()
    scenes = load_scenes(cfg.data)
    results: dict = {"command": "scripts/rgb_pixel_size.py " + " ".join(argv), "sizes": {}}
    folds = sorted(Path(args.runs).glob("fold*.pt"))
    for metres in [float(s) for s in args.sizes.split(",")]:
        per_way: dict[str, dict] = {"as_is": {}, "resampled_to_10m": {}}
        for fold in folds:
            model, spec, meta = load_model(fold)
            held = set(meta["split"]["held_out_acquisitions"])
            for s in scenes.values():
                if s.acquisition not in held:
                    continue
                rgb, mask = s.rgb, s.mask
                if metres < 10:  # the central 512 px: finer pixels multiply the work
                    h, w = mask.shape
                    y, x = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
                    rgb, mask = rgb[:, y : y + 512, x : x + 512], mask[y : y + 512, x : x + 512]
                image, truth = to_pixel_size(rgb, mask, metres)
                direct = probability(model, spec, image, cfg.overlap) >= 0.5
                per_way["as_is"][s.name] = score(direct.astype(np.uint8), truth)
                back, _ = to_pixel_size(image, truth, 10.0 * 10.0 / metres)  # to 10 m
                prob10 = probability(model, spec, back, cfg.overlap)
                prob = F.interpolate(
                    torch.from_numpy(prob10)[None, None], truth.shape, mode="bilinear"
                )[0, 0].numpy()
                per_way["resampled_to_10m"][s.name] = score((prob >= 0.5).astype(np.uint8), truth)
            print(f"{metres:g} m, {fold.name}: done", flush=True)
        results["sizes"][f"{metres:g}"] = {
            way: summarise(v, scenes) for way, v in per_way.items() if v
        }
        for way, v in results["sizes"][f"{metres:g}"].items():
            print(
                f"{metres:g} m {way}: IoU mean {100 * v['mean_over_acquisitions']['iou_mean']:.2f}"
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
