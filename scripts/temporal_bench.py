"""Temporal consistency on the two SEN2DWATER series: false water, missed water, masked share.

No hand labels exist for these 78 L1C dates, but most of each scene never changes. The
reference, per site (issue 21):

- **stable land**: land under both NDWI > 0 and MNDWI > 0 (i.e. both <= 0) on at least 90 % of
  the summer dates (June to September); **stable water**: water under both on 90 % of them;
- pixels within 3 px of the stable water edge are left out of both.

Per date and method, with the real engine (``python -m backend segment``, one process per
method and site, default options):

- **false water**: the share of the valid stable land that the date's mask calls water;
- **missed water**: the share of the valid stable water that it calls land;
- **masked**: the share of the scene's data pixels that the mask writes as nodata (clouds,
  shadows), the raster's empty border left out.

Dates come in two UTM grids; each mask is resampled (nearest) to the site's EPSG:32632 grid
before it is scored. Winter dates (November to January: hill shadow at Bracciano) and the
dates the data's README names as cloudy are marked.

    .venv/bin/python scripts/temporal_bench.py                  # the README's table and figure
    .venv/bin/python scripts/temporal_bench.py --methods auto --dates 2019-11-07,2019-01-01
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.core.water_indices import ndwi  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "sen2dwater"
SITES = ("bracciano", "tevere")
METHODS = ("auto", "ndwi", "mndwi", "model")
SUMMER = ("06", "07", "08", "09")
WINTER = ("11", "12", "01")
CLOUDY = {"tevere": ("2019-11-07", "2021-01-30", "2021-07-04")}
EDGE_PX = 3


def read_on(path: Path, grid: tuple, indexes: list[int] | None = None) -> np.ndarray:
    """Bands of ``path`` on ``grid`` (crs, transform, height, width), nearest; 0 outside."""
    crs, transform, height, width = grid
    with rasterio.open(path) as ds:
        data = ds.read(indexes)
        if (ds.crs, ds.transform, ds.height, ds.width) == grid:
            return data
        out = np.zeros((data.shape[0], height, width), data.dtype)
        nodata = ds.nodata if ds.nodata is not None else 0
        reproject(
            data,
            out,
            src_transform=ds.transform,
            src_crs=ds.crs,
            dst_transform=transform,
            dst_crs=crs,
            resampling=Resampling.nearest,
            src_nodata=nodata,
            dst_nodata=nodata,
        )
        return out


def site_grid(files: list[Path]) -> tuple:
    for f in files:
        with rasterio.open(f) as ds:
            if ds.crs.to_epsg() == 32632:
                return ds.crs, ds.transform, ds.height, ds.width
    with rasterio.open(files[0]) as ds:
        return ds.crs, ds.transform, ds.height, ds.width


def band_index(path: Path, names: list[str]) -> list[int]:
    with rasterio.open(path) as ds:
        desc = [(d or "").upper() for d in ds.descriptions]
    return [desc.index(n) + 1 for n in names]


def reference(files: list[Path], grid: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(stable land, stable water) bool arrays on ``grid`` (see the module docstring)."""
    land, water = [], []
    for f in files:
        if f.stem[5:7] not in SUMMER:
            continue
        g, nir, swir = read_on(f, grid, band_index(f, ["B3", "B8", "B11"])).astype(np.float32)
        n, m = ndwi(g, nir), ndwi(g, swir)
        land.append((n <= 0) & (m <= 0))
        water.append((n > 0) & (m > 0))
    land_s = np.mean(land, axis=0) >= 0.9
    water_s = np.mean(water, axis=0) >= 0.9
    near = (ndimage.distance_transform_edt(~water_s) <= EDGE_PX) & ~water_s
    near |= (ndimage.distance_transform_edt(water_s) <= EDGE_PX) & water_s
    return land_s & ~near, water_s & ~near


def score(mask: np.ndarray, data: np.ndarray, land: np.ndarray, water: np.ndarray) -> dict:
    valid = mask != 255
    return {
        "false_water": float((mask == 1)[valid & land].mean()) if (valid & land).any() else None,
        "missed_water": float((mask == 0)[valid & water].mean()) if (valid & water).any() else None,
        "masked": float((~valid)[data].mean()),
    }


