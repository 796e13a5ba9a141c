"""benchmarks/gpu_check.sh: the dry run on the CPU end to end, and the exit without CUDA."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from benchmarks import gpu_check

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
STATUS_RE = re.compile(r"^(?P<title>\S.*?)\s{2,}(?P<status>ok|failed|skipped)\s+(?P<s>[\d.]+)")


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 400):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """Summary table lines -> {title: (status, rest of the line)}."""
    rows = {}
    for line in stdout.splitlines():
        m = STATUS_RE.match(line)
        if m and m["title"] in gpu_check.STEP_TITLES.values():
            rows[m["title"]] = (m["status"], line[m.end() :].strip())
    return rows


def steps_by_name(result: dict) -> dict[str, dict]:
    return {s["name"]: s for s in result["steps"]}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    t0 = time.perf_counter()
    run = run_script("--dry-run", "--out", str(out), "--work", str(out / "work"))
    seconds = time.perf_counter() - t0
    return run, out, seconds


@pytest.mark.slow
def test_dry_run_passes_every_step_and_prints_one_table(dry_run):
    run, _out, seconds = dry_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = table_rows(run.stdout)
    assert set(rows) == set(gpu_check.STEP_TITLES.values())  # every step, in one table
    assert run.stdout.count("step ") == 1 and run.stdout.count(gpu_check.GOAL_LINE) == 1
    for title, (status, _rest) in rows.items():
        assert status == ("skipped" if title.startswith("2 CUDA") else "ok"), (title, status)
    assert "skipped (dry run)" in rows[gpu_check.STEP_TITLES["cuda_tests"]][1]
    assert seconds < 240, f"the dry run took {seconds:.0f} s"


@pytest.mark.slow
def test_dry_run_json_holds_the_figures(dry_run):
    run, out, _ = dry_run
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["mode"] == "dry-run" and result["passed"] is True
    assert result["goal"] == gpu_check.GOAL_LINE
    if VENV_PYTHON.exists():  # the wrapper ran the repository's venv
        assert result["environment"]["executable"] == str(VENV_PYTHON)
    steps = steps_by_name(result)
    assert [s["name"] for s in result["steps"]] == list(gpu_check.STEP_TITLES)
    mp = steps["scene"]["metrics"]["megapixels"]
    assert mp == pytest.approx((2 * 256) ** 2 / 1e6)
    for name in ("segment_default", "segment_munet_half"):
        m = steps[name]["metrics"]
        assert steps[name]["status"] == "ok"
        assert m["device"] == "cpu" and m["megapixels"] == mp
        assert m["s_per_100mp"] > 0 and m["engine_s"] > 0 and m["wall_s"] >= m["engine_s"]
        assert m["s_per_100mp"] == pytest.approx(m["engine_s"] * 100 / mp, rel=1e-3)
        with rasterio.open(m["mask"]) as ds:  # the whole mosaic was segmented
            assert (ds.width, ds.height) == (512, 512) and ds.crs.to_epsg() == 32633
    assert "--model" not in steps["segment_default"]["metrics"]["command"]  # the bundled one
    assert "waterseg-default.pt" in steps["segment_default"]["metrics"]["model_line"]
    assert "munet" in steps["segment_munet_half"]["metrics"]["model_line"]
    # the bundled model finds the water discs (22 % of the scene), not everything or nothing
    true = steps["scene"]["metrics"]["water_fraction_true"]
    assert steps["segment_default"]["metrics"]["water_fraction"] == pytest.approx(true, abs=0.05)
    for name in ("train", "train_ddp"):
        m = steps[name]["metrics"]
        assert steps[name]["status"] == "ok"
        assert m["steps"] == 2 and m["steps_per_s"] > 0 and m["wall_s"] > 0
        assert m["steps_per_s"] == pytest.approx(2 / sum(m["epoch_s"]), rel=1e-2)
    ddp = steps["train_ddp"]["metrics"]
    assert "DistributedDataParallel over 2 processes (gloo)" in ddp["device_line"]
    assert ddp["epochs"] == 2 * steps["train"]["metrics"]["epochs"]  # half the samples per epoch
    assert "DistributedDataParallel" not in steps["train"]["metrics"]["device_line"]
    log = (out / "gpu_check.log").read_text()
    assert "=== segment_default: $ " in log and "=== train_ddp: $ " in log


@pytest.mark.slow
def test_dry_run_vrt_is_the_mosaic_of_the_tile(dry_run):
    run, out, _ = dry_run
    assert run.returncode == 0, run.stderr[-3000:]
    scene = steps_by_name(json.loads((out / "gpu_check.json").read_text()))["scene"]["metrics"]
    n, tile = scene["mosaic"], scene["tile_px"]
    assert (n, tile) == (2, 256)
    with rasterio.open(scene["tile"]) as t:
        tile_data = t.read()
        tile_transform = t.transform
        assert t.count == 6 and t.dtypes[0] == "uint16" and t.crs.to_epsg() == 32633
    with rasterio.open(scene["vrt"]) as ds:
        assert ds.driver == "VRT"
        assert (ds.width, ds.height) == (n * tile, n * tile)
        assert ds.crs.to_epsg() == 32633 and ds.res == (10.0, 10.0)
        assert ds.transform == tile_transform  # copy (0, 0) lies where the tile lies
        assert list(ds.descriptions) == ["B2", "B3", "B4", "B8", "B11", "B12"]
        data = ds.read()
    for i in range(n):
        for j in range(n):
            block = data[:, i * tile : (i + 1) * tile, j * tile : (j + 1) * tile]
            np.testing.assert_array_equal(block, tile_data, err_msg=f"copy {i},{j}")
    water = tile_data[3] < 1000  # B8: water discs, a non-trivial mask
    assert 0.1 < water.mean() < 0.4


def test_without_cuda_exits_2_and_says_what_is_missing(tmp_path):
    run = run_script("--out", str(tmp_path), "--work", str(tmp_path / "work"),
                     env={"CUDA_VISIBLE_DEVICES": ""}, timeout=120)  # fmt: skip
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    missing = [ln for ln in run.stderr.splitlines() if ln.startswith("CUDA missing: ")]
    assert len(missing) == 1, run.stderr
    assert f"torch {torch.__version__}" in missing[0]
    if torch.version.cuda is None:  # this CPU build: install the CUDA wheel of that version
        base = torch.__version__.split("+")[0]
        assert (
            f"pip install torch=={base} --index-url https://download.pytorch.org/whl/cu"
            in (missing[0])
        )
    else:
        assert "CUDA_VISIBLE_DEVICES=''" in missing[0]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = steps_by_name(result)
    assert steps["environment"]["status"] == "failed"
    assert steps["environment"]["error"] == missing[0]
    assert all(s["status"] == "skipped" for n, s in steps.items() if n != "environment")
    assert not (tmp_path / "work").exists()  # nothing built, nothing downloaded
    assert gpu_check.GOAL_LINE in run.stdout


def test_missing_cuda_names_the_cause():
    base = {"torch": "2.11.0+cu130", "torch_cuda": "13.0", "nvidia_smi": None}
    assert "CPU-only build" in gpu_check.missing_cuda({**base, "torch_cuda": None})
    hidden = gpu_check.missing_cuda({**base, "CUDA_VISIBLE_DEVICES": "-1"})
    assert hidden.startswith("CUDA_VISIBLE_DEVICES='-1' hides every GPU")
    assert gpu_check.missing_cuda(base).startswith("no NVIDIA driver: nvidia-smi is not on PATH")
    driver = gpu_check.missing_cuda({**base, "nvidia_smi": "/usr/bin/nvidia-smi"})
    assert "sees no GPU although nvidia-smi is present" in driver and "CUDA 13.0" in driver


def test_steps_per_epoch_follows_the_training_loader():
    assert gpu_check.steps_per_epoch(100, 10, 1) == 10
    assert gpu_check.steps_per_epoch(100, 10, 2) == 5  # rank 0 of 2: 50 samples
    assert gpu_check.steps_per_epoch(21, 10, 1) == 2  # a last batch of one sample is dropped
    # DistributedSampler pads 5 samples to 3 per rank: batches of 2 + 1, and the 1 is dropped
    assert gpu_check.steps_per_epoch(5, 2, 2) == 1
    assert gpu_check.steps_per_epoch(7, 2, 2) == 2


def test_cuda_tests_are_found_by_name_and_summed_up():
    files = gpu_check.cuda_test_files()
    assert "test_cuda_predictor_matches_cpu" in files["tests/backend/segment/test_inference.py"]
    assert all(path.startswith("tests/") for path in files)
    assert "tests/benchmarks/test_gpu_check.py" not in files  # its own tests would recurse
    counts = gpu_check.pytest_summary("x\nSKIPPED [1] a.py:3: needs\n1 passed, 2 skipped, "
                                      "16 deselected, 1 warning in 2.75s\n")  # fmt: skip
    assert counts == {"passed": 1, "skipped": 2, "deselected": 16, "warning": 1}
    assert gpu_check.pytest_summary("1 failed, 2 errors in 3s") == {"failed": 1, "error": 2}


def test_wrapper_execs_the_module_with_its_arguments():
    run = run_script("--help", timeout=60)
    assert run.returncode == 0, run.stderr
    assert "--dry-run" in run.stdout and "--out" in run.stdout
    bad = run_script("--no-such-option", timeout=60)
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the CUDA test passes")
def test_gpu_test_step_fails_when_the_gpu_test_skips(tmp_path):
    """The real step's pytest run, here where the CUDA test skips itself: a failure, not ok."""
    check = gpu_check.Check(tmp_path, tmp_path / "work", gpu_check.REAL, dry_run=False)
    step = check.run("cuda_tests", lambda st: gpu_check.cuda_tests(check, st))
    assert step.status == "failed"
    assert step.error.startswith("1 skipped, ") and "skipped on a CUDA machine" in step.error
    assert "needs a CUDA GPU" in step.error
    assert step.metrics["counts"]["skipped"] == 1
    assert "=== cuda_tests: $ " in (tmp_path / "gpu_check.log").read_text()
