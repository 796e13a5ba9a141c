"""Does ``--cloud-mask auto``'s s2cloudless blank real water? Measured on the real data.

    .venv/bin/python scripts/s2cloudless_check.py [--data ../shared/data]
        [--out docs/results/s2cloudless-check.json]

The risk: s2cloudless (``backend/segment/s2cloudless.py``) calls bright pixels clouds, and bright
water (turbid or flood water, sun glint) could be blanked as nodata. Every raster goes through
the product's own path (``open_raster(..., cloud_mask="auto")``: the coarse ~160 m grid, the
disk averaging, the threshold, the dilation, the nearest lookup of each pixel), and the script
reports per raster:

- ``flagged``: share of all pixels the product reads as cloud (nodata);
- ``water_flagged``: share of the water pixels among them (should be ~0 on clear scenes);
- ``pixel_prob_gt_threshold`` / ``water_pixel_prob_gt_threshold``: the same at 10 m, per pixel,
  without averaging or dilation (the raw model's view), and ``water_prob_p99`` / ``_max``;
- ``bright_water_pixels`` (B2 reflectance > 0.2: turbid water, foam, glint or ice, the pixels at
  risk) and the share of them flagged, by the product and per pixel.

Data (``../shared/data``, read-only, its README):

- ``demo/s2_l1c_bracciano_2016-07-18.tif``: real L1C, all 13 bands, QA60 empty. No water
  labels: water here is NDWI = (B3 - B8) / (B3 + B8) > 0 (Lake Bracciano and Lake Martignano),
  a proxy, said in the JSON.
- ``snowed-sample/SNOWED/*``: five real samples with water labels, but L2A surface reflectance
  with 12 bands (no B10, the cirrus band s2cloudless needs), not L1C. They are written as 13-band
  GeoTIFFs (10 m, UTM 32N, a made-up place) with B10 set to a constant clear-sky value: 9 DN,
  the median B10 of the real L1C Bracciano scene; and again with 50 DN (a hazier sky) to show
  how much the answer depends on that guess. L2A water is darker than L1C water in the blue
  (no atmospheric path radiance), so these figures understate the risk somewhat.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.segment import s2cloudless  # noqa: E402
from backend.segment.clouds import CloudGrid  # noqa: E402
from backend.segment.raster_io import open_raster  # noqa: E402

SNOWED_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
L1C_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
B10_CLEAR_DN = (9, 50)


def product_flags(path: Path) -> tuple[np.ndarray, str]:
    """Bool (H, W): the pixels ``segment --cloud-mask auto`` reads as cloud, and the log text."""
    with open_raster(path, ["B3", "B8"], cloud_mask="auto") as source:
        if not isinstance(source.cloud, CloudGrid):
            raise SystemExit(f"{path}: s2cloudless did not run ({source.cloud_why_not})")
        h, w = source.height, source.width
        return source.cloud.flags_in(0, h, 0, w, (h, w)), source.cloud.describe()


def pixel_probability(l1c: np.ndarray) -> np.ndarray:
    """Float (H, W): the model's cloud probability per 10 m pixel of a (13, H, W) L1C DN stack."""
    pick = [L1C_BANDS.index(b) for b in s2cloudless.MODEL_BANDS]
    reflectance = l1c[pick].astype(np.float32) * np.float32(s2cloudless.SCALE)
    return s2cloudless.probability(reflectance, np.ones(l1c.shape[1:], bool))


def share(a: np.ndarray) -> float | None:
    return round(float(a.mean()), 5) if a.size else None


def figures(
    flags: np.ndarray, prob: np.ndarray, water: np.ndarray, blue: np.ndarray, described: str
) -> dict:
    t = s2cloudless.THRESHOLD
    bright = water & (blue > 2000)
    return {
        "pixels": int(flags.size),
        "water_pixels": int(water.sum()),
        "flagged": round(float(flags.mean()), 5),
        "water_flagged": round(float(flags[water].mean()), 5) if water.any() else None,
        "pixel_prob_gt_threshold": round(float((prob > t).mean()), 5),
        "water_pixel_prob_gt_threshold": round(float((prob[water] > t).mean()), 5),
        "water_prob_p99": round(float(np.percentile(prob[water], 99)), 4),
        "water_prob_max": round(float(prob[water].max()), 4),
        "bright_water_pixels": int(bright.sum()),
        "bright_water_flagged": share(flags[bright]),
        "bright_water_pixel_prob_gt_threshold": share(prob[bright] > t),
        "product_log": described,
    }


