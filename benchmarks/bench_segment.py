"""Segmentation benchmarks: throughput, pipeline overhead, the dense-layer limit, peak memory.

``python -m benchmarks segment`` (part of ``make bench``), or ``python -m
benchmarks.bench_segment [--models unet,senet] [--repeats 3] [--no-memory]``. Prints tables;
about 5 minutes on a 2-core CPU. Sections:

1. Throughput per architecture (half width, random weights; the bundled default model too if
   present): the end-to-end streaming pipeline (normalisation, tiling, inference, blending,
   mask, marching squares) on an in-memory 512 x 512 raster (the synthetic demo scene; 9 tiles
   of 256 at 25 % overlap)
   and the bare predictor on the same 9 tiles. Two predictor settings run interleaved in the
   same process (A/B/A/B...): "plain" (eval model as stored, NCHW, batch 3: the settings
   before the inference optimisations) and "optimised" (the defaults: BatchNorm folded,
   channels_last, default batch). Each time is the best of ``repeats`` runs: on a shared
   machine other processes only ever add time, so the minimum is the least noisy estimate.
   Megapixels per second and the time per 100 km2 at 10 m (1 Mpx).
2. The physical limit, per model: every dense layer (Conv2d, ConvTranspose2d, Linear) of the
   optimised model is recorded with its input shape during one batch, and each distinct
   (layer, shape) is timed alone as a bare torch op on random input, in NCHW and in
   channels_last (the faster counts), best of several runs. The limit time of the model is
   the sum of those bare times (times how often each layer runs); its FLOPs over that time
   is the machine's dense FLOP/s *for this model's mix of layer shapes* (a FLOP-weighted
   harmonic mean of the per-layer speeds). The fraction of the limit the whole pipeline
   reaches is limit time x tiles / end-to-end time. Layers a model cannot do faster than a
   bare conv of the same shape bound it; what is left (pooling, upsampling, concatenation,
   norms that could not be folded, attention, blending, contours) is overhead.
3. Peak memory (VmHWM of a child process running the real ``segment`` CLI) for a 1024,
   2048, 8192 and 10980 (a full Sentinel-2 tile) square GeoTIFF, side by side, and the ratio
   of the 8192 peak to the 1024 one (the goal of issue 14: at most 1.3). A tiny SeNet (width
   0.125) keeps the big cases short; memory of the streaming buffers does not depend on the
   model, only the model's own activations do (one batch of tiles). ``--memory-only`` runs
   this section alone.

Each section prints the load average of the machine before it runs.
"""

from __future__ import annotations

import argparse
import copy
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
PLAIN_BATCH = 3


