"""``python -m backend segment``: the options are one table (resources/contract.json) that the
parser is built from and the engine's defaults agree with; as a real subprocess: errors, JSON
progress, cancel, demo scene."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import rasterio

from backend.core.contract import option, segment_options
from backend.core.errors import UserError
from backend.segment.cli import build_parser
from backend.segment.cli import main as segment_main
from backend.segment.pipeline import SegmentOptions
from tests.backend.rasters import tiny_checkpoint, water_scene, write_raster


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tile=64)


def _segment(repo_root, python, args, timeout=120):
    return subprocess.run(
        [python, "-m", "backend", "segment", *map(str, args)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _bad_inputs(tmp, ckpt):
    """name -> (input path, extra args, expected message fragment)."""
    cases = {}
    cases["missing"] = (tmp / "nope.tif", [], "input not found")
    (tmp / "notes.tif").write_text("not a raster at all")
    cases["not_raster"] = (tmp / "notes.tif", [], "not a raster GDAL can read")
    full = write_raster(tmp / "full.tif", np.ones((4, 512, 512), np.uint16), tiled=True)
    data = full.read_bytes()
    (tmp / "trunc.tif").write_bytes(data[: len(data) // 2])
    cases["truncated"] = (tmp / "trunc.tif", [], "truncated or corrupt")
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.GetDriverByName("PCIDSK").Create(str(tmp / "zero.pix"), 10, 10, 0, gdal.GDT_Byte)
    cases["zero_band"] = (tmp / "zero.pix", [], "no raster bands")
    one = write_raster(tmp / "one.tif", np.ones((1, 40, 40), np.uint16))
    cases["one_band"] = (one, [], "missing B3, B4, B8")
    empty = write_raster(tmp / "empty.tif", np.zeros((4, 70, 70), np.uint16), nodata=0)
    cases["all_nodata"] = (empty, [], "no valid pixels")
    good = write_raster(tmp / "good.tif", water_scene(np.zeros((40, 40), bool)))
    (tmp / "afile").write_text("x")
    cases["unwritable_out"] = (good, ["--out-dir", tmp / "afile" / "out"], "cannot write")
    corrupt = tmp / "corrupt.pt"
    corrupt.write_bytes(ckpt.read_bytes()[:5000])
    cases["corrupt_ckpt"] = (good, ["--model", corrupt], "cannot read model file")
    snowed = tmp / "SNOWED" / "sample_0001"
    snowed.mkdir(parents=True)
    np.save(snowed / "sample_2A.npy", np.ones((4, 4, 12), np.uint16))
    cases["npy"] = (snowed / "sample_2A.npy", [], "is training data (SNOWED NumPy arrays)")
    cases["snowed_dir"] = (tmp / "SNOWED", [], "backend train --data FOLDER")
    return cases


CASES = [
    "missing",
    "not_raster",
    "truncated",
    "zero_band",
    "one_band",
    "all_nodata",
    "unwritable_out",
    "corrupt_ckpt",
    "npy",
    "snowed_dir",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exit_2_one_line_no_output(tmp_path, ckpt, repo_root, backend_python, case):
    inp, extra, fragment = _bad_inputs(tmp_path, ckpt)[case]
    out = tmp_path / "out"
    args = [inp, "--out-dir", out, "--model", ckpt, "--progress", "json", *extra]
    if "--out-dir" in map(str, extra):
        args = [inp, "--model", ckpt, "--progress", "json", *extra]
    r = _segment(repo_root, backend_python, args)
    assert r.returncode == 2, r.stderr
    err_lines = [ln for ln in r.stderr.splitlines() if ln.startswith("waterseg: error:")]
    assert len(err_lines) == 1 and fragment in err_lines[0], r.stderr
    assert "Traceback" not in r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]  # stdout: JSON only
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 2
    assert fragment in events[-1]["message"]
    assert _files(out) == []  # no partial output, no temporary folder


def test_usage_errors_in_process(tmp_path, ckpt):
    good = write_raster(tmp_path / "g.tif", water_scene(np.zeros((30, 30), bool)))
    base = [str(good), "--out-dir", str(tmp_path / "o"), "--model", str(ckpt), "--progress", "none"]
    with pytest.raises(UserError, match="overlap"):
        segment_main([*base, "--overlap", "0.1"])
    with pytest.raises(UserError, match="--bands"):
        segment_main([*base, "--bands", "1,2"])
    with pytest.raises(UserError, match="unrecognized arguments"):
        segment_main([*base, "--frobnicate"])
    (tmp_path / "o").mkdir(exist_ok=True)
    (tmp_path / "o" / "g_water.tif").write_text("old")
    with pytest.raises(UserError, match="--overwrite"):
        segment_main(base)
    assert segment_main([*base, "--overwrite", "--shoreline", "none"]) == 0
    with rasterio.open(tmp_path / "o" / "g_water.tif") as m:
        assert m.shape == (30, 30)


@pytest.mark.parametrize(("user_value", "expected"), [(None, "64"), ("512", "512")])
def test_segment_caps_gdal_block_cache_unless_the_user_set_it(
    tmp_path, ckpt, monkeypatch, user_value, expected
):
    """GDAL's default cache (5 % of RAM) was half the peak memory of a full-tile run."""
    monkeypatch.setenv("GDAL_CACHEMAX", user_value or "")  # records the value to restore
    if user_value is None:
        monkeypatch.delenv("GDAL_CACHEMAX")
    good = write_raster(tmp_path / "g.tif", water_scene(np.zeros((30, 30), bool)))
    argv = [str(good), "--out-dir", str(tmp_path / "o"), "--model", str(ckpt)]
    assert segment_main([*argv, "--progress", "none", "--shoreline", "none"]) == 0
    assert os.environ["GDAL_CACHEMAX"] == expected