def bracciano(path: Path) -> dict:
    with rasterio.open(path) as ds:
        names = list(ds.descriptions)
        l1c = ds.read([names.index(b) + 1 for b in L1C_BANDS])
    green, nir = (l1c[L1C_BANDS.index(b)].astype(np.float64) for b in ("B3", "B8"))
    water = (green - nir) / np.maximum(green + nir, 1e-6) > 0
    flags, described = product_flags(path)
    blue = l1c[L1C_BANDS.index("B2")]
    out = figures(flags, pixel_probability(l1c), water, blue, described)
    out["water_is"] = "NDWI > 0 (no labels for this scene)"
    out["b10_median_dn"] = float(np.median(l1c[L1C_BANDS.index("B10")]))
    return out


def snowed(folder: Path, b10_dn: int, tmp: Path) -> dict:
    l2a = np.load(folder / "sample_2A.npy")  # uint16 (256, 256, 12)
    water = np.load(folder / "label.npy") == 1
    bands = [l2a[..., SNOWED_BANDS.index(b)] if b != "B10" else None for b in L1C_BANDS]
    stack = np.stack(
        [b if b is not None else np.full(water.shape, b10_dn, np.uint16) for b in bands]
    )
    path = tmp / f"{folder.name}_b10_{b10_dn}.tif"
    profile = dict(driver="GTiff", width=256, height=256, count=13, dtype="uint16")
    transform = Affine(10.0, 0, 500000.0, 0, -10.0, 4650000.0)
    with rasterio.open(path, "w", crs=CRS.from_epsg(32632), transform=transform, **profile) as ds:
        ds.write(stack)
        for i, name in enumerate(L1C_BANDS, start=1):
            ds.set_band_description(i, name)
    flags, described = product_flags(path)
    out = figures(flags, pixel_probability(stack), water, stack[1], described)
    out["water_is"] = "SNOWED label == 1"
    out["b10_dn"] = b10_dn
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--data", type=Path, default=root.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=root / "docs/results/s2cloudless-check.json")
    args = parser.parse_args(argv)
    demo = args.data / "demo" / "s2_l1c_bracciano_2016-07-18.tif"
    samples = sorted(
        p for p in (args.data / "snowed-sample" / "SNOWED").glob("sample_*") if p.is_dir()
    )
    if not demo.is_file() or not samples:
        raise SystemExit(f"the real data is not under {args.data}; pass --data")
    results: dict = {
        "what": "share of pixels and of water pixels that --cloud-mask auto's s2cloudless "
        "flags as cloud (nodata), on real clear scenes: should be ~0 on water",
        "script": "scripts/s2cloudless_check.py",
        "model": f"{s2cloudless.PACKAGE} {s2cloudless.MODEL_FILE} (Sinergise, CC BY-SA 4.0)",
        "setting": {
            "threshold": s2cloudless.THRESHOLD,
            "average_over_cells": s2cloudless.AVERAGE_OVER,
            "dilation_cells": s2cloudless.DILATION_SIZE,
            "resolution_m": s2cloudless.RESOLUTION_M,
        },
        "bracciano_l1c": bracciano(demo),
        "snowed_l2a_b10_substituted": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for b10 in B10_CLEAR_DN:
            results["snowed_l2a_b10_substituted"][f"b10_{b10}_dn"] = {
                p.name: snowed(p, b10, Path(tmp)) for p in samples
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    for name, r in [("bracciano", results["bracciano_l1c"])] + [
        (f"{k} {b}", r)
        for b, runs in results["snowed_l2a_b10_substituted"].items()
        for k, r in runs.items()
    ]:
        print(
            f"{name:28s} flagged {100 * r['flagged']:6.2f} %  water flagged "
            f"{100 * (r['water_flagged'] or 0):6.2f} %  pixel p>{s2cloudless.THRESHOLD}: all "
            f"{100 * r['pixel_prob_gt_threshold']:5.2f} % water "
            f"{100 * r['water_pixel_prob_gt_threshold']:5.2f} %  water p max "
            f"{r['water_prob_max']}  bright water {r['bright_water_pixels']} px, flagged "
            f"{r['bright_water_flagged']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
