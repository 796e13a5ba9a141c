"""`python -m backend demo`: scoring helpers, and the whole path as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from backend.commands.demo import _index_mask_of_raster, score_masks
from backend.core import paths
from backend.core.water_indices import ndwi_water_mask
from backend.datasets.synthetic import generate_scene, make_demo_scene


def test_score_masks_hand_computed():
    pred = np.array([[1, 1], [0, 255]], np.uint8)
    truth = np.array([[1, 0], [0, 0]], np.uint8)
    s = score_masks(pred, truth)  # valid: TP (0,0), FP (0,1), TN (1,0); (1,1) left out
    assert s["iou_water"] == pytest.approx(0.5)
    assert s["iou_land"] == pytest.approx(0.5)
    assert s["iou_mean"] == pytest.approx(0.5)
    truth_nodata = np.array([[1, 255], [0, 1]], np.uint8)
    s = score_masks(np.array([[1, 0], [0, 1]], np.uint8), truth_nodata)
    assert s["iou_mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        score_masks(pred, truth[:1])


def test_index_mask_of_raster_reads_bands_by_description(tmp_path):
    image_path, _ = make_demo_scene(tmp_path, size=256, seed=2)
    scene = generate_scene(size=256, seed=2)
    got = _index_mask_of_raster(image_path)
    assert np.array_equal(got, ndwi_water_mask(scene.image, bands=scene.bands))
    assert (got[scene.truth == 255] == 255).all()
    mndwi = _index_mask_of_raster(image_path, "B11")
    assert np.array_equal(mndwi, ndwi_water_mask(scene.image, bands=scene.bands, other="B11"))
    assert not np.array_equal(mndwi, got)


def _run_demo(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(paths.REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "backend", "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_missing_scene_is_a_user_error(tmp_path):
    proc = _run_demo(
        ["--scene", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o")], tmp_path
    )
    assert proc.returncode == 2
    assert "scene not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not paths.DEFAULT_MODEL.is_file(), reason="bundled model not built")
def test_demo_end_to_end_with_the_bundled_model(tmp_path):
    out = tmp_path / "demo"
    proc = _run_demo(["--out", str(out), "--size", "512", "--device", "cpu"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stem = "synthetic_s2_scene"
    mask_path = out / f"{stem}_water.tif"
    for name in (f"{stem}.tif", f"{stem}_truth.tif", mask_path.name, f"{stem}_shoreline.gpkg"):
        assert (out / name).is_file(), name
    quicklook = out / f"{stem}_quicklook.png"
    assert quicklook.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(quicklook) in proc.stdout and "took" in proc.stdout

    # the printed scores are the real ones
    with rasterio.open(mask_path) as src, rasterio.open(out / f"{stem}_truth.tif") as ref:
        assert src.crs == ref.crs and src.transform == ref.transform
        scores = score_masks(src.read(1), ref.read(1))
    line = next(ln for ln in proc.stdout.splitlines() if "WaterSeg (auto)" in ln)
    assert f"{100 * scores['iou_mean']:.2f}" in line
    # auto is mixed-adaptive for these bands (the mean of NDWI and MNDWI above the scene's
    # edge-Otsu threshold): on this scene it is ahead of both indices at their fixed 0
    assert "mean of NDWI and MNDWI: water where the index > " in proc.stderr
    for name in ("NDWI > 0", "MNDWI > 0"):
        index = next(ln for ln in proc.stdout.splitlines() if name in ln)
        assert float(line.split()[-1]) > float(index.split()[-1])
    with rasterio.open(out / "learned-model" / f"{stem}_water.tif") as src:
        learned = score_masks(src.read(1), ref_truth(out / f"{stem}_truth.tif"))
    learned_line = next(ln for ln in proc.stdout.splitlines() if "learned model" in ln)
    assert f"{100 * learned['iou_mean']:.2f}" in learned_line
    assert scores["iou_mean"] > 0.9 and learned["iou_mean"] > 0.9


def ref_truth(path):
    with rasterio.open(path) as ref:
        return ref.read(1)
