"""``python -m backend batch`` on a real 2-worker Dask LocalCluster with generated scenes.

The scenes are small 4-band GeoTIFFs in UTM 32N with a water half and a land half; the model
is a tiny U-Net whose 1x1 head is set to a nearest-centroid classifier of its own features
on water vs land, so every scene has a real shoreline without training anything.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.batch.cli import local_cluster_size
from backend.batch.cli import main as batch_main
from backend.batch.inputs import expand_inputs
from backend.batch.manifest import is_complete, read_manifest
from backend.core.errors import UserError
from tests.backend.rasters import water_scene, write_raster

TILE = 64


def water_checkpoint(path: Path) -> Path:
    """A tiny U-Net checkpoint that tells water_scene's water from its land (see module doc)."""
    from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
    from backend.models import create_model

    torch.manual_seed(0)
    kwargs = {"width": 0.125, "in_channels": 4}
    model = create_model("unet", **kwargs).eval()
    spec = InputSpec(tile_size=TILE)
    head = model.head.heads[0]
    feats = {}
    hook = head.register_forward_hook(lambda m, inp, out: feats.setdefault("f", inp[0]))
    centroids = []
    for water in (True, False):
        raw = water_scene(np.full((TILE, TILE), water))
        with torch.no_grad():
            model(torch.from_numpy(spec.normalise(raw))[None])
        centroids.append(feats.pop("f").mean(dim=(0, 2, 3)))
    hook.remove()
    fw, fl = centroids
    w = 20.0 * (fw - fl) / float(((fw - fl) ** 2).sum())  # logit +10 at water, -10 at land
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1, :, 0, 0] = w
        head.bias[1] = -float(w @ (fw + fl) / 2)
    save_checkpoint(build_checkpoint(model, "unet", kwargs, spec), path)
    return path


def scene(path: Path, size: int = 128, split: float = 0.4) -> Path:
    water = np.zeros((size, size), bool)
    water[:, : int(size * split)] = True
    return write_raster(path, water_scene(water), tiled=size >= 256)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return water_checkpoint(tmp_path_factory.mktemp("ckpt") / "water.pt")


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker, 1-thread-each LocalCluster of processes, shared by the tests."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cl,
        Client(cl) as client,
    ):
        yield client


def _report(out: Path) -> dict[str, dict]:
    doc = json.loads((out / "batch_report.json").read_text())
    return {r["scene"]: r for r in doc["scenes"]}


def _partial_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, ckpt, cluster):
    """Three good scenes with --merge-shoreline, then the same command again."""
    root = tmp_path_factory.mktemp("batch")
    scenes = root / "scenes"
    (scenes / "sub").mkdir(parents=True)
    for i, split in enumerate((0.3, 0.5)):
        scene(scenes / f"a{i}.tif", split=split)
    scene(scenes / "sub" / "b0.tif", split=0.6)
    out = root / "out"
    argv = [str(scenes), "--out-dir", str(out), "--model", str(ckpt)]
    argv += ["--scheduler", cluster.scheduler.address, "--merge-shoreline", "--progress", "json"]
    t0 = time.monotonic()
    code = batch_main(argv)
    first = (code, _report(out), time.monotonic() - t0)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    t0 = time.monotonic()
    code2 = batch_main(argv)
    second = (code2, _report(out), time.monotonic() - t0)
    return out, first, second, mtimes


@pytest.mark.slow
def test_all_scenes_done_with_outputs_and_manifests(first_run):
    out, (code, rows, _), _, _ = first_run
    assert code == 0
    assert sorted(rows) == ["a0", "a1", "b0"]
    for name, row in rows.items():
        assert row["status"] == "done", row
        assert 0.2 < row["water_fraction"] < 0.7
        assert row["shoreline_length_m"] > 1000  # a 1280 m straight shoreline
        assert (out / f"{name}_water.tif").is_file()
        assert (out / f"{name}_shoreline.gpkg").is_file()
        manifest = read_manifest(out / f"{name}.waterseg.json")
        assert manifest["model_sha256"] and manifest["input"] == row["input"]
    assert (out / "batch_report.csv").read_text().splitlines()[0].startswith("scene,input,status")
    assert _partial_files(out) == []