def segment(files: list[Path], method: str, out_dir: Path) -> float:
    """Segment ``files`` in one process; if one stops on bad input (exit 2, e.g. a date that
    the cloud mask covers whole), each date again on its own, so the others are still scored
    and the failed one counts as fully masked."""
    opts = ["--out-dir", str(out_dir), "--method", method, "--shoreline", "none"]
    opts += ["--progress", "none", "--overwrite"]
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "backend", "segment", *map(str, files), *opts]
    if subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode == 2:
        for f in files:
            one = [sys.executable, "-m", "backend", "segment", str(f), *opts]
            subprocess.run(one, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def run(data: Path, methods: list[str], dates: set[str] | None, work: Path) -> dict:
    rows = []
    for site in SITES:
        all_files = sorted((data / site).glob("*.tif"))
        grid = site_grid(all_files)
        land, water = reference(all_files, grid)
        files = [f for f in all_files if dates is None or f.stem in dates]
        if not files:
            continue
        data_px = {f.stem: read_on(f, grid).any(axis=0) for f in files}
        for method in methods:
            out = work / method / site
            seconds = segment(files, method, out)
            print(f"{site} {method}: {len(files)} dates in {seconds:.1f} s", flush=True)
            for f in files:
                path = out / f"{f.stem}_water.tif"
                if path.exists():
                    mask = read_on(path, grid)[0]
                    mask[~data_px[f.stem]] = 255
                else:  # the method stopped on this date: nothing segmented
                    mask = np.full(data_px[f.stem].shape, 255, np.uint8)
                rows.append(
                    {
                        "site": site,
                        "date": f.stem,
                        "method": method,
                        "winter": f.stem[5:7] in WINTER,
                        "cloudy": f.stem in CLOUDY.get(site, ()),
                        **score(mask, data_px[f.stem], land, water),
                    }
                )
    return {"reference": __doc__.split("\n\n")[1], "rows": rows}


def summary(rows: list[dict], methods: list[str]) -> str:
    lines = [
        "| method | false water, mean | worst date | dates > 2 % | missed water, mean (worst) "
        "| masked, clear dates |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for m in methods:
        r = [x for x in rows if x["method"] == m and x["false_water"] is not None]
        if not r:
            continue
        fw = np.array([x["false_water"] for x in r])
        worst = r[int(fw.argmax())]
        mw = np.array([x["missed_water"] for x in r if x["missed_water"] is not None])
        clear = [x["masked"] for x in r if not x["cloudy"]]
        lines.append(
            f"| {m} | {100 * fw.mean():.2f} % | {100 * fw.max():.1f} % ({worst['site']} "
            f"{worst['date']}) | {(fw > 0.02).sum()} of {len(r)} | {100 * mw.mean():.2f} % "
            f"({100 * mw.max():.1f} %) | {100 * np.mean(clear):.2f} % |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SITES), 1, figsize=(10, 5.5), sharey=True)
    for ax, site in zip(axes, SITES, strict=True):
        for m in methods:
            r = [x for x in rows if x["site"] == site and x["method"] == m]
            ax.plot(
                range(len(r)), [100 * (x["false_water"] or 0) for x in r], marker="o", ms=3, label=m
            )
        r = [x for x in rows if x["site"] == site and x["method"] == methods[0]]
        for i, x in enumerate(r):
            if x["winter"]:
                ax.axvspan(i - 0.5, i + 0.5, color="0.85", lw=0)
            if x["cloudy"]:
                ax.axvspan(i - 0.5, i + 0.5, color="#f4c7a1", lw=0)
        ax.set_xticks(range(len(r)))
        ax.set_xticklabels([x["date"] for x in r], rotation=90, fontsize=6)
        ax.axhline(2, color="k", lw=0.6, ls="--")
        ax.set_ylabel("false water, % of stable land")
        ax.set_title(f"{site} (grey: November-January, orange: cloudy)", fontsize=9)
        ax.set_yscale("symlog", linthresh=1)
    axes[0].legend(fontsize=7, ncol=len(methods))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--dates", default="", help="comma-separated YYYY-MM-DD (default: all)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--figure", type=Path, help="write the figure here (PNG)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"temporal_bench: {args.data} not found (the SEN2DWATER series in ../shared)")
        return 2
    methods = [m for m in args.methods.split(",") if m]
    dates = set(args.dates.split(",")) if args.dates else None
    with tempfile.TemporaryDirectory(prefix="waterseg-temporal-") as work:
        result = run(args.data, methods, dates, Path(work))
    print(summary(result["rows"], methods))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.figure:
        figure(result["rows"], methods, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
