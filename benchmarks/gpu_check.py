"""One GPU check: the CUDA code paths end to end, timed, in one run that fits 10 minutes.

``benchmarks/gpu_check.sh [--dry-run] [--out DIR] [--work DIR]``, or
``python -m benchmarks.gpu_check ...`` (docs/gpu-check.md). Nothing is downloaded.

Steps, in order; each is timed and guarded (a failing step records its one-line error and the
run goes on):

1. ``environment``: torch, CUDA, the device, bf16, nvidia-smi. Without CUDA (and without
   ``--dry-run``) it says what is missing and the run stops with exit code 2.
2. ``cuda_tests``: ``pytest -q -rs -k cuda tests/backend`` (the suite marks no CUDA tests; a
   CUDA test skips itself with ``skipif(not torch.cuda.is_available())`` and has "cuda" in its
   name). Skipped in the dry run.
3. ``scene``: one real 6-band GeoTIFF tile (B2 B3 B4 B8 B11 B12, uint16, EPSG:32633, 10 m, a
   few water discs) and a VRT that mosaics it N x N times, each copy at its own offset
   (2000 px, 5 x 5 = 100 MP; dry run 256 px, 2 x 2), so 100 MP cost 48 MB of disk.
   ``segment_default`` and ``segment_munet_half``: the real CLI, ``python -m backend segment
   SCENE.vrt --method model --device cuda --shoreline none``, with the bundled default model
   and with an untrained MU-Net half checkpoint; wall seconds, the engine's own seconds
   (its ``done`` event: read + infer + write, without interpreter start and model load) and
   seconds per 100 MP. ``--progress json`` instead of ``none`` only to read those events.
4. ``train_data``: a synthetic SNOWED folder; ``train``: ``python -m backend train --model
   munet --width half`` for about 50 optimiser steps (AMP on, the CUDA default); ``train_ddp``:
   the same under DistributedDataParallel with NCCL (gloo in the dry run). The CLI wraps the
   model in DDP only when WORLD_SIZE > 1 (``--nproc 1`` trains without it), and one GPU cannot
   hold two NCCL ranks (``setup_distributed`` puts rank r on cuda:r), so with one GPU the
   check runs ONE process that joins a 1-member process group first and then runs the CLI's
   ``main`` as rank 0 of WORLD_SIZE 2 (:func:`ddp_rank0_main`): DDP wrapping, the NCCL
   all-reduce, broadcast and barrier all run; each epoch covers half the training samples, so
   it runs twice the epochs for the same number of steps. With 2+ GPUs it uses
   ``--nproc 2``. Seconds and steps/s (steps over the summed epoch seconds of log.csv).
5. One summary table on stdout, the same as JSON in ``--out``/gpu_check.json (rewritten after
   every step, so a killed run leaves what it measured), and the goal line.

Exit code: 0 if every step passed (or was skipped by the dry run), 1 if one failed, 2 without
CUDA. Every subprocess runs in its own process group under a timeout taken from one budget for
the whole run (8 min 20 s; dry run 5 min). Every subprocess's output is in
``--out``/gpu_check.log.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "out" / "gpu_check"
GOAL_LINE = (
    "anchor: 100 MP in 2.9 s (OmniCloudMask, RTX 4090, fp16); "
    "goal on one H200: <= 3 s per 100 MP for a half-width model"
)
GOAL_S_PER_100MP = 3.0
CUDA_INDEX = "https://download.pytorch.org/whl/cu126"

SCENE_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
SCENE_EPSG = 32633
PIXEL_M = 10.0
SCENE_ORIGIN = (300000.0, 5000000.0)  # UTM 33N, upper-left corner
# Sentinel-2 L2A reflectance x 10000: water dark in B8/B11/B12, land bright there.
LAND = {"B1": 800, "B2": 700, "B3": 900, "B4": 1000, "B5": 1400, "B6": 2400, "B7": 2800,
        "B8": 3000, "B8A": 3100, "B9": 900, "B11": 2500, "B12": 1800}  # fmt: skip
WATER = {"B1": 1000, "B2": 900, "B3": 800, "B4": 500, "B5": 400, "B6": 300, "B7": 300,
         "B8": 300, "B8A": 250, "B9": 100, "B11": 150, "B12": 100}  # fmt: skip
SNOWED_BANDS = list(LAND)  # the 12 bands of sample_2A.npy, in file order
# Water discs of the scene tile: (centre row, centre col, radius) as fractions of the tile.
DISCS = [(0.30, 0.30, 0.15), (0.70, 0.62, 0.20), (0.22, 0.78, 0.08), (0.82, 0.18, 0.05)]

STEP_TITLES = {
    "environment": "1 environment",
    "cuda_tests": "2 CUDA tests (pytest -k cuda)",
    "scene": "3 scene (tile + N x N VRT)",
    "segment_default": "3a segment, bundled default model",
    "segment_munet_half": "3b segment, MU-Net half (untrained)",
    "train_data": "4 synthetic SNOWED folder",
    "train": "4a train MU-Net half",
    "train_ddp": "4b train MU-Net half, DDP",
}


@dataclass(frozen=True)
class Sizes:
    """Sizes and time limits of one mode."""

    tile: int  # scene tile side, pixels
    mosaic: int  # the VRT holds mosaic x mosaic copies of the tile
    n_train: int  # synthetic SNOWED training samples
    n_val: int
    batch: int
    epochs: int  # of the single-process run; DDP (rank 0 of 2) runs twice as many
    crop: int | None  # training crop (None: the full 256 px)
    budget_s: float  # the whole run
    cap_s: float  # one subprocess at most


REAL = Sizes(tile=2000, mosaic=5, n_train=100, n_val=10, batch=10, epochs=5, crop=None,
             budget_s=500, cap_s=160)  # fmt: skip
DRY = Sizes(tile=256, mosaic=2, n_train=4, n_val=1, batch=2, epochs=1, crop=128,
            budget_s=300, cap_s=150)  # fmt: skip


class StepError(Exception):
    """A step failed; the message is its one-line error."""


@dataclass
class Step:
    name: str
    title: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    figure: str = ""
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Check:
    """The run: its steps, its time budget, its outputs."""

    def __init__(self, out: Path, work: Path, sizes: Sizes, dry_run: bool):
        self.out, self.work, self.sizes, self.dry_run = out, work, sizes, dry_run
        self.t0 = time.monotonic()
        self.steps = {name: Step(name, title) for name, title in STEP_TITLES.items()}
        self.environment: dict[str, Any] = {}
        self.log = out / "gpu_check.log"  # one file: every subprocess's output, tracebacks
        self.log.write_text("")
        self.python = sys.executable

    # ---- time budget

    def timeout(self) -> float:
        left = self.sizes.budget_s - (time.monotonic() - self.t0)
        if left < 5:
            raise StepError(f"no time left of the {self.sizes.budget_s:.0f} s budget")
        return min(self.sizes.cap_s, left)

    # ---- steps

    def run(self, name: str, fn: Callable[[Step], str]) -> Step:
        step = self.steps[name]
        t0 = time.perf_counter()
        try:
            step.figure = fn(step) or ""
            step.status = "ok"
        except Exception as exc:  # a guard: the run goes on
            step.status = "failed"
            step.error = one_line(
                str(exc) if isinstance(exc, StepError) else f"{type(exc).__name__}: {exc}"
            )
            if isinstance(exc, ModuleNotFoundError):
                step.error += " (carry it as a wheel: docs/gpu-check.md)"
            if not isinstance(exc, StepError):
                self.append_log(f"=== {name}: traceback\n{traceback.format_exc()}")
        step.seconds = time.perf_counter() - t0
        shown = step.error if step.status == "failed" else step.figure
        print(
            f"[gpu_check] {step.title}: {step.status} ({step.seconds:.1f} s) {shown}",
            file=sys.stderr,
            flush=True,
        )
        self.write_json()
        return step

    def skip(self, name: str, why: str) -> None:
        step = self.steps[name]
        step.status, step.figure = "skipped", why

    def needs(self, *names: str) -> None:
        """Fail (not skip) a step whose inputs come from a step that did not succeed."""
        bad = [n for n in names if self.steps[n].status != "ok"]
        if bad:
            raise StepError(f"not run: step {bad[0]} did not succeed")

    # ---- subprocesses

    def append_log(self, text: str) -> None:
        with self.log.open("a") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")

    def call(
        self, name: str, cmd: list[str], env: dict[str, str] | None = None, ok_codes=(0,)
    ) -> subprocess.CompletedProcess:
        """Run ``cmd`` from the repository root in its own process group under the budget's
        timeout; its output goes to gpu_check.log. Raises StepError on timeout or a bad exit
        code, naming the last line of its error output."""
        timeout = self.timeout()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # torchrun, DataLoader workers: killed with it
        )
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        wall = time.perf_counter() - t0
        self.append_log(
            f"=== {name}: $ {' '.join(cmd)}\n# exit {proc.returncode}, {wall:.1f} s\n"
            f"--- stdout\n{stdout}\n--- stderr\n{stderr}"
        )
        if timed_out:
            raise StepError(f"timed out after {timeout:.0f} s (log: {self.log})")
        if proc.returncode not in ok_codes:
            lines = [ln for ln in (stderr or stdout or "").splitlines() if ln.strip()]
            last = lines[-1] if lines else "(no output)"
            raise StepError(f"exit {proc.returncode}: {last} (log: {self.log})")
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)

    # ---- results

    def result(self) -> dict[str, Any]:
        return {
            "mode": "dry-run" if self.dry_run else "gpu",
            "goal": GOAL_LINE,
            "goal_s_per_100mp": GOAL_S_PER_100MP,
            "sizes": asdict(self.sizes),
            "total_s": round(time.monotonic() - self.t0, 2),
            "environment": self.environment,
            "steps": [{**asdict(s), "seconds": round(s.seconds, 2)} for s in self.steps.values()],
            "passed": self.passed(),
        }

    def passed(self) -> bool:
        return all(s.status in ("ok", "skipped") for s in self.steps.values())

    def write_json(self) -> Path:
        path = self.out / "gpu_check.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.result(), indent=2, default=str) + "\n")
        tmp.replace(path)
        return path

    def table(self) -> str:
        rows = [("step", "status", "seconds", "figure")]
        for s in self.steps.values():
            shown = s.error if s.status == "failed" else s.figure
            rows.append((s.title, s.status, f"{s.seconds:.1f}", shown or ""))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = []
        for i, r in enumerate(rows):
            lines.append(
                f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
            )
            if i == 0:
                lines.append("-" * (sum(widths) + 4 + max(len(r[3]) for r in rows) + 2))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- 1 environment


def environment() -> dict[str, Any]:
    """What this interpreter's torch can do, and whether an NVIDIA driver is installed."""
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": bool(torch.cuda.is_available()),
        "device_count": 0,
        "device_name": None,
        "bf16": None,
        "cudnn": None,
        "nvidia_smi": shutil.which("nvidia-smi"),
        "nvidia_smi_query": None,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu_count": os.cpu_count(),
        "dev_shm_free_gb": None,
        "modules": module_versions(),
    }
    with contextlib.suppress(OSError):
        info["dev_shm_free_gb"] = round(shutil.disk_usage("/dev/shm").free / 1e9, 2)
    if info["cuda_available"]:
        info["device_count"] = torch.cuda.device_count()
        info["device_name"] = torch.cuda.get_device_name(0)
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
        info["cudnn"] = torch.backends.cudnn.version()
    if info["nvidia_smi"]:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            q = subprocess.run(
                [info["nvidia_smi"], "--query-gpu=name,driver_version,memory.total",
                 "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            info["nvidia_smi_query"] = one_line(q.stdout or q.stderr)
    return info


def module_versions() -> dict[str, str | None]:
    """The versions of what segment and train import besides torch (None: not installed)."""
    import importlib

    found: dict[str, str | None] = {}
    for name in ("numpy", "rasterio", "affine", "tqdm", "pytest"):
        try:
            found[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception:
            found[name] = None
    if found["rasterio"]:
        import rasterio

        found["gdal"] = rasterio.__gdal_version__
    return found


def missing_cuda(info: dict[str, Any]) -> str:
    """The one line that says why torch sees no GPU and what to do (nothing is downloaded)."""
    version = info["torch"]
    base = version.split("+")[0]
    if not info.get("torch_cuda"):
        return (
            f"torch {version} is a CPU-only build (torch.version.cuda is None): install the "
            f"CUDA wheel of the same version, e.g. pip install torch=={base} --index-url "
            f"{CUDA_INDEX}, on a machine with internet, then carry the venv"
        )
    hidden = info.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and hidden.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU from torch {version}: unset it"
    if not info.get("nvidia_smi"):
        return (
            f"no NVIDIA driver: nvidia-smi is not on PATH and torch {version} (CUDA "
            f"{info['torch_cuda']}) sees no GPU; run on a machine with an NVIDIA GPU and driver"
        )
    return (
        f"torch {version} (CUDA {info['torch_cuda']}) sees no GPU although nvidia-smi is "
        f"present ({info.get('nvidia_smi_query') or 'no answer'}): the driver may be older than "
        f"CUDA {info['torch_cuda']} needs (compare nvidia-smi's 'CUDA Version'), or pick the "
        f"wheel of the driver's CUDA from https://download.pytorch.org/whl/"
    )


# ----------------------------------------------------------------------------- 2 CUDA tests


def pytest_summary(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line, e.g. '1 passed, 2 skipped in 3.1s'."""
    counts: dict[str, int] = {}
    for line in reversed(text.splitlines()):
        if " in " in line and any(w in line for w in ("passed", "failed", "skipped", "error")):
            for part in line.replace("=", " ").split(" in ")[0].split(","):
                words = part.split()
                if len(words) >= 2 and words[-2].isdigit():
                    counts[words[-1].rstrip("s") if words[-1] == "errors" else words[-1]] = int(
                        words[-2]
                    )
            break
    return counts


CUDA_TEST_RE = re.compile(r"^\s*def (test\w*cuda\w*)\s*\(", re.IGNORECASE | re.MULTILINE)


def cuda_test_files(root: Path = REPO_ROOT / "tests") -> dict[str, list[str]]:
    """Test files holding a test with "cuda" in its name -> those names (relative paths).

    The suite has no ``cuda`` marker: its CUDA tests are named ``test_cuda_*`` and skip
    themselves without CUDA. Only these files are collected, so that test modules importing
    what a bare GPU machine lacks (GDAL's osgeo, shapely, QGIS) do not stop the collection.
    """
    found = {}
    for path in sorted(root.rglob("test_*.py")):
        if path.name == "test_gpu_check.py":  # the tests of this check, not CUDA tests
            continue
        names = CUDA_TEST_RE.findall(path.read_text(errors="replace"))
        if names:
            found[str(path.relative_to(REPO_ROOT))] = names
    return found


def cuda_tests(check: Check, step: Step) -> str:
    files = cuda_test_files()
    if not files:
        raise StepError("no test named *cuda* under tests/")
    step.metrics["tests"] = files
    # the CUDA tests need neither QGIS nor Qt, which a bare GPU machine lacks: their pytest
    # plugins stay out (a plugin that is not installed is blocked harmlessly)
    cmd = [check.python, "-m", "pytest", "-q", "-rs", "-p", "no:pytest_qgis", "-p",
           "no:pytest-qt", "-k", "cuda", *files]  # fmt: skip
    run = check.call("cuda_tests", cmd, env={"QT_QPA_PLATFORM": "offscreen"}, ok_codes=(0, 1, 5))
    counts = pytest_summary(run.stdout)
    step.metrics.update(counts=counts, command=" ".join(cmd[1:]))
    skips = [ln for ln in run.stdout.splitlines() if ln.startswith("SKIPPED")]
    if skips:
        step.metrics["skips"] = skips
    figure = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no summary line"
    if run.returncode == 5:
        raise StepError(f"no test matched -k cuda in {' '.join(files)}")
    if run.returncode != 0 or counts.get("failed") or counts.get("error"):
        failed = [ln for ln in run.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        raise StepError(
            f"{figure}: {failed[0] if failed else 'pytest exit ' + str(run.returncode)}"
        )
    if counts.get("skipped"):
        raise StepError(f"{figure}: a CUDA test skipped on a CUDA machine: {skips[:1]}")
    if not counts.get("passed"):
        raise StepError(f"no CUDA test passed ({figure})")
    return figure


# ----------------------------------------------------------------------------- 3 segmentation


def disc_mask(size: int, discs=DISCS) -> Any:
    import numpy as np

    yy, xx = np.ogrid[:size, :size]
    water = np.zeros((size, size), bool)
    for cy, cx, r in discs:
        water |= (yy - cy * size) ** 2 + (xx - cx * size) ** 2 < (r * size) ** 2
    return water


def band_values(water: Any, bands: list[str], rng: Any, noise: int = 40) -> Any:
    """(bands, H, W) uint16 reflectance x 10000 from a boolean water mask, with noise."""
    import numpy as np

    out = np.empty((len(bands), *water.shape), np.uint16)
    for i, b in enumerate(bands):
        v = np.where(water, WATER[b], LAND[b]).astype(np.int32)
        v += rng.integers(-noise, noise + 1, size=water.shape, dtype=np.int32)
        out[i] = np.clip(v, 1, 10000)
    return out


def write_tile(path: Path, size: int) -> dict[str, Any]:
    """One 6-band uint16 GeoTIFF tile, EPSG:32633, 10 m, water discs; -> its facts."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    water = disc_mask(size)
    data = band_values(water, SCENE_BANDS, np.random.default_rng(0))
    transform = Affine(PIXEL_M, 0.0, SCENE_ORIGIN[0], 0.0, -PIXEL_M, SCENE_ORIGIN[1])
    profile = dict(
        driver="GTiff", width=size, height=size, count=len(SCENE_BANDS), dtype="uint16",
        crs=CRS.from_epsg(SCENE_EPSG), transform=transform, tiled=True, blockxsize=256,
        blockysize=256, interleave="pixel",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, b in enumerate(SCENE_BANDS, start=1):
            ds.set_band_description(i, b)
    return {"water_fraction": float(water.mean())}


def mosaic_vrt(vrt: Path, tile: Path, size: int, n: int) -> None:
    """A VRT of n x n copies of ``tile`` (size x size px), copy (row i, col j) at pixel offset
    (i * size, j * size) of the tile's own grid; band descriptions kept."""
    from rasterio.crs import CRS

    wkt = CRS.from_epsg(SCENE_EPSG).to_wkt()
    x0, y0 = SCENE_ORIGIN
    parts = [
        f'<VRTDataset rasterXSize="{n * size}" rasterYSize="{n * size}">',
        f'  <SRS dataAxisToSRSAxisMapping="1,2">{escape(wkt)}</SRS>',
        f"  <GeoTransform>{x0!r}, {PIXEL_M!r}, 0.0, {y0!r}, 0.0, {-PIXEL_M!r}</GeoTransform>",
    ]
    for b, name in enumerate(SCENE_BANDS, start=1):
        parts.append(f'  <VRTRasterBand dataType="UInt16" band="{b}">')
        parts.append(f"    <Description>{escape(name)}</Description>")
        for i in range(n):
            for j in range(n):
                parts += [
                    "    <SimpleSource>",
                    f'      <SourceFilename relativeToVRT="1">{escape(tile.name)}</SourceFilename>',
                    f"      <SourceBand>{b}</SourceBand>",
                    f'      <SourceProperties RasterXSize="{size}" RasterYSize="{size}" '
                    'DataType="UInt16" BlockXSize="256" BlockYSize="256"/>',
                    f'      <SrcRect xOff="0" yOff="0" xSize="{size}" ySize="{size}"/>',
                    f'      <DstRect xOff="{j * size}" yOff="{i * size}" xSize="{size}" '
                    f'ySize="{size}"/>',
                    "    </SimpleSource>",
                ]
        parts.append("  </VRTRasterBand>")
    parts.append("</VRTDataset>")
    vrt.write_text("\n".join(parts) + "\n")


def scene(check: Check, step: Step) -> str:
    size, n = check.sizes.tile, check.sizes.mosaic
    folder = check.work / "scene"
    folder.mkdir(parents=True, exist_ok=True)
    tile, vrt = folder / "tile.tif", folder / "scene.vrt"
    facts = write_tile(tile, size)
    mosaic_vrt(vrt, tile, size, n)
    mp = (n * size) ** 2 / 1e6
    step.metrics.update(
        vrt=str(vrt), tile=str(tile), tile_px=size, mosaic=n, width=n * size, height=n * size,
        megapixels=mp, tile_mb=round(tile.stat().st_size / 1e6, 1),
        water_fraction_true=round(facts["water_fraction"], 4), epsg=SCENE_EPSG,
    )  # fmt: skip
    return f"{n} x {n} copies of {size} px = {mp:.3g} MP from a {step.metrics['tile_mb']} MB tile"


def untrained_munet_half(path: Path) -> Path:
    """An untrained MU-Net half checkpoint for the 6 scene bands, via the project's API."""
    import torch

    from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
    from backend.models import create_model

    torch.manual_seed(0)
    kwargs = {"width": "half", "in_channels": len(SCENE_BANDS)}
    model = create_model("munet", **kwargs)
    spec = InputSpec(bands=list(SCENE_BANDS), tile_size=256)
    save_checkpoint(build_checkpoint(model, "munet", kwargs, spec), path)
    return path


def json_events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "event" in obj:
                events.append(obj)
    return events


def segment(check: Check, step: Step, label: str, model_args: list[str]) -> str:
    check.needs("scene")
    sc = check.steps["scene"].metrics
    device = "cpu" if check.dry_run else "cuda"
    out_dir = check.work / "segment" / label
    cmd = [
        check.python, "-m", "backend", "segment", sc["vrt"], "--out-dir", str(out_dir),
        "--method", "model", *model_args, "--device", device, "--progress", "json",
        "--shoreline", "none", "--overwrite",
    ]  # fmt: skip
    t0 = time.perf_counter()
    run = check.call(step.name, cmd)
    wall = time.perf_counter() - t0
    events = json_events(run.stdout)
    done = next((e for e in reversed(events) if e["event"] == "done"), None)
    if done is None:
        raise StepError(f"no 'done' event in the segment output (log: {check.log})")
    infer = [e for e in events if e["event"] == "progress" and e.get("stage") == "infer"]
    start = next((e for e in events if e["event"] == "start"), {})
    engine = float(done["elapsed_s"])
    mp = sc["megapixels"]
    per_100 = engine * 100.0 / mp
    logs = [ln for ln in run.stderr.splitlines() if ln.startswith("waterseg: ")]
    step.metrics.update(
        command=" ".join(cmd[1:]),
        device=start.get("device"),
        device_line=next((ln for ln in logs if ln.startswith("waterseg: device:")), None),
        model_line=next((ln for ln in logs if ln.startswith("waterseg: model:")), None),
        tiles=start.get("tiles"),
        megapixels=mp,
        wall_s=round(wall, 3),
        engine_s=engine,
        infer_s=infer[-1]["elapsed_s"] if infer else None,
        tiles_per_s=infer[-1].get("tiles_per_s") if infer else None,
        s_per_100mp=round(per_100, 3),
        s_per_100mp_wall=round(wall * 100.0 / mp, 3),
        water_fraction=done.get("water_fraction"),
        mask=done.get("outputs", {}).get("mask"),
    )
    if start.get("device") != device and not str(start.get("device", "")).startswith(device):
        raise StepError(f"ran on {start.get('device')!r}, not {device!r}")
    figure = f"{per_100:.2f} s per 100 MP (engine {engine:.1f} s, wall {wall:.1f} s"
    figure += f", {done.get('water_fraction', 0):.1%} water)"
    return figure


# ----------------------------------------------------------------------------- 4 training


def write_snowed(root: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` synthetic SNOWED samples (<root>/<id>/sample_2A.npy + label.npy) -> the ids."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = []
    for k in range(n):
        discs = [
            (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.08, 0.3))
            for _ in range(int(rng.integers(1, 4)))
        ]
        water = disc_mask(256, discs)
        image = band_values(water, SNOWED_BANDS, rng).transpose(1, 2, 0)  # (256, 256, 12)
        sample = root / f"sample_{k:04d}"
        sample.mkdir(parents=True, exist_ok=True)
        np.save(sample / "sample_2A.npy", np.ascontiguousarray(image))
        np.save(sample / "label.npy", water.astype(np.uint8))
        ids.append(sample.name)
    return ids


def train_data(check: Check, step: Step) -> str:
    s = check.sizes
    root = check.work / "snowed"
    ids = write_snowed(root, s.n_train + s.n_val)
    split = {"seed": 0, "train": ids[: s.n_train], "val": ids[s.n_train :], "test": []}
    split_file = check.work / "split.json"
    split_file.write_text(json.dumps(split, indent=1))
    step.metrics.update(root=str(root), split=str(split_file), train=s.n_train, val=s.n_val)
    return f"{s.n_train} train + {s.n_val} val samples of 256 x 256 x 12"


def steps_per_epoch(n_train: int, batch: int, world: int) -> int:
    """Optimiser steps of one epoch per rank, as backend.learning.train's DataLoader makes them
    (DistributedSampler pads to ceil(n / world); a last batch of one sample is dropped)."""
    per_rank = math.ceil(n_train / world)
    drop_last = per_rank > batch and per_rank % batch == 1
    return per_rank // batch if drop_last else math.ceil(per_rank / batch)


def read_log(path: Path) -> list[float]:
    with path.open(newline="") as fh:
        return [float(row["seconds"]) for row in csv.DictReader(fh)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ddp_rank0_main(backend: str, argv: list[str]) -> int:
    """Run ``python -m backend train ARGV`` as rank 0 of WORLD_SIZE 2 in a 1-member
    ``backend`` (nccl or gloo) process group, in this one process.

    backend.learning.train wraps the model in DistributedDataParallel only when WORLD_SIZE > 1 and
    joins the process group only when none is initialised, so joining a 1-member group first
    runs all its DDP code (wrapping, all-reduce, broadcast, barrier, destroy) on one GPU; the
    DistributedSampler then gives this rank half of the training samples per epoch.
    """
    from backend.core.runtime import prepare

    prepare(["train", *argv])  # what ``python -m backend`` does before torch loads
    import torch
    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
        WORLD_SIZE="1",
    )  # fmt: skip
    if backend == "nccl":
        torch.cuda.set_device(0)
    dist.init_process_group(backend, rank=0, world_size=1)
    os.environ["WORLD_SIZE"] = "2"
    print(f"gpu_check: 1-member {backend} process group, rank 0 of WORLD_SIZE 2", flush=True)
    from backend.cli import main as backend_main

    return backend_main(["train", *argv])


def train(check: Check, step: Step, ddp: bool) -> str:
    check.needs("train_data")
    s = check.sizes
    data = check.steps["train_data"].metrics
    device = "cpu" if check.dry_run else "cuda"
    out = check.work / ("train_ddp" if ddp else "train")
    if out.exists():
        shutil.rmtree(out)
    epochs = s.epochs * 2 if ddp else s.epochs  # a DDP rank sees half the samples per epoch
    args = [
        "--data", data["root"], "--model", "munet", "--width", "half", "--epochs", str(epochs),
        "--batch-size", str(s.batch), "--out", str(out), "--device", device, "--split-file",
        data["split"], "--seed", "0",
    ]  # fmt: skip
    if s.crop:
        args += ["--crop", str(s.crop)]
    shm = check.environment.get("dev_shm_free_gb")
    note = ""
    if not check.dry_run and shm is not None and shm < 1.0:
        # DataLoader workers hand batches over in /dev/shm; a small one kills them (bus error)
        args += ["--workers", "0"]
        note = f", --workers 0 (/dev/shm has {shm} GB free)"
    world = 1
    how = "single process"
    if ddp:
        world = 2
        gpus = int(check.environment.get("device_count") or 0)
        if not check.dry_run and gpus >= 2:
            cmd = [check.python, "-m", "backend", "train", *args, "--nproc", "2"]
            how = "torchrun --nproc 2, NCCL"
        else:
            pg = "gloo" if check.dry_run else "nccl"
            shim = (
                "import sys; from benchmarks.gpu_check import ddp_rank0_main; "
                "sys.exit(ddp_rank0_main(sys.argv[1], sys.argv[2:]))"
            )
            cmd = [check.python, "-c", shim, pg, *args]
            how = f"1 process, 1-member {pg} group, rank 0 of 2"
    else:
        cmd = [check.python, "-m", "backend", "train", *args]
    how += note
    t0 = time.perf_counter()
    run = check.call(step.name, cmd, env={"NCCL_DEBUG": "WARN"} if ddp else None)
    wall = time.perf_counter() - t0
    epoch_s = read_log(out / "log.csv")
    if len(epoch_s) != epochs:
        raise StepError(f"log.csv has {len(epoch_s)} epochs, expected {epochs}")
    per_epoch = steps_per_epoch(s.n_train, s.batch, world)
    steps = per_epoch * epochs
    device_line = next((ln for ln in run.stdout.splitlines() if ln.startswith("device:")), "")
    if ddp and "DistributedDataParallel" not in device_line:
        raise StepError(f"DDP not engaged: {device_line or 'no device line'}")
    if not check.dry_run and "cuda" not in device_line:
        raise StepError(f"not on CUDA: {device_line or 'no device line'}")
    steady = (
        (steps - per_epoch) / sum(epoch_s[1:]) if len(epoch_s) > 1 and sum(epoch_s[1:]) else None
    )
    step.metrics.update(
        command=" ".join(cmd[1:]),
        how=how,
        device_line=device_line,
        epochs=epochs,
        steps=steps,
        batch=s.batch,
        crop=s.crop or 256,
        wall_s=round(wall, 3),
        epoch_s=epoch_s,
        steps_per_s=round(steps / sum(epoch_s), 3),
        steady_steps_per_s=round(steady, 3) if steady else None,
        samples_per_s=round(steps * s.batch / sum(epoch_s), 2),
    )
    figure = f"{steps} steps, {step.metrics['steps_per_s']:g} steps/s"
    if steady:
        figure += f" ({steady:.2f} after epoch 1)"
    return figure + f", wall {wall:.0f} s; {how}"


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/gpu_check.sh",
        description="Run the CUDA code paths end to end (tests, segmentation, training, DDP) "
        "and time them; summary table on stdout, JSON in --out.",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="on the CPU with small sizes (skips the CUDA tests): checks the check itself",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
    )
    p.add_argument(
        "--work",
        type=Path,
        help="folder for the scene, the data and the runs, kept (default: a temporary folder, "
        "removed at the end)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    check = Check(out, work, DRY if args.dry_run else REAL, args.dry_run)
    try:
        return run_all(check)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run_all(check: Check) -> int:
    def env_step(step: Step) -> str:
        try:
            check.environment.update(environment())
        except ImportError as exc:
            raise StepError(
                f"CUDA missing: {sys.executable} cannot import torch ({exc}); run the check "
                "with the python that holds a CUDA build of PyTorch"
            ) from None
        info = check.environment
        step.metrics.update(info)
        if not info["cuda_available"]:
            if check.dry_run:
                return f"torch {info['torch']}, no CUDA: dry run on the CPU"
            raise StepError("CUDA missing: " + missing_cuda(info))
        figure = (
            f"{info['device_name']} x{info['device_count']}, bf16 {info['bf16']}, "
            f"torch {info['torch']} (CUDA {info['torch_cuda']})"
        )
        absent = [m for m, v in info["modules"].items() if v is None]
        if absent:  # segment needs rasterio + affine; the steps that need them will fail
            figure += f"; not installed: {', '.join(absent)} (docs/gpu-check.md)"
        return figure

    env = check.run("environment", env_step)
    if env.status != "ok":
        for name in list(check.steps)[1:]:
            check.skip(name, "no CUDA")
        finish(check)
        print(env.error, file=sys.stderr)
        return 2

    if check.dry_run:
        check.skip("cuda_tests", "skipped (dry run)")
    else:
        check.run("cuda_tests", lambda st: cuda_tests(check, st))
    check.run("scene", lambda st: scene(check, st))
    check.run("segment_default", lambda st: segment(check, st, "default", []))

    def munet(st: Step) -> str:
        ckpt = untrained_munet_half(check.work / "munet-half-untrained.pt")
        st.metrics["checkpoint"] = str(ckpt)
        return segment(check, st, "munet_half", ["--model", str(ckpt)])

    check.run("segment_munet_half", munet)
    check.run("train_data", lambda st: train_data(check, st))
    check.run("train", lambda st: train(check, st, ddp=False))
    check.run("train_ddp", lambda st: train(check, st, ddp=True))
    finish(check)
    return 0 if check.passed() else 1


def finish(check: Check) -> None:
    path = check.write_json()
    mode = "dry run on the CPU (figures are not GPU figures)" if check.dry_run else "GPU run"
    print(f"\nWaterSeg GPU check, {mode}, {time.monotonic() - check.t0:.0f} s in all")
    print(check.table())
    munet = check.steps["segment_munet_half"]
    if not check.dry_run and munet.status == "ok":
        got = munet.metrics["s_per_100mp"]
        verdict = "meets" if got <= GOAL_S_PER_100MP else "misses"
        print(f"MU-Net half: {got:.2f} s per 100 MP {verdict} the goal")
    print(GOAL_LINE)
    print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
