"""Tiny GeoTIFF and model generators for the segmentation tests (real CRSs, real files).

- ``write_raster``: any (C, H, W) array to a GeoTIFF in EPSG:32632 (10 m) or EPSG:4326.
- ``water_scene``: a Sentinel-2-like 4-band uint16 scene whose water region is given by a
  boolean array (water dark in B8, land bright).
- ``NirThresholdModel``: a hand-made translation-equivariant model that outputs water logits
  from the B8 channel (input channel 3): water where reflectance B8 < 0.1.
- ``ConstantModel``, ``ConvModel``: a constant-output model and a single 3x3 conv.
- ``tiny_checkpoint``: a saved checkpoint of a real architecture at width 0.125 with random
  weights, for CLI tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

UTM32 = CRS.from_epsg(32632)
WGS84 = CRS.from_epsg(4326)
UTM_ORIGIN = (500000.0, 4650000.0)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: CRS = UTM32,
    transform: Affine | None = None,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    tiled: bool = False,
) -> Path:
    """Write ``data`` (C, H, W) as a GeoTIFF; default transform: 10 m pixels in UTM 32N."""
    c, h, w = data.shape
    if transform is None:
        transform = Affine(10.0, 0, UTM_ORIGIN[0], 0, -10.0, UTM_ORIGIN[1])
    profile = dict(
        driver="GTiff",
        width=w,
        height=h,
        count=c,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                ds.set_band_description(i, d)
    return path


def water_scene(water: np.ndarray, dtype=np.uint16) -> np.ndarray:
    """Bool (H, W) water -> (4, H, W) B2 B3 B4 B8 reflectance x 10000 (water: B8 = 300,
    land: B8 = 3000)."""
    h, w = water.shape
    out = np.empty((4, h, w), np.float64)
    out[0] = np.where(water, 900, 700)
    out[1] = np.where(water, 800, 900)
    out[2] = np.where(water, 500, 1000)
    out[3] = np.where(water, 300, 3000)
    return out.astype(dtype)


class NirThresholdModel(torch.nn.Module):
    """Per-pixel water logits from input channel 3 (B8 reflectance): logit = 40 (0.1 - B8).

    Translation-equivariant with a 1x1 receptive field; class 1 = water."""

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        water = 40.0 * (0.1 - x[:, 3:4])
        return torch.cat([torch.zeros_like(water), water], dim=1)


class ConstantModel(torch.nn.Module):
    """Same logits everywhere: p(water) = sigmoid(logit)."""

    size_multiple = 1

    def __init__(self, logit: float = 0.3):
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        out = torch.zeros(b, 2, h, w)
        out[:, 1] = self.logit
        return out


class ConvModel(torch.nn.Module):
    """A single 3x3 conv (zero padding) to 2 logits: translation-equivariant, receptive
    field radius 1."""

    size_multiple = 1

    def __init__(self, in_channels: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(in_channels, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.copy_(torch.randn(2, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def run_backend(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m backend ARGS`` in a subprocess from the repository root (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "backend", *map(str, args)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_checkpoint(path: Path, arch: str = "unet", width: float = 0.125, tile: int = 64) -> Path:
    """Save a random-weights checkpoint of ``arch`` at ``width`` with tile size ``tile``."""
    from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
    from backend.models import create_model

    torch.manual_seed(0)
    kwargs = {"width": width, "in_channels": 4}
    model = create_model(arch, **kwargs)
    spec = InputSpec(tile_size=tile)
    save_checkpoint(build_checkpoint(model, arch, kwargs, spec), path)
    return path


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (fresh models have
    mean 0, var 1, gamma 1, beta 0, which would make folding a near no-op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()
