"""Candidate inference engines for the bundled small models: int8 and ONNX Runtime (issue 14).

``python -m benchmarks.bench_engines [--repeats 7] [--esw-scenes 6] [--json PATH]``; about
3 minutes on a 2-core CPU. Not part of ``make bench``: it measures engines the product does not
ship. Each bundled model (``default``, ``rgbn``, ``rgb``) runs on

- **torch**: the shipped path, ``TilePredictor`` defaults (BatchNorm folded, channels_last,
  batch 2);
- **int8**: static post-training quantisation, FX graph mode (``prepare_fx`` / ``convert_fx``,
  the "x86" backend's default qconfig: per-channel int8 weights, uint8 activations with
  histogram observers), calibrated on real tiles: the synthetic demo scene (seed 1) for the
  Sentinel-2 models, two ESW acquisitions that are not among the evaluated ones for ``rgb``.
  The spectral-index layer (and the anchor or residual index head around the net) stays
  float: ``WithSpectralIndices`` checks its input shape in Python, which FX cannot trace, and
  a ratio of two bands is not an int8 op anyway; the U-Net inside is quantised whole. Its
  input-size check is switched off while tracing (tiles are always padded to 256 px);
- **ort** / **ort spin**: ONNX Runtime (optional: the rows are skipped with a reason when
  ``onnxruntime`` is not importable), the BN-folded model exported with ``torch.onnx.export``
  (opset 17, dynamic batch), 2 intra-op threads, 1 inter-op thread, all graph optimisations,
  intra-op spinning off (``session.intra_op.allow_spinning = 0``) and on.

Figures:

- **speed**: the bare forward time per 256 px tile at batch 2 (8 tiles of the 512 px synthetic
  scene per run, divided by 8), engines interleaved in one process, best of ``repeats``;
  ratios are torch time / engine time (> 1: the engine is faster). Column "1 thr": the same
  ratio from CPU time (``time.process_time``) on one thread (torch and ORT), which other
  processes on a shared machine barely disturb; the verdict uses the 2-thread ratio;
- **accuracy**: max |p_engine - p_torch| and the mask pixels that flip at p = 0.5 on whole
  rasters through the streaming pipeline (``iter_probability_rows``: tiles, overlap 0.25,
  blending): the real L1C demo raster (``shared/data/demo``) and the synthetic scene (seed 0)
  for the Sentinel-2 models, ``--esw-scenes`` ESW RGB scenes for ``rgb``; where a truth mask
  exists (synthetic, ESW hand labels), the water IoU of both and its change in points;
- **index layer**: the time share of ``SpectralIndices`` (and of the whole wrapper: indices,
  concatenation, anchor or residual head) in the shipped forward, by timing the model, its
  index layer alone and its net alone on the same batch, interleaved.

The acceptance bar of issue 14: an engine ships only if it is at least 10 % faster on all
three models and accuracy-neutral: the same masks, or a water-IoU change of at most 0.1 point
where labels exist.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import importlib
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_RASTER = SHARED_DATA / "demo" / "s2_l1c_bracciano_2016-07-18.tif"
ESW_ROOT = SHARED_DATA / "esw-rgb"
TILE = 256
BATCH = 2
SPEED_BAR = 1.10  # at least 10 % faster
IOU_BAR_POINTS = 0.1
ESW_CALIBRATION = ("S2B_20190620_N0212_R053", "S2B_20191023_N0213_R121")  # never evaluated


def probability(logits):
    """Logits tensor (N, K, H, W) (or a tuple, head 0 first) -> water probability (N, H, W),
    as ``TilePredictor.predict_batch`` computes it."""
    import torch

    if isinstance(logits, tuple | list):
        logits = logits[0]
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.sigmoid(logits[:, 1] - logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


def _traceable_part(model):
    """(owner, attribute) of the module int8 quantises: ``model.net`` of a model with an index
    layer (the layer and the index head stay float), else the model itself (owner None)."""
    if hasattr(model, "spectral") and hasattr(model, "net"):
        return model, "net"
    return None, None


def quantize_int8(model, calibration: np.ndarray, backend: str = "x86", batch: int = BATCH):
    """Static int8 copy of ``model`` (FX graph mode), calibrated on ``calibration``.

    Args:
        model: an eval-mode zoo model (not BN-folded: ``prepare_fx`` fuses conv + BN + ReLU
            itself into one quantised ConvReLU).
        calibration: float32 (N, C, T, T) model-input tiles, fed through the observers in
            batches of ``batch``.
        backend: torch quantised engine and its default qconfig ("x86" or "fbgemm").

    Returns:
        An eval-mode module taking float tiles and returning float logits; for a model with an
        index layer, a copy whose ``net`` is the quantised graph (the index layer, the anchor
        or residual head stay float).
    """
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = backend
    model = copy.deepcopy(model).eval()
    owner, attr = _traceable_part(model)
    target = getattr(owner, attr) if owner is not None else model
    feed = owner.spectral if owner is not None else (lambda x: x)
    x0 = torch.from_numpy(np.ascontiguousarray(calibration[:batch]))
    with torch.inference_mode():
        example = feed(x0)
    # The zoo's forward() checks H and W in Python, which FX cannot trace: no check while
    # tracing (tiles are padded to the model's size multiple before they reach it).
    importlib.import_module("backend.models")
    patches = [
        mock.patch.object(module, "check_input_size", lambda *a, **k: None)
        for name, module in list(sys.modules.items())
        if name.startswith("backend.models.") and hasattr(module, "check_input_size")
    ]
    for p in patches:
        p.start()
    try:
        prepared = prepare_fx(target, get_default_qconfig_mapping(backend), (example,))
    finally:
        for p in patches:
            p.stop()
    with torch.inference_mode():
        for i in range(0, len(calibration), batch):
            prepared(feed(torch.from_numpy(np.ascontiguousarray(calibration[i : i + batch]))))
    quantised = convert_fx(prepared).eval()
    if owner is None:
        quantised.size_multiple = getattr(model, "size_multiple", 1)
        return quantised
    setattr(owner, attr, quantised)
    return owner


def ort_import_error() -> str | None:
    """None when onnxruntime (and onnx, which the exporter needs) import, else why not."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means: no ONNX rows
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    return None


