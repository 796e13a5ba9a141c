"""Segmentation benchmarks: throughput, pipeline overhead, the conv FLOP/s limit, peak memory.

``python -m benchmarks segment`` (part of ``make bench``). Prints tables; runs in a few
minutes on a 2-core CPU. Sections:

1. Throughput per architecture (half width, random weights; the bundled default model too if
   present): end-to-end streaming pipeline on an in-memory 512 x 512 raster (9 tiles of 256 at
   25 % overlap) versus the bare model forward on the same 9 tiles, in the same run.
   Megapixels per second and the time per 100 km2 at 10 m (1 Mpx).
2. The physical limit: dense 3x3 convolution throughput of this machine measured with a bare
   torch conv of the models' typical shape, the model's FLOPs per tile
   (torch.utils.flop_counter), and the fraction of the limit the pipeline achieves.
3. Peak memory (ru_maxrss of a child process running the real ``segment`` CLI) for a
   2048 x 2048 and an 8192 x 8192 GeoTIFF, side by side. A tiny SeNet (width 0.125) keeps the
   8192 case to about a minute on 2 cores; memory of the streaming buffers does not depend on
   the model, only the model's own activations do (one batch of tiles).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TILE = 256


def _devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_flops(model, device: str = "cpu") -> float:
    """FLOPs of one forward pass on a (1, 4, 256, 256) tile (multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 4, TILE, TILE, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def conv_flops_per_s(device: str, channels: int = 32, size: int = 256, batch: int = 4) -> float:
    """Measured FLOP/s of a bare 3x3 conv, ``channels`` -> ``channels`` at ``size`` px."""
    import torch

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device).eval()
    x = torch.randn(batch, channels, size, size, device=device)
    flops = 2.0 * batch * channels * channels * 9 * size * size
    with torch.inference_mode():
        for _ in range(2):
            conv(x)
        _sync(device)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5 or reps < 3:
            conv(x)
            reps += 1
        _sync(device)
        return flops * reps / (time.perf_counter() - t0)


def bare_forward_s(predictor, tiles: np.ndarray) -> float:
    predictor(tiles[: predictor.batch_size])  # warm-up
    _sync(predictor.device)
    t0 = time.perf_counter()
    predictor(tiles)
    _sync(predictor.device)
    return time.perf_counter() - t0


def end_to_end_s(predictor, raster: np.ndarray) -> float:
    from backend.segment.pipeline import ArrayReader, iter_probability_rows
    from backend.segment.shoreline import ContourBuilder
    from backend.segment.writers import mask_from_probability

    t0 = time.perf_counter()
    contours = ContourBuilder(raster.shape[2])
    for block in iter_probability_rows(
        ArrayReader(raster), predictor, lambda r: r.astype(np.float32) * 1e-4, tile=TILE
    ):
        mask_from_probability(block.prob, block.valid, 0.5)
        contours.add_rows(block.row0, block.prob)
    contours.lines()
    _sync(predictor.device)
    return time.perf_counter() - t0


def throughput_rows(limit: dict[str, float]) -> list[dict]:
    import torch

    from backend.models import create_model, list_models
    from backend.paths import DEFAULT_MODEL
    from backend.segment.inference import TilePredictor, configure_cpu_threads
    from backend.segment.tiling import TileGrid

    configure_cpu_threads()
    size = 512
    rng = np.random.default_rng(0)
    raster = rng.integers(1, 4000, size=(4, size, size)).astype(np.uint16)
    grid = TileGrid(size, size, TILE, 0.25)
    tiles = np.stack(
        [raster[:, y : y + TILE, x : x + TILE] for y in grid.ys for x in grid.xs]
    ).astype(np.float32) * np.float32(1e-4)

    models = []
    if DEFAULT_MODEL.is_file():
        from backend.checkpoint import load_model

        try:
            m, _, meta = load_model(DEFAULT_MODEL)
            arch = meta["arch"]
            models.append((f"default ({arch['name']} {arch['kwargs'].get('width', '')})", m))
        except Exception as exc:  # noqa: BLE001 - report and go on with the zoo
            print(f"  (default model not loadable: {exc})")
    for name in list_models():
        torch.manual_seed(0)
        models.append((f"{name} half", create_model(name, width="half")))

    rows = []
    for device in _devices():
        for label, model in models:
            pred = TilePredictor(model, device, batch_size=3 if device == "cpu" else 9)
            bare = bare_forward_s(pred, tiles)
            e2e = end_to_end_s(pred, raster)
            mpx = size * size / 1e6
            flops = model_flops(pred.model, device)
            achieved = flops * grid.count / e2e
            rows.append(
                {
                    "device": device,
                    "model": label,
                    "mpx_s": mpx / e2e,
                    "s_per_100km2": 1.0 / (mpx / e2e),
                    "e2e_s": e2e,
                    "bare_s": bare,
                    "overhead": e2e / bare - 1.0,
                    "gflop_tile": flops / 1e9,
                    "fraction": achieved / limit[device],
                }
            )
            r = rows[-1]
            print(
                f"  {device:4} {label:22} {r['mpx_s']:7.3f} MP/s  {r['s_per_100km2']:8.1f} s/100km2"
                f"  e2e {e2e:6.2f}s  bare {bare:6.2f}s  overhead {r['overhead'] * 100:+5.1f}%"
                f"  {r['gflop_tile']:6.2f} GFLOP/tile  {r['fraction'] * 100:5.1f}% of conv limit",
                flush=True,
            )
    return rows


