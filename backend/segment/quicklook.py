"""Quicklook PNG: true-colour image (B4 B3 B2) with the water mask overlaid and the shoreline
drawn, at most ``max_size`` pixels on the long side (decimated reads: memory stays small)."""

from __future__ import annotations

import os

import numpy as np

from backend.core.errors import UserError
from backend.segment.raster_io import map_bands

WATER_RGB = np.array([30, 110, 255], np.float32)
SHORE_RGB = (255, 230, 0)


def _rgb_indexes(source) -> list[int]:
    try:
        return map_bands(["B4", "B3", "B2"], source.count, source.descriptions).indexes
    except UserError:
        if source.count >= 3 and len(source.indexes) >= 3:
            # Model bands in Sentinel-2 order B2 B3 B4 ...: show them as R=B4, G=B3, B=B2.
            return [source.indexes[2], source.indexes[1], source.indexes[0]]
        return [source.indexes[0]] * 3


def stretch(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Float (3, h, w) -> uint8 (h, w, 3) with a 2-98 % percentile stretch per band over valid
    pixels."""
    out = np.zeros(rgb.shape[1:] + (3,), np.uint8)
    for i in range(3):
        band = rgb[i].astype(np.float64)
        vals = band[valid]
        if vals.size == 0:
            continue
        lo, hi = np.percentile(vals, [2, 98])
        scaled = np.clip((band - lo) / max(hi - lo, 1e-9), 0, 1) * 255
        out[..., i] = scaled.astype(np.uint8)
    return out


def write_quicklook(
    source,
    mask_path: str | os.PathLike,
    lines: list[np.ndarray],
    out_path: str | os.PathLike,
    max_size: int = 1024,
) -> tuple[int, int]:
    """Write the PNG; ``lines`` are shoreline polylines in map coordinates. Returns (w, h)."""
    import rasterio
    from PIL import Image, ImageDraw

    georef = source.georef
    scale = min(1.0, max_size / max(georef.width, georef.height))
    w = max(1, int(round(georef.width * scale)))
    h = max(1, int(round(georef.height * scale)))
    rgb = source.read_bands_decimated(_rgb_indexes(source), h, w).astype(np.float32)
    with rasterio.open(mask_path) as m:
        mask = m.read(1, out_shape=(h, w))
    valid = (mask != 255) & np.all(np.isfinite(rgb), axis=0)
    img = stretch(np.nan_to_num(rgb), valid).astype(np.float32)
    water = mask == 1
    img[water] = 0.55 * img[water] + 0.45 * WATER_RGB
    img[~valid] = 0
    im = Image.fromarray(img.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    inv = ~georef.transform
    sx, sy = w / georef.width, h / georef.height
    width_px = max(1, int(round(max(w, h) / 400)))
    for line in lines:
        cols, rows = inv * (line[:, 0], line[:, 1])
        pts = list(
            zip((np.asarray(cols) * sx).tolist(), (np.asarray(rows) * sy).tolist(), strict=True)
        )
        if len(pts) >= 2:
            draw.line(pts, fill=SHORE_RGB, width=width_px)
    im.save(out_path, format="PNG")
    return w, h