@pytest.mark.slow
def test_rerun_skips_every_scene_and_changes_no_output(first_run):
    out, _, (code, rows, seconds), mtimes = first_run
    assert code == 0
    assert {r["status"] for r in rows.values()} == {"skipped"}
    assert rows["a1"]["water_fraction"] is not None  # carried over from the manifest
    for name, ns in mtimes.items():
        if not name.startswith("batch_"):
            assert (out / name).stat().st_mtime_ns == ns, name


@pytest.mark.slow
def test_merged_shoreline_has_every_scene_in_wgs84(first_run):
    from osgeo import ogr

    out, (_, rows, _), _, _ = first_run
    ds = ogr.Open(str(out / "batch_shoreline.gpkg"))
    layer = ds.GetLayer(0)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "4326"
    per_scene: dict[str, int] = {}
    for f in layer:
        per_scene[f.GetField("scene")] = per_scene.get(f.GetField("scene"), 0) + 1
        x, y = f.GetGeometryRef().GetPoint_2D(0)
        assert 8.9 < x < 9.1 and 41.9 < y < 42.1  # lon/lat of UTM 32N (500000, 4650000)
    assert per_scene.keys() == rows.keys()
    for name in rows:
        src = ogr.Open(str(out / f"{name}_shoreline.gpkg"))
        assert per_scene[name] == src.GetLayer(0).GetFeatureCount()


@pytest.mark.slow
def test_bad_scene_is_reported_and_the_rest_succeed_on_an_embedded_cluster(tmp_path, ckpt):
    good = scene(tmp_path / "good.tif")
    bad = tmp_path / "bad.tif"
    bad.write_text("this is text, not a raster")
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# two scenes\n{good}\nbad.tif\n")
    out = tmp_path / "out"
    argv = [f"@{listing}", "--out-dir", str(out), "--model", str(ckpt), "--scheduler", "local"]
    argv += ["--workers", "2", "--threads-per-worker", "1", "--retries", "3"]
    assert batch_main(argv) == 3
    rows = _report(out)
    assert rows["good"]["status"] == "done"
    assert rows["bad"]["status"] == "failed"
    assert "not a raster GDAL can read" in rows["bad"]["error"]
    assert "\n" not in rows["bad"]["error"]
    assert not (out / "bad.waterseg.json").exists()
    assert _partial_files(out) == []


@pytest.mark.slow
def test_worker_killed_mid_scene_ends_with_every_scene_done(tmp_path, ckpt, cluster):
    import psutil

    big = scene(tmp_path / "big.tif", size=1024)
    small = [scene(tmp_path / f"s{i}.tif") for i in range(2)]
    out = tmp_path / "out"
    killed: dict[str, object] = {}

    def kill_the_worker_running_big() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "pid" not in killed:
            staging = list(out.glob(".waterseg-big-*")) if out.exists() else []
            running = [
                addr
                for addr, keys in cluster.processing().items()
                if any("-big-" in k for k in keys)
            ]
            if staging and running:  # segment is writing big's outputs on this worker
                pid = cluster.run(os.getpid, workers=running)[running[0]]
                killed["children"] = psutil.Process(pid).children(recursive=True)
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
            time.sleep(0.1)

    killer = threading.Thread(target=kill_the_worker_running_big, daemon=True)
    killer.start()
    argv = [str(big), *map(str, small), "--out-dir", str(out), "--model", str(ckpt)]
    argv += ["--scheduler", cluster.scheduler.address, "--progress", "none"]
    code = batch_main(argv)
    killer.join(timeout=5)
    assert "pid" in killed, "the big scene finished before its worker could be killed"
    assert code == 0
    rows = _report(out)
    assert {r["status"] for r in rows.values()} == {"done"}
    assert _partial_files(out) == []
    assert read_manifest(out / "big.waterseg.json") is not None
    # the segment process of the killed worker died with it (PR_SET_PDEATHSIG)
    assert killed["children"], "the killed worker ran no segment process"
    gone, alive = psutil.wait_procs(killed["children"], timeout=10)
    assert not alive


