"""Generated dated scenes as ``batch`` leaves them: a water mask GeoTIFF and a shoreline
GeoPackage per date (drawn by segment's own contour code) and a batch_report.json.

A round lake in EPSG:32632 (10 m pixels) whose radius shrinks ``rate`` m/yr; optional cloud
(255) over part of one date's mask."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from backend.change.dates import decimal_years
from backend.segment.georef import GeoRef
from backend.segment.shoreline import ContourBuilder, build_shoreline
from backend.segment.writers import write_lines

SIZE = 160
PIXEL = 10.0
ORIGIN = (700000.0, 4670000.0)
CENTRE = (ORIGIN[0] + SIZE * PIXEL / 2, ORIGIN[1] - SIZE * PIXEL / 2)


def write_scene(
    out: Path, name: str, radius: float, cloud: bool = False, quality: dict | None = None
) -> dict:
    """One date -> its batch report row."""
    transform = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    x, y = transform * (cols, rows)
    dist = np.hypot(x - CENTRE[0], y - CENTRE[1])
    # sub-pixel edge: a water "probability" ramp one pixel wide across the radius
    prob = np.clip(0.5 + (radius - dist) / PIXEL, 0, 1).astype(np.float32)
    mask = (prob >= 0.5).astype(np.uint8)
    if cloud:
        mask[:, SIZE // 2 :][: SIZE // 2] = 255  # the north-east quarter is cloud
        prob[mask == 255] = np.nan
    georef = GeoRef(CRS.from_epsg(32632), transform, SIZE, SIZE, 255)
    mask_path = out / f"{name}_water.tif"
    with rasterio.open(
        mask_path,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype="uint8",
        crs=georef.crs,
        transform=transform,
        nodata=255,
    ) as dst:
        dst.write(mask, 1)
    builder = ContourBuilder(SIZE)
    builder.add_rows(0, prob)
    shore = build_shoreline(builder.lines(), georef, min_length_m=20)
    gpkg = out / f"{name}_shoreline.gpkg"
    write_lines(gpkg, "GPKG", shore.lines, shore.lengths_m, georef, name)
    return {
        "scene": name,
        "input": str(out / f"{name}.tif"),
        "status": "done",
        "seconds": 1.0,
        "water_fraction": float((mask == 1).sum() / max(1, (mask != 255).sum())),
        "outputs": {"mask": str(mask_path), "shoreline_gpkg": str(gpkg)},
        **(quality or {}),
    }


def write_series(
    out: Path,
    dates: list[str],
    rate: float,
    r0: float = 500.0,
    cloud_on: str | None = None,
    quality: dict[str, dict] | None = None,
) -> Path:
    """Scenes named by their dates (YYYY-MM-DD) into ``out`` + batch_report.json -> out."""
    out.mkdir(parents=True, exist_ok=True)
    years = decimal_years([datetime.fromisoformat(d) for d in dates if d[:4].isdigit()])
    rows, k = [], 0
    for d in dates:
        if not d[:4].isdigit():  # an undated scene
            rows.append(write_scene(out, d, r0))
            continue
        radius = r0 - rate * (years[k] - years[0])
        rows.append(
            write_scene(out, d, radius, cloud=d == cloud_on, quality=(quality or {}).get(d))
        )
        k += 1
    (out / "batch_report.json").write_text(json.dumps({"summary": {}, "scenes": rows}))
    return out