def export_onnx(model, bands: int, tile: int = TILE) -> bytes:
    """The BN-folded eval model as ONNX bytes: opset 17, input "x" (N, bands, T, T) with a
    dynamic batch, output "logits" (head 0 only)."""
    import torch

    from backend.segment.inference import fuse_for_inference

    class Head0(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            return out[0] if isinstance(out, tuple | list) else out

    buf = io.BytesIO()
    torch.onnx.export(
        Head0(fuse_for_inference(model)), (torch.zeros(BATCH, bands, tile, tile),), buf,
        opset_version=17, input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    return buf.getvalue()


class OrtPredictor:
    """ONNX Runtime session as a tile predictor: float32 (N, C, T, T) -> probability (N, T, T),
    in batches of ``batch_size`` (the interface ``iter_probability_rows`` calls)."""

    def __init__(self, onnx_bytes: bytes, *, spinning: bool, threads: int = 2, batch_size=BATCH):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        self.batch_size = batch_size

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty((tiles.shape[0],) + tiles.shape[2:], np.float32)
        for i in range(0, tiles.shape[0], self.batch_size):
            x = np.ascontiguousarray(tiles[i : i + self.batch_size], dtype=np.float32)
            logits = self.session.run(None, {"x": x})[0]
            out[i : i + self.batch_size] = probability(torch.from_numpy(logits)).numpy()
        return out


def predict_raster(predictor: Callable, image: np.ndarray) -> np.ndarray:
    """Normalised float32 (C, H, W) -> blended water probability (H, W) through the streaming
    pipeline (tiles of 256, overlap 0.25), as ``segment`` computes it."""
    from backend.segment.pipeline import ArrayReader, iter_probability_rows

    out = np.empty(image.shape[1:], np.float32)
    for block in iter_probability_rows(
        ArrayReader(image), predictor, lambda raw: raw.astype(np.float32, copy=True), tile=TILE
    ):
        out[block.row0 : block.row0 + block.prob.shape[0]] = block.prob
    return out


def water_iou(mask: np.ndarray, truth: np.ndarray) -> float:
    """IoU of water (1) of a bool mask against a truth of 0/1 (other values ignored), 0..1.

    >>> water_iou(np.array([1, 1, 1, 1], bool), np.array([1, 1, 0, 0]))
    0.5
    """
    keep = (truth == 0) | (truth == 1)
    m, t = mask[keep], truth[keep] == 1
    union = np.logical_or(m, t).sum()
    return float(np.logical_and(m, t).sum() / union) if union else 1.0


def compare(ref: np.ndarray, prob: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """Reference and engine probabilities (same shape) -> max abs difference, mask pixels that
    flip at p = 0.5, pixels; with a truth: both water IoUs and the change in points."""
    ok = np.isfinite(ref) & np.isfinite(prob)
    out = {
        "max_abs": float(np.max(np.abs(ref[ok] - prob[ok]), initial=0.0)),
        "flips": int(np.count_nonzero((ref[ok] > 0.5) != (prob[ok] > 0.5))),
        "pixels": int(ok.sum()),
    }
    if truth is not None:
        a, b = water_iou(ref > 0.5, truth), water_iou(prob > 0.5, truth)
        out.update(iou_ref=a, iou=b, iou_change_points=100.0 * (b - a))
    return out


def time_engines(
    predictors: dict[str, Callable], tiles: np.ndarray, repeats: int, clock=time.perf_counter
) -> dict:
    """Best per-tile ``clock`` time (s) of each predictor on ``tiles``, runs interleaved (the
    order rotates every round, so no engine always follows the same one), after one warm-up
    each."""
    for p in predictors.values():
        p(tiles[:BATCH])
    names = list(predictors)
    best = dict.fromkeys(names, float("inf"))
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = clock()
            predictors[name](tiles)
            best[name] = min(best[name], (clock() - t0) / len(tiles))
    return best


def index_layer_share(model, tiles: np.ndarray, repeats: int) -> dict | None:
    """Time share of the index layer in the shipped forward (BN folded, channels_last), on one
    batch of ``BATCH`` tiles: the whole model, its ``spectral`` layer alone, its ``net`` alone
    on the layer's output, interleaved, best of ``repeats``. None without an index layer."""
    import torch

    from backend.segment.inference import TilePredictor

    if not hasattr(model, "spectral"):
        return None
    fast = TilePredictor(model).model
    cl = torch.channels_last
    x = torch.from_numpy(np.ascontiguousarray(tiles[:BATCH])).contiguous(memory_format=cl)
    with torch.inference_mode():
        z = fast.spectral(x).contiguous(memory_format=cl)
        parts = {"model": lambda: fast(x), "index layer": lambda: fast.spectral(x),
                 "net": lambda: fast.net(z)}  # fmt: skip
        best = dict.fromkeys(parts, float("inf"))
        for f in parts.values():
            f()
        for _ in range(repeats):
            for name, f in parts.items():
                t0 = time.perf_counter()
                f()
                best[name] = min(best[name], time.perf_counter() - t0)
    return {
        **{f"{k}_s": v for k, v in best.items()},
        "index_share": best["index layer"] / best["model"],
        "wrapper_share": max(0.0, best["model"] - best["net"]) / best["model"],
    }


def _read_demo(bands: list[str]) -> np.ndarray:
    """The real L1C demo raster's ``bands`` (by band description), raw DN (C, H, W)."""
    import rasterio

    with rasterio.open(DEMO_RASTER) as ds:
        desc = list(ds.descriptions)
        return np.stack([ds.read(desc.index(b) + 1) for b in bands])


def scenes_for(key: str, spec, esw_scenes: int) -> tuple[np.ndarray, list[tuple]]:
    """(calibration tiles float32 (N, C, 256, 256), [(scene name, normalised (C, H, W), truth
    (H, W) or None)]) for a bundled model."""
    from backend.segment.tiling import TileGrid

    def tiles_of(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[1:]
        grid = TileGrid(h, w, TILE, 0.25)
        return np.stack([image[:, y : y + TILE, x : x + TILE] for y in grid.ys for x in grid.xs])

    if spec.bands[:3] == ["red", "green", "blue"]:
        from backend.datasets.esw import group_by_acquisition, list_scenes, read_scene_arrays

        groups = group_by_acquisition(list_scenes(ESW_ROOT))
        calib = [tiles_of(spec.normalise(read_scene_arrays(ESW_ROOT, s)[0]))[::2]
                 for acq in ESW_CALIBRATION for s in groups[acq]]  # fmt: skip
        evaluate = []
        for acq in [a for a in groups if a not in ESW_CALIBRATION][:esw_scenes]:
            scene = groups[acq][0]
            rgb, truth, _ = read_scene_arrays(ESW_ROOT, scene)
            evaluate.append((f"esw {scene[:-3].split('_L2A_')[1][:8]}_{scene[-2:]}",
                             spec.normalise(rgb), truth))  # fmt: skip
        return np.concatenate(calib), evaluate

    from backend.datasets.synthetic import generate_scene

    n = len(spec.bands)  # the synthetic scene's bands are B2 B3 B4 B8 B11 B12
    calib = tiles_of(spec.normalise(generate_scene(512, seed=1).image[:n]))
    synth = generate_scene(512, seed=0)
    evaluate = [("synthetic 512", spec.normalise(synth.image[:n]), synth.truth)]
    if DEMO_RASTER.is_file():
        evaluate.insert(0, ("demo L1C raster", spec.normalise(_read_demo(spec.bands)), None))
    return calib, evaluate


def speed_tiles(bands: int, rgb: bool) -> np.ndarray:
    """8 model-input tiles (8, bands, 256, 256) of the 512 px synthetic scene (its first
    ``bands`` bands; for an RGB model its B4 B3 B2 as an 8-bit stretch)."""
    from backend.datasets.synthetic import generate_scene
    from backend.segment.tiling import TileGrid

    img = generate_scene(512, seed=0).image.astype(np.float32)
    if rgb:
        img = np.clip(img[[2, 1, 0]] / 3000.0, 0, 1) / 0.25 - 2.0  # (x/255 - 0.5) / 0.25
    else:
        img = img[:bands] * np.float32(1e-4)
    grid = TileGrid(512, 512, TILE, 0.25)
    tiles = [img[:, y : y + TILE, x : x + TILE] for y in grid.ys for x in grid.xs]
    return np.ascontiguousarray(np.stack(tiles[:8]), dtype=np.float32)


def bench_model(
    key: str, model, spec, repeats: int, esw_scenes: int, ort_error, threads: int = 2
) -> dict:
    """Every figure of one bundled model (see the module docstring)."""
    import torch

    from backend.segment.inference import TilePredictor

    calib, evaluate = scenes_for(key, spec, esw_scenes)
    bands = calib.shape[1]
    engines: dict[str, Callable] = {"torch": TilePredictor(model, "cpu", BATCH)}
    t0 = time.perf_counter()
    qmodel = quantize_int8(model, calib)
    quant_s = time.perf_counter() - t0
    engines["int8"] = TilePredictor(qmodel, "cpu", BATCH, fuse=False, channels_last=False)
    if ort_error is None:
        onnx_bytes = export_onnx(model, bands)
        engines["ort"] = OrtPredictor(onnx_bytes, spinning=False, threads=threads)
        engines["ort spin"] = OrtPredictor(onnx_bytes, spinning=True, threads=threads)
    tiles = speed_tiles(bands, spec.bands[:3] == ["red", "green", "blue"])
    speed = time_engines(engines, tiles, repeats)
    # One thread, CPU time: a second view that other processes barely disturb.
    one = {"torch": engines["torch"], "int8": engines["int8"]}
    if ort_error is None:
        one["ort"] = OrtPredictor(onnx_bytes, spinning=False, threads=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu1 = time_engines(one, tiles, repeats, clock=time.process_time)
    finally:
        torch.set_num_threads(before)
    accuracy: dict[str, dict] = {}
    for scene, image, truth in evaluate:
        ref = predict_raster(engines["torch"], image)
        accuracy[scene] = {}
        for name in [n for n in engines if n not in ("torch", "ort spin")]:
            accuracy[scene][name] = compare(ref, predict_raster(engines[name], image), truth)
    return {
        "model": key,
        "calibration_tiles": int(len(calib)),
        "int8_prepare_s": quant_s,
        "per_tile_s": speed,
        "speedup_vs_torch": {n: speed["torch"] / s for n, s in speed.items()},
        "cpu_1thread_per_tile_s": cpu1,
        "cpu_1thread_speedup_vs_torch": {n: cpu1["torch"] / s for n, s in cpu1.items()},
        "accuracy": accuracy,
        "index_layer": index_layer_share(model, tiles, max(repeats, 5)),
    }


def verdict(rows: list[dict]) -> dict[str, str]:
    """Per engine: "ship" when >= 10 % faster and accuracy-neutral on every model, else why
    not (the first failing model and figure)."""
    out = {}
    for engine in ("int8", "ort", "ort spin"):
        reasons = []
        for r in rows:
            if engine not in r["speedup_vs_torch"]:
                continue
            s = r["speedup_vs_torch"][engine]
            if s < SPEED_BAR:
                reasons.append(f"{r['model']}: {s:.2f}x, below {SPEED_BAR:.2f}x")
            acc_name = "ort" if engine == "ort spin" else engine
            for scene, acc in r["accuracy"].items():
                a = acc[acc_name]
                if a["flips"] and abs(a.get("iou_change_points", float("inf"))) > IOU_BAR_POINTS:
                    reasons.append(f"{r['model']} {scene}: {a['flips']} mask pixels flip")
        if any(engine in r["speedup_vs_torch"] for r in rows):
            out[engine] = "ship" if not reasons else "not shipped: " + "; ".join(reasons[:3])
    return out


def machine_line() -> str:
    """CPU model, usable CPUs and vector flags, as ``make bench`` prints them."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPUs usable, flags {' '.join(f for f in wanted if f in flags)}"


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def worst_accuracy(accuracy: dict, engine: str) -> dict | None:
    """Over a model's scenes: the largest max |dp|, all flips and pixels, the largest |IoU
    change| (points; None without labels). None if ``engine`` has no accuracy figures."""
    rows = [acc[engine] for acc in accuracy.values() if engine in acc]
    if not rows:
        return None
    ious = [a["iou_change_points"] for a in rows if "iou_change_points" in a]
    return {
        "max_abs": max(a["max_abs"] for a in rows),
        "flips": sum(a["flips"] for a in rows),
        "pixels": sum(a["pixels"] for a in rows),
        "iou_change_points": max(ious, key=abs) if ious else None,
    }


def print_table(result: dict) -> None:
    """The one table (a row per model and engine; accuracy over all of the model's scenes),
    the index layer's share, then the verdicts."""
    print(f"machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads")
    if result["ort_skipped"]:
        print(f"ONNX Runtime rows skipped: {result['ort_skipped']}")
    print(
        f"\n{'model':8} {'engine':9} {'ms/tile':>8} {'vs torch':>9} {'1 thr':>6} {'max|dp|':>9} "
        f"{'flips':>7} {'of pixels':>10} {'IoU pts':>8}"
    )
    for r in result["models"]:
        for engine, s in r["per_tile_s"].items():
            one = r["cpu_1thread_speedup_vs_torch"].get(engine)
            one_s = f"{one:5.2f}x" if one is not None else f"{'-':>6}"
            line = (
                f"{r['model']:8} {engine:9} {s * 1e3:8.2f} "
                f"{r['speedup_vs_torch'][engine]:8.2f}x {one_s}"
            )
            w = worst_accuracy(r["accuracy"], "ort" if engine == "ort spin" else engine)
            if w is not None and engine != "ort spin":
                iou = w["iou_change_points"]
                iou_s = f"{iou:+8.3f}" if iou is not None else f"{'-':>8}"
                line += f" {w['max_abs']:9.2e} {w['flips']:7d} {w['pixels']:10d} {iou_s}"
            print(line)
        ix = r["index_layer"]
        if ix:
            print(
                f"{'':8} index layer {100 * ix['index_share']:.1f} % of the torch forward "
                f"(the whole wrapper: {100 * ix['wrapper_share']:.1f} %)"
            )
    print("\nverdict (ship only if >= 10 % faster and accuracy-neutral on all three models):")
    for engine, v in result["verdict"].items():
        print(f"  {engine:9} {v}")


def main(argv: list[str] | None = None) -> int:
    import torch

    from backend.core.contract import bundled_models
    from backend.core.paths import MODELS_DIR
    from backend.models.loading import load_model

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_engines")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing runs (7)")
    p.add_argument("--esw-scenes", type=int, default=6, help="ESW scenes for the rgb model (6)")
    p.add_argument("--models", help="comma-separated subset of default, rgbn, rgb")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads, torch and ORT (2)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args(argv or [])

    torch.set_num_threads(args.threads)
    ort_error = ort_import_error()
    rows = []
    for entry in bundled_models():
        path = MODELS_DIR / entry.file
        if args.models and entry.key not in args.models.split(","):
            continue
        if not path.is_file():
            print(f"({entry.key}: {path} missing, skipped)")
            continue
        model, spec, _ = load_model(path)
        rows.append(
            bench_model(
                entry.key, model, spec, args.repeats, args.esw_scenes, ort_error, args.threads
            )
        )
    result = {
        "date": _dt.date.today().isoformat(),
        "commit": _commit(),
        "machine": machine_line(),
        "torch": torch.__version__,
        "onnxruntime": None if ort_error else importlib.import_module("onnxruntime").__version__,
        "threads": torch.get_num_threads(),
        "ort_skipped": ort_error,
        "command": "python -m benchmarks.bench_engines " + " ".join(argv or []),
        "models": rows,
        "verdict": verdict(rows),
    }
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