def test_inputs_expand_folders_globs_and_lists(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/x.tif", "d/e/y.TIF", "d/notes.md", "d/.hidden.tif", "z.jp2"):
        (tmp_path / name).write_text("x")
    listing = tmp_path / "list.txt"
    listing.write_text("z.jp2\n\n# comment\nhttps://example.org/s.tif\n")
    got = expand_inputs([str(tmp_path / "d"), str(tmp_path / "*.jp2"), f"@{listing}"])
    assert got == [
        str(tmp_path / "d" / "e" / "y.TIF"),
        str(tmp_path / "d" / "x.tif"),
        str(tmp_path / "z.jp2"),
        "https://example.org/s.tif",
    ]
    with pytest.raises(UserError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.nothing")])


def test_manifest_goes_stale_when_the_input_options_or_model_change(tmp_path):
    from backend.batch.manifest import input_stat

    src = scene(tmp_path / "s.tif")
    out = tmp_path / "out.tif"
    out.write_text("x")
    m = {
        "format": 1,
        "input": str(src),
        "input_stat": input_stat(str(src)),
        "model_sha256": "abc",
        "model_explicit": True,
        "options": {"threshold": 0.5},
        "outputs": {"mask": str(out)},
    }
    assert is_complete(m, str(src), {"threshold": 0.5}, "abc")
    assert not is_complete(m, str(src), {"threshold": 0.6}, "abc")
    assert not is_complete(m, str(src), {"threshold": 0.5}, "abd")
    assert not is_complete(m, str(src), {"threshold": 0.5}, None)  # bundled model now
    # an option segment gained later: at its default it changes nothing, else it does
    new_option = {"threshold": 0.5, "method": "model"}
    assert is_complete(m, str(src), new_option, "abc", {"threshold": 0.5, "method": "model"})
    assert not is_complete(m, str(src), new_option, "abc", {"threshold": 0.5, "method": "ndwi"})
    index_method = {**m, "model": "ndwi", "model_sha256": None, "model_explicit": False}
    assert is_complete(index_method, str(src), {"threshold": 0.5}, None)  # --method ndwi
    os.utime(src, ns=(1, 1))
    assert not is_complete(m, str(src), {"threshold": 0.5}, "abc")
    m["input_stat"] = input_stat(str(src))
    out.unlink()
    assert not is_complete(m, str(src), {"threshold": 0.5}, "abc")


def test_embedded_cluster_never_runs_more_scenes_than_cores():
    cores = len(os.sched_getaffinity(0))
    workers, threads = local_cluster_size(None, None)
    assert threads == 1 and 1 <= workers <= cores
    with pytest.raises(UserError, match="more than the"):
        local_cluster_size(cores, 2)


def test_scene_process_dies_with_its_worker(tmp_path, repo_root):
    """die_with_parent: a silent child (no pipe write to fail on) is killed with its parent."""
    import subprocess
    import sys

    import psutil

    parent_code = (
        "import subprocess, sys, time\n"
        "code = 'import os, time; from backend.batch.child import die_with_parent; "
        "die_with_parent(os.getppid()); time.sleep(120)'\n"
        "p = subprocess.Popen([sys.executable, '-c', code])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], cwd=repo_root, stdout=subprocess.PIPE, text=True
    )
    child = psutil.Process(int(parent.stdout.readline()))
    time.sleep(1.0)  # let the child reach its prctl call
    assert child.is_running()
    parent.kill()
    parent.wait()
    parent.stdout.close()
    gone, alive = psutil.wait_procs([child], timeout=5)
    assert not alive