@pytest.mark.slow
def test_sigterm_stops_promptly_and_leaves_nothing(tmp_path, ckpt, repo_root, backend_python):
    big = write_raster(tmp_path / "big.tif", water_scene(np.zeros((1200, 1200), bool)))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [backend_python, "-m", "backend", "segment", str(big), "--out-dir", str(out),
         "--model", str(ckpt), "--progress", "json", "--probability", "--batch-size", "2"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in proc.stdout:
            ev = json.loads(line)
            if ev["event"] == "progress" and ev["tiles_done"] > 0:
                break
        assert ev["tiles_done"] < ev["tiles_total"], "run finished before it could be cancelled"
        assert _files(out), "a temporary folder should exist while running"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled" in err
    last = json.loads(rest.splitlines()[-1])
    assert last == {"event": "error", "message": "cancelled", "exit_code": 130}
    assert _files(out) == []


@pytest.mark.slow
def test_demo_scene_end_to_end(tmp_path, repo_root, backend_python, demo_scene):
    ck = tiny_checkpoint(tmp_path / "tiny128.pt", tile=128)
    out = tmp_path / "out"
    r = _segment(
        repo_root, backend_python,
        [demo_scene, "--out-dir", out, "--model", ck, "--progress", "json", "--quicklook",
         "--shoreline", "both", "--probability"],
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    start = events[0]
    assert start["event"] == "start" and start["device"] == "cpu"
    assert (start["width"], start["height"]) == (318, 317) and start["tiles"] == 9
    assert events[-1]["event"] == "finished" and events[-1]["count"] == 1
    done = next(e for e in events if e["event"] == "done")
    assert set(done["outputs"]) == {
        "mask", "probability", "shoreline_gpkg", "shoreline_shp", "quicklook"
    }  # fmt: skip
    for path in done["outputs"].values():
        assert os.path.getsize(path) > 0
    assert "bands [2, 3, 4, 8] (descriptions)" in r.stderr  # mapped by band description
    assert "device: cpu" in r.stderr
    with rasterio.open(done["outputs"]["mask"]) as m, rasterio.open(demo_scene) as s:
        mask = m.read(1)
        assert m.crs.to_epsg() == 32632 and m.transform == s.transform
    assert set(np.unique(mask)) <= {0, 1}


def test_the_same_input_twice_is_segmented_once(tmp_path, repo_root, backend_python):
    water = np.zeros((40, 40), bool)
    water[5:25, 5:30] = True
    src = write_raster(tmp_path / "lake.tif", water_scene(water))
    again = tmp_path / "sub" / ".." / "lake.tif"  # the same file, spelled differently
    (tmp_path / "sub").mkdir()
    r = _segment(
        repo_root,
        backend_python,
        [src, again, "--out-dir", tmp_path / "o", "--method", "ndwi", "--progress", "json"],
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events].count("done") == 1
    assert "given more than once; segmenting it once" in r.stderr


def test_parser_is_built_from_the_table():
    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    for opt in segment_options():
        dest = opt["name"].replace("-", "_")
        assert dest in flags, opt["name"]
        if not opt.get("positional") and not opt.get("required"):
            assert flags[dest].default == opt.get("default", False), opt["name"]
        assert flags[dest].help == opt["help"]


def test_engine_defaults_agree_with_the_table():
    for f in dataclasses.fields(SegmentOptions):
        name = f.name.replace("_", "-")
        if name == "overwrite" or f.default is dataclasses.MISSING:
            continue
        assert f.default == option(name)["default"], name


@pytest.mark.parametrize(("value", "ok"), [(0.25, True), (0.85, True), (0.86, False), (0.2, False)])
def test_overlap_range_is_the_table_range(tmp_path, value, ok):
    assert option("overlap")["max"] == 0.85  # what the dock and Processing offer too
    argv = ["nope.tif", "--out-dir", str(tmp_path), "--overlap", str(value)]
    with pytest.raises(UserError) as err:
        segment_main(argv)
    assert ("out of range" in str(err.value)) != ok  # in range: fails later, on the input


def test_every_number_is_checked_against_its_range(tmp_path):
    for flag, value in (
        ("--threshold", "1"),
        ("--smooth", "11"),
        ("--batch-size", "0"),
        ("--tile-size", "32"),
    ):
        with pytest.raises(UserError, match=f"{flag} .* out of range"):
            segment_main(["nope.tif", "--out-dir", str(tmp_path), flag, value])


def test_tile_size_overrides_the_models_tile(tmp_path, ckpt, repo_root, backend_python):
    # The checkpoint's tile (64 here) is the default; --tile-size 128 tiles the raster with
    # 128 px tiles at the same overlap fraction, and says so in the start event.
    from backend.segment.tiling import TileGrid

    water = np.zeros((200, 260), bool)
    water[30:150, 40:200] = True
    src = write_raster(tmp_path / "lake.tif", water_scene(water))
    starts, masks = {}, {}
    for tile in (None, 128):
        out = tmp_path / f"o{tile}"
        extra = [] if tile is None else ["--tile-size", tile]
        r = _segment(
            repo_root,
            backend_python,
            [src, "--out-dir", out, "--model", ckpt, "--progress", "json", *extra],
        )
        assert r.returncode == 0, r.stderr
        starts[tile] = json.loads(r.stdout.splitlines()[0])
        with rasterio.open(out / "lake_water.tif") as m:
            masks[tile] = m.read(1)
    assert starts[None]["tiles"] == TileGrid(200, 260, 64, 0.25).count
    assert starts[128]["tiles"] == TileGrid(200, 260, 128, 0.25).count < starts[None]["tiles"]
    assert masks[None].shape == masks[128].shape == (200, 260)