_CHILD = r"""
import json, resource, sys
from backend.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _write_big(path: Path, size: int) -> None:
    """A uint16 4-band GeoTIFF (tiled, deflate) with a coast, written strip by strip."""
    import rasterio
    from affine import Affine

    profile = dict(
        driver="GTiff", width=size, height=size, count=4, dtype="uint16", crs="EPSG:32632",
        transform=Affine(10, 0, 500000, 0, -10, 4650000), tiled=True, blockxsize=256,
        blockysize=256, compress="deflate", BIGTIFF="IF_SAFER",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, size, 512):
            h = min(512, size - r0)
            cols = np.arange(size)[None, :]
            water = np.broadcast_to(cols < size // 3, (h, size))
            block = np.empty((4, h, size), np.uint16)
            block[0] = np.where(water, 900, 700)
            block[1] = np.where(water, 800, 900)
            block[2] = np.where(water, 500, 1000)
            block[3] = np.where(water, 300, 3000)
            ds.write(block, window=rasterio.windows.Window(0, r0, size, h))


def memory_rows(sizes=(2048, 8192)) -> list[dict]:
    import torch

    from backend.checkpoint import InputSpec, build_checkpoint, save_checkpoint
    from backend.models import create_model

    rows = []
    with tempfile.TemporaryDirectory(prefix="waterseg-bench-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        kwargs = {"width": 0.125, "in_channels": 4}
        ckpt = build_checkpoint(create_model("senet", **kwargs), "senet", kwargs, InputSpec())
        save_checkpoint(ckpt, tmp / "tiny.pt")
        for size in sizes:
            src = tmp / f"scene{size}.tif"
            _write_big(src, size)
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, "segment", str(src), "--out-dir", str(tmp / "out"),
                 "--model", str(tmp / "tiny.pt"), "--progress", "none", "--overwrite",
                 "--device", "cpu"],
                cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            wall = time.perf_counter() - t0
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-2000:])
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"size": size, "mb": res["maxrss_kb"] / 1024, "wall_s": wall})
            src.unlink()
    return rows


def main() -> None:
    import torch

    from backend.segment.inference import configure_cpu_threads

    threads = configure_cpu_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads, devices: {', '.join(_devices())}")
    print("\n[1] dense 3x3 conv limit (bare torch conv, batch 4)")
    limit = {}
    for device in _devices():
        a = conv_flops_per_s(device, 32, 256)
        b = conv_flops_per_s(device, 64, 128)
        limit[device] = max(a, b)
        print(f"  {device:4} 32ch@256px {a / 1e9:7.1f} GFLOP/s   64ch@128px {b / 1e9:7.1f} GFLOP/s")

    print("\n[2] throughput: 512 x 512 raster (9 tiles of 256, overlap 0.25), batch 3 on CPU")
    throughput_rows(limit)

    print("\n[3] peak memory of the segment CLI (child ru_maxrss), tiny SeNet (width 0.125)")
    mem = memory_rows()
    for r in mem:
        print(f"  {r['size']:5} x {r['size']:<5} {r['mb']:8.0f} MB  {r['wall_s']:6.1f} s")
    if len(mem) == 2:
        print(
            f"  ratio {mem[1]['size']}/{mem[0]['size']}: {mem[1]['mb'] / mem[0]['mb']:.2f} "
            f"for {(mem[1]['size'] / mem[0]['size']) ** 2:.0f}x the pixels"
        )


if __name__ == "__main__":
    main()