def _devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def model_flops(model, device: str = "cpu") -> float:
    """FLOPs of one forward pass on a (1, C, 256, 256) tile (multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, _input_bands(model), TILE, TILE, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def _best_time(
    fn, device: str, budget_s: float = 0.25, min_reps: int = 3, clock=time.perf_counter
) -> float:
    """Best ``clock`` time of ``fn()`` over at least ``min_reps`` runs and ``budget_s`` s."""
    fn()  # warm-up (oneDNN primitive creation, cuDNN autotune)
    _sync(device)
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < budget_s:
        t0 = clock()
        fn()
        _sync(device)
        best = min(best, clock() - t0)
        reps += 1
    return best


def conv_flops_per_s(device: str, channels: int = 32, size: int = 256, batch: int = 2) -> float:
    """Best FLOP/s of a bare 3x3 conv, ``channels`` -> ``channels`` at ``size`` px, over the
    NCHW and channels_last memory formats (for reference; the limit is :func:`layer_limit`)."""
    import torch

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device).eval()
    x = torch.randn(batch, channels, size, size, device=device)
    flops = 2.0 * batch * channels * channels * 9 * size * size
    best = float("inf")
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            c = conv.to(memory_format=fmt)
            xf = x.contiguous(memory_format=fmt)
            best = min(best, _best_time(lambda c=c, xf=xf: c(xf), device, 1.0))
    return flops / best


def layer_limit(predictor, batch: int, budget_s: float = 0.1, clock=time.perf_counter) -> dict:
    """The dense-layer limit of ``predictor.model`` for a batch of ``batch`` 256 px tiles.

    Records every Conv2d / ConvTranspose2d / Linear call with its input shape, times each
    distinct (layer, shape) alone (NCHW and channels_last for convs, the faster counts;
    under the predictor's autocast on CUDA) and sums. Returns ``limit_s`` (per batch),
    ``flops`` (of those layers, per batch), ``flops_per_s`` (flops / limit_s), ``layers``
    (calls), ``shapes`` (distinct) and ``top`` (the shape carrying most FLOPs, its share of
    the FLOPs and its bare FLOP/s).
    """
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    device = predictor.device
    model = predictor.model
    calls: dict[tuple, list] = {}
    hooks = []

    def hook(module, args):
        x = args[0]
        key = (id(module), tuple(x.shape))
        calls.setdefault(key, [module, tuple(x.shape), 0])[2] += 1

    for m in model.modules():
        if type(m) in (nn.Conv2d, nn.ConvTranspose2d, nn.Linear):
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        x = torch.zeros(batch, _input_bands(model), TILE, TILE, device=device)
        x = x.contiguous(memory_format=predictor.memory_format)
        with torch.inference_mode(), predictor._autocast():
            model(x)
    finally:
        for h in hooks:
            h.remove()

    # Identical layers (same type, config and input shape) are timed once.
    unique: dict[tuple, list] = {}
    for module, shape, count in calls.values():
        key = (repr(module), shape)
        if key in unique:
            unique[key][2] += count
        else:
            unique[key] = [module, shape, count]

    total_s = total_flops = 0.0
    top = None
    with torch.inference_mode(), predictor._autocast():
        for module, shape, count in unique.values():
            layer = copy.deepcopy(module)
            inp = torch.randn(shape, device=device)
            with FlopCounterMode(display=False) as fc:
                layer(inp)
            flops = float(fc.get_total_flops())
            fmts = [torch.contiguous_format]
            if len(shape) == 4 and not isinstance(layer, nn.Linear):
                fmts.append(torch.channels_last)
            best = float("inf")
            for fmt in fmts:
                lf = layer.to(memory_format=fmt)
                xf = inp.contiguous(memory_format=fmt)
                best = min(
                    best, _best_time(lambda lf=lf, xf=xf: lf(xf), device, budget_s, clock=clock)
                )
            total_s += count * best
            total_flops += count * flops
            if top is None or count * flops > top["flops"]:
                top = {"layer": repr(module), "shape": shape, "flops": count * flops,
                       "flops_per_s": flops / best}  # fmt: skip
    top["share"] = top["flops"] / max(total_flops, 1.0)
    return {
        "limit_s": total_s,
        "flops": total_flops,
        "flops_per_s": total_flops / total_s,
        "layers": sum(c for _, _, c in calls.values()),
        "shapes": len(unique),
        "top": top,
    }


def bare_forward_s(predictor, tiles: np.ndarray, clock=time.perf_counter) -> float:
    """Time of the predictor alone on ``tiles`` (float32 (N, 4, 256, 256)), one run."""
    _sync(predictor.device)
    t0 = clock()
    predictor(tiles)
    _sync(predictor.device)
    return clock() - t0


def end_to_end_s(
    predictor, raster: np.ndarray, clock=time.perf_counter, parts: dict | None = None
) -> float:
    """Time of the streaming pipeline on ``raster`` (uint16 (4, H, W)), one run:
    normalisation, tiling, inference, blending, mask and marching-squares contours.
    ``parts["contours"]`` receives the time spent in contour extraction and joining (with
    random weights on a noise raster it depends on how many p = 0.5 crossings come out)."""
    from backend.segment.pipeline import ArrayReader, iter_probability_rows
    from backend.segment.shoreline import ContourBuilder
    from backend.segment.writers import mask_from_probability

    scale = np.float32(1e-4)

    def normalise(raw: np.ndarray) -> np.ndarray:
        x = raw.astype(np.float32)
        x *= scale
        return x

    t0 = clock()
    in_contours = 0.0
    contours = ContourBuilder(raster.shape[2])
    for block in iter_probability_rows(ArrayReader(raster), predictor, normalise, tile=TILE):
        mask_from_probability(block.prob, block.valid, 0.5)
        c0 = clock()
        contours.add_rows(block.row0, block.prob)
        in_contours += clock() - c0
    c0 = clock()
    contours.lines()
    in_contours += clock() - c0
    _sync(predictor.device)
    total = clock() - t0
    if parts is not None:
        parts["contours"] = in_contours
    return total


# Networks measured beside the bundled files and the zoo though no file of theirs is bundled:
# key -> (architecture, kwargs, label). Speed does not depend on the weights, so random ones
# stand in. "ms-v2": the multispectral v2 network of scripts/train_ms.py (B4 B3 B2 B8 B11).
UNBUNDLED = {
    "ms-v2": ("lite0_unet", {"width": 0.5, "in_channels": 5}, "ms v2 (lite0_unet 0.5, 5 bands)"),
}


def _bench_models(
    names: list[str] | None, checkpoints: list[Path] = ()
) -> list[tuple[str, object]]:
    """(label, model) of every bundled file, the :data:`UNBUNDLED` networks, the zoo at half
    width and each of ``checkpoints``; ``names`` keeps only those keys (bundled keys, zoo
    names, "ms-v2")."""
    import torch

    from backend.core.contract import bundled_models
    from backend.core.paths import MODELS_DIR
    from backend.models import create_model, list_models
    from backend.models.loading import load_model

    models = []
    for entry in bundled_models():  # every bundled file: default, rgbn, rgb (v2)
        path = MODELS_DIR / entry.file
        if not path.is_file() or (names is not None and entry.key not in names):
            continue
        try:
            m, _, meta = load_model(path)
            arch = meta["arch"]
            models.append((f"{entry.key} ({arch['name']} {arch['kwargs'].get('width', '')})", m))
        except Exception as exc:  # noqa: BLE001 - report and go on with the zoo
            print(f"  ({entry.key} model not loadable: {exc})")
    for key, (arch, kwargs, label) in UNBUNDLED.items():
        if names is None or key in names:
            torch.manual_seed(0)
            models.append((label, create_model(arch, **kwargs).eval()))
    for name in list_models():
        if names is None or name in names:
            torch.manual_seed(0)
            models.append((f"{name} half", create_model(name, width="half")))
    for path in checkpoints:
        m, _, meta = load_model(path)
        arch = meta["arch"]
        models.append((f"{path.name} ({arch['name']} {arch['kwargs'].get('width', '')})", m))
    return models


class _OneThread:
    """Context: torch on one intra-op thread (restored on exit)."""

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)


def _measure(plain, fast, raster, tiles, repeats: int, clock) -> dict[str, float]:
    """Best-of-``repeats`` times, plain and optimised interleaved: plain end-to-end,
    optimised end-to-end, optimised bare predictor."""
    for p in (plain, fast):  # warm-up: oneDNN primitives, cuDNN autotune, caches
        p(tiles[: p.batch_size])
    times: dict[str, list[float]] = {"plain": [], "e2e": [], "bare": [], "contours": []}
    for _ in range(repeats):
        times["plain"].append(end_to_end_s(plain, raster, clock))
        parts: dict[str, float] = {}
        times["e2e"].append(end_to_end_s(fast, raster, clock, parts))
        times["contours"].append(parts["contours"])
        times["bare"].append(bare_forward_s(fast, tiles, clock))
    return {k: min(v) for k, v in times.items()}


def bench_raster(size: int = 512) -> np.ndarray:
    """uint16 (4, size, size): the synthetic Sentinel-2 demo scene (sea, coast, river, lake,
    town; backend.datasets.synthetic), so the trained default model draws a realistic
    shoreline; random uint16 noise if that module is missing."""
    try:
        from backend.datasets.synthetic import generate_scene

        return np.ascontiguousarray(generate_scene(size, seed=0).image, dtype=np.uint16)
    except ImportError:
        rng = np.random.default_rng(0)
        return rng.integers(1, 4000, size=(6, size, size)).astype(np.uint16)


def _input_bands(model) -> int:
    """How many input bands a model takes (its spectral layer's, else its first conv's)."""
    import torch

    spectral = getattr(model, "spectral", None)
    if spectral is None and hasattr(model, "members"):  # an ensemble: its first member's
        spectral = getattr(model.members[0], "spectral", None)
    if spectral is not None:
        return int(spectral.in_channels)
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def throughput_rows(models, repeats: int = 2) -> list[dict]:
    """Sections 1 and 2 for each (label, model): plain vs optimised, the limit, the fraction.

    On CPU every figure is measured twice: wall time with the default threads (what a user
    waits for), and CPU time (``time.process_time``) on one thread, which other processes
    on a shared machine barely disturb; speed-ups and the fraction of the limit come from the
    CPU-time figures. On CUDA: wall time only.
    """
    from backend.segment.inference import TilePredictor, default_batch_size
    from backend.segment.tiling import TileGrid

    size = 512
    raster = bench_raster(size)
    grid = TileGrid(size, size, TILE, 0.25)
    tiles = np.stack(
        [raster[:, y : y + TILE, x : x + TILE] for y in grid.ys for x in grid.xs]
    ).astype(np.float32) * np.float32(1e-4)
    mpx = size * size / 1e6

    rows = []
    for device in _devices():
        cpu = device == "cpu"
        for label, model in models:
            bands = _input_bands(model)  # the scene's first bands: B2 B3 B4 B8 (B11 B12)
            raster_m, tiles_m = raster[:bands], tiles[:, :bands]
            plain = TilePredictor(
                model, device, PLAIN_BATCH if cpu else 9, fuse=False, channels_last=False
            )
            fast = TilePredictor(model, device)
            wall = _measure(plain, fast, raster_m, tiles_m, repeats, time.perf_counter)
            if cpu:
                with _OneThread():
                    one = _measure(plain, fast, raster_m, tiles_m, repeats, time.process_time)
                    lim = layer_limit(fast, fast.batch_size, clock=time.process_time)
            else:
                one = wall
                lim = layer_limit(fast, fast.batch_size)
            per_tile_limit = lim["limit_s"] / fast.batch_size
            flops = model_flops(fast.model, device)
            r = {
                "device": device,
                "model": label,
                "batch": fast.batch_size,
                "mpx_s": mpx / wall["e2e"],
                "s_per_100km2": wall["e2e"] / mpx,
                "wall_plain_s": wall["plain"],
                "wall_e2e_s": wall["e2e"],
                "wall_bare_s": wall["bare"],
                "wall_speedup": wall["plain"] / wall["e2e"],
                "cpu_plain_s": one["plain"],
                "cpu_e2e_s": one["e2e"],
                "cpu_bare_s": one["bare"],
                "speedup": one["plain"] / one["e2e"],
                "overhead": one["e2e"] / one["bare"] - 1.0,
                "contours_s": one["contours"],
                "gflop_tile": flops / 1e9,
                "limit_gflops": lim["flops_per_s"] / 1e9,
                "achieved_gflops": flops * grid.count / one["e2e"] / 1e9,
                "fraction": per_tile_limit * grid.count / one["e2e"],
                "fraction_plain": per_tile_limit * grid.count / one["plain"],
                "fraction_bare": per_tile_limit * grid.count / one["bare"],
                "top": lim["top"],
                "shapes": lim["shapes"],
            }
            rows.append(r)
            top = r["top"]
            print(
                f"  {device:4} {label:21} wall: {r['mpx_s']:6.3f} MP/s {r['s_per_100km2']:6.2f}"
                f" s/100km2, e2e {wall['e2e']:6.3f}s (plain {wall['plain']:6.3f}s,"
                f" {r['wall_speedup']:.2f}x), bare {wall['bare']:6.3f}s\n"
                f"  {'':26} {'1 thread CPU' if cpu else 'wall'}: e2e {one['e2e']:6.3f}s"
                f" (plain {one['plain']:6.3f}s, {r['speedup']:.2f}x), bare {one['bare']:6.3f}s,"
                f" overhead {r['overhead'] * 100:+5.1f}% (contours {r['contours_s']:.3f}s)"
                f" | {r['gflop_tile']:5.2f} GFLOP/tile,"
                f" achieved {r['achieved_gflops']:5.1f} GFLOP/s of a layer limit of"
                f" {r['limit_gflops']:5.1f} ({r['shapes']} shapes; the top shape carries"
                f" {top['share'] * 100:.0f}% of the FLOPs at {top['flops_per_s'] / 1e9:.0f}"
                f" GFLOP/s) = {r['fraction'] * 100:4.1f}% (plain {r['fraction_plain'] * 100:4.1f}%,"
                f" bare model {r['fraction_bare'] * 100:4.1f}%)",
                flush=True,
            )
    print(
        f"  (optimised: BatchNorm folded, channels_last, batch {default_batch_size('cpu')} on"
        f" CPU; plain: batch {PLAIN_BATCH}, no folding, NCHW; best of {repeats} interleaved runs)"
    )
    return rows


def peak_rss_kb() -> int:
    """Peak resident memory of this process image in kB: ``VmHWM`` of /proc/self/status,
    which starts afresh at exec. (``ru_maxrss`` does not: on Linux a child started by a big
    parent reports the parent's peak, e.g. 1457 MB for a 13 MB child.) ``ru_maxrss`` where
    /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


_CHILD = r"""
import json, sys
from benchmarks.bench_segment import peak_rss_kb
from backend.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kb": peak_rss_kb()}))
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


def memory_rows(sizes=(1024, 2048, 8192, 10980)) -> list[dict]:
    import torch

    from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
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


def shoreline_rows(repeats: int = 2, size: int = 512, clock=time.perf_counter) -> list[dict]:
    """Marching squares and chaining on uniform noise around the threshold: the numpy chaining
    of oriented segments against the Python walk it replaced, interleaved, best of
    ``repeats``."""
    from backend.segment.shoreline import (
        _join_by_walking,
        join_segments,
        marching_squares,
        node_table,
    )

    prob = np.random.default_rng(0).random((size, size)).astype(np.float32)
    march, numpy_s, walk = [], [], []
    for _ in range(max(1, repeats)):
        t0 = clock()
        ka, kb, xa, xb = marching_squares(prob, 0.5, 0, size)
        t1 = clock()
        lines = join_segments(ka, kb, xa, xb)
        t2 = clock()
        graph = node_table(ka, kb, xa, xb)
        t3 = clock()
        _join_by_walking(*graph)
        t4 = clock()
        march.append(t1 - t0)
        numpy_s.append(t2 - t1)
        walk.append(t4 - t3)  # the walk alone (the key table is built outside its timing)
    return [
        {
            "segments": int(ka.size),
            "lines": len(lines),
            "march_s": min(march),
            "numpy_s": min(numpy_s),
            "walk_s": min(walk),
        }
    ]


def print_memory() -> None:
    """Section 3: the peak memory table."""
    print(
        f"\n[3] peak memory of the segment CLI (child VmHWM), tiny SeNet (width 0.125); {_load()}"
    )
    mem = memory_rows()
    for r in mem:
        print(f"  {r['size']:5} x {r['size']:<5} {r['mb']:8.0f} MB  {r['wall_s']:6.1f} s")
    by_size = {r["size"]: r["mb"] for r in mem}
    if 1024 in by_size and 8192 in by_size:
        print(f"  ratio 8192/1024: {by_size[8192] / by_size[1024]:.2f} for 64x the pixels")


def main(argv: list[str] | None = None) -> int:
    import torch

    from backend.segment.inference import configure_cpu_threads

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_segment")
    p.add_argument(
        "--models", help="comma-separated subset: default, rgbn, rgb, ms-v2, deepunet, ..."
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="also measure this checkpoint (repeatable), e.g. a trained model under runs/",
    )
    p.add_argument("--repeats", type=int, default=2, help="interleaved runs per setting (2)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory runs (section 3)")
    p.add_argument("--memory-only", action="store_true", help="run section 3 alone")
    args = p.parse_args(argv or [])
    if args.memory_only:
        print_memory()
        return 0

    threads = configure_cpu_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads, devices: {', '.join(_devices())}")
    print(f"\n[1] dense 3x3 conv reference (bare torch conv, batch 2, best format); {_load()}")
    for device in _devices():
        a = conv_flops_per_s(device, 32, 256)
        b = conv_flops_per_s(device, 64, 128)
        print(f"  {device:4} 32ch@256px {a / 1e9:7.1f} GFLOP/s   64ch@128px {b / 1e9:7.1f} GFLOP/s")

    print(
        "\n[2] throughput: 512 x 512 raster (9 tiles of 256, overlap 0.25), plain vs optimised;"
        f" {_load()}"
    )
    models = _bench_models(args.models.split(",") if args.models else None, args.checkpoint)
    throughput_rows(models, args.repeats)

    print(f"\n[2b] shoreline on a noisy 512 x 512 probability map (the worst case); {_load()}")
    for r in shoreline_rows(args.repeats):
        print(
            f"  {r['segments']} segments -> {r['lines']} lines: marching squares "
            f"{r['march_s']:.3f} s, chaining in numpy {r['numpy_s']:.3f} s, by the Python walk "
            f"{r['walk_s']:.3f} s ({r['walk_s'] / r['numpy_s']:.1f}x)"
        )

    if not args.no_memory:
        print_memory()
    print(f"  (end: {_load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
