"""The per-raster pipeline: on real GeoTIFFs with a hand-made NIR model (files out), and on
arrays with hand-made models (tiled, blended, streamed row by row, read in blocks, cancelled)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from osgeo import ogr

from backend.core.checkpoint import InputSpec
from backend.core.errors import Cancelled, UserError
from backend.segment.blending import tile_weight
from backend.segment.inference import TilePredictor
from backend.segment.pipeline import (
    ArrayReader,
    OutputPlan,
    SegmentOptions,
    iter_probability_rows,
    predict_array,
    segment_source,
)
from backend.segment.progress import JsonReporter, NullReporter
from backend.segment.raster_io import open_raster
from backend.segment.tiling import TileGrid, tile_origins
from tests.backend.rasters import (
    WGS84,
    ConstantModel,
    ConvModel,
    NirThresholdModel,
    water_scene,
    write_raster,
)

BANDS = ["B2", "B3", "B4", "B8"]


def _run(path, out_dir, opts=None, spec=None, reporter=None, predictor=None):
    opts = opts or SegmentOptions()
    spec = spec or InputSpec(tile_size=64)
    out_dir.mkdir(exist_ok=True)
    plan = OutputPlan.for_input(path, out_dir, opts)
    with open_raster(path, BANDS) as src:
        return segment_source(
            src,
            predictor or TilePredictor(NirThresholdModel(), "cpu", 8),
            spec,
            opts,
            plan,
            reporter or NullReporter(),
        )


def _disc(h=150, w=170, cx=80.3, cy=70.6, r=40.0):
    rows, cols = np.mgrid[0:h, 0:w] + 0.5
    return np.hypot(cols - cx, rows - cy) < r


def test_outputs_match_truth_with_nodata_and_crs(tmp_path):
    water = _disc()
    data = water_scene(water)
    data[:, :, :12] = 0  # nodata strip on the left
    src = write_raster(tmp_path / "scene.tif", data, nodata=0)
    opts = SegmentOptions(probability=True, shoreline="both", polygons=True, quicklook=True)
    buf = io.StringIO()
    done = _run(src, tmp_path / "out", opts, reporter=JsonReporter(out=buf, err=io.StringIO()))
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "scene_water.tif",
            "scene_probability.tif",
            "scene_shoreline.gpkg",
            "scene_shoreline.shp",
            "scene_shoreline.shx",
            "scene_shoreline.dbf",
            "scene_shoreline.prj",
            "scene_water_polygons.gpkg",
            "scene_quicklook.png",
        ]
    )  # and no temporary folder left behind
    with rasterio.open(out / "scene_water.tif") as m, rasterio.open(src) as s:
        mask = m.read(1)
        assert m.dtypes[0] == "uint8" and m.nodata == 255
        assert m.crs == s.crs and m.transform == s.transform and m.shape == s.shape
    truth = water.astype(np.uint8)
    truth[:, :12] = 255
    np.testing.assert_array_equal(mask, truth)
    with rasterio.open(out / "scene_probability.tif") as p:
        prob = p.read(1)
        assert p.dtypes[0] == "float32"
    assert np.isnan(prob[:, :12]).all() and (prob[water] > 0.9).all()

    ds = ogr.Open(str(out / "scene_shoreline.gpkg"))
    layer = ds.GetLayerByName("shoreline")
    assert layer.GetGeomType() == ogr.wkbLineString
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32632"
    feats = list(layer)
    assert len(feats) == 1 == done["shoreline_features"]
    f = feats[0]
    assert f.GetField("source") == str(src)
    # a 40-px (400 m) disc with hard pixel edges: marching squares chamfers the staircase,
    # which is ~5 % longer than the true circle 2 pi 400 m (never shorter)
    assert 1.0 < f.GetField("length_m") / (2 * np.pi * 400 / 0.9996) < 1.08
    shp = ogr.Open(str(out / "scene_shoreline.shp"))
    assert shp.GetLayer(0).GetFeatureCount() == 1
    poly_ds = ogr.Open(str(out / "scene_water_polygons.gpkg"))  # keep: layers die with it
    poly = poly_ds.GetLayerByName("water")
    assert poly.GetFeatureCount() == 1
    poly_feat = next(iter(poly))
    area = poly_feat.GetGeometryRef().GetArea()
    assert area == pytest.approx(water.sum() * 100.0)
    from PIL import Image

    with Image.open(out / "scene_quicklook.png") as im:
        assert im.size == (170, 150) and im.mode == "RGB"
        px = np.asarray(im)
    assert px[70, 80, 2] > px[70, 80, 0]  # water overlaid blue
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "start" and names.count("output") == 6
    assert events[0]["tiles"] == 3 * 4 and events[0]["width"] == 170
    assert {"infer", "shoreline", "write"} <= {e.get("stage") for e in events}


def test_subpixel_coast_in_geographic_crs(tmp_path):
    """B8 ramps linearly across a coast at column 31.3: the shoreline lies on it in lon/lat."""
    h, w = 80, 90
    x0 = 31.3
    _, cols = np.mgrid[0:h, 0:w] + 0.5
    data = water_scene(cols < x0)
    data[3] = np.clip(1000 + 10 * (cols - x0), 1, None).astype(np.uint16)  # B8 = 0.1 at x0
    d = 1e-4
    tr = Affine(d, 0, 12.0, 0, -d, 42.0)
    src = write_raster(tmp_path / "geo.tif", data, crs=WGS84, transform=tr)
    _run(src, tmp_path / "out")
    ds = ogr.Open(str(tmp_path / "out" / "geo_shoreline.gpkg"))
    layer = ds.GetLayer(0)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "4326"
    (feat,) = list(layer)
    pts = np.array(feat.GetGeometryRef().GetPoints())
    # 10 raw units per px = 0.001 reflectance per px: the crossing is exact to float precision
    np.testing.assert_allclose(pts[:, 0], 12.0 + x0 * d, atol=0.02 * d)
    assert feat.GetField("length_m") == pytest.approx((h - 1) * d * 111_050, rel=3e-3)
    with rasterio.open(tmp_path / "out" / "geo_water.tif") as m:
        assert m.crs.to_epsg() == 4326 and m.transform == tr


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [("uint8", 2e-3), ("uint16", 1e-4), ("int16", 1e-4), ("float32", 1e-4), ("float64", 1.0)],
)
def test_every_input_dtype(tmp_path, dtype, scale):
    water = _disc(70, 90, 40, 30, 20)
    raw = water_scene(water, np.float64) * (1e-4 / scale)  # same reflectance after scaling
    src = write_raster(tmp_path / f"d_{dtype}.tif", raw.astype(dtype))
    _run(
        src,
        tmp_path / "out",
        SegmentOptions(shoreline="none"),
        InputSpec(scale=scale, tile_size=64),
    )
    with rasterio.open(tmp_path / "out" / f"d_{dtype}_water.tif") as m:
        np.testing.assert_array_equal(m.read(1), water.astype(np.uint8))


def test_l2a_offset_subtracts_1000(tmp_path):
    water = _disc(70, 90, 40, 30, 20)
    src = write_raster(tmp_path / "l2a.tif", water_scene(water) + 1000)  # baseline >= 04.00
    _run(src, tmp_path / "a", SegmentOptions(shoreline="none"))
    _run(src, tmp_path / "b", SegmentOptions(shoreline="none", l2a_offset=True))
    with (
        rasterio.open(tmp_path / "a" / "l2a_water.tif") as a,
        rasterio.open(tmp_path / "b" / "l2a_water.tif") as b,
    ):
        assert a.read(1).sum() == 0  # water B8 1300 -> 0.13 reflectance: read as land
        np.testing.assert_array_equal(b.read(1), water.astype(np.uint8))


def test_all_nodata_raster_fails_without_outputs(tmp_path):
    src = write_raster(tmp_path / "empty.tif", np.zeros((4, 80, 80), np.uint16), nodata=0)
    with pytest.raises(UserError, match="no valid pixels"):
        _run(src, tmp_path / "out", SegmentOptions(probability=True))
    assert list((tmp_path / "out").iterdir()) == []


def test_failure_mid_run_leaves_nothing(tmp_path):
    src = write_raster(tmp_path / "s.tif", water_scene(_disc()))

    class Failing(TilePredictor):
        calls = 0

        def __call__(self, tiles):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("boom")
            return super().__call__(tiles)

    with pytest.raises(RuntimeError, match="boom"):
        _run(src, tmp_path / "out", predictor=Failing(NirThresholdModel(), "cpu", 2))
    assert list((tmp_path / "out").iterdir()) == []


def test_done_reports_water_fraction_and_warns_when_implausible(tmp_path):
    water = _disc()
    src = write_raster(tmp_path / "scene.tif", water_scene(water))
    err = io.StringIO()
    done = _run(src, tmp_path / "out", reporter=JsonReporter(out=io.StringIO(), err=err))
    assert done["water_fraction"] == pytest.approx(water.mean(), abs=1e-6)
    assert done["valid_pixels"] == water.size
    assert "warning" not in err.getvalue()

    all_water = write_raster(tmp_path / "sea.tif", water_scene(np.ones((64, 64), bool)))
    err = io.StringIO()
    done = _run(all_water, tmp_path / "out2", reporter=JsonReporter(out=io.StringIO(), err=err))
    assert done["water_fraction"] == 1.0
    assert "warning: sea.tif: 100.0% of the valid pixels are water" in err.getvalue()

    dry = write_raster(tmp_path / "dry.tif", water_scene(np.zeros((64, 64), bool)))
    err = io.StringIO()
    _run(dry, tmp_path / "out3", reporter=JsonReporter(out=io.StringIO(), err=err))
    assert "warning: dry.tif: no water found at all" in err.getvalue()


def test_staging_left_by_a_killed_run_is_removed_at_the_next_start(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID is now free: the owner of a killed run's folder
    stale = out / ".waterseg-scene-deadbeef"
    stale.mkdir()
    (stale / ".owner").write_text(str(dead.pid))
    (stale / "scene_water.tif").write_bytes(b"half-written")
    live = out / ".waterseg-other-livelive"
    live.mkdir()
    (live / ".owner").write_text(str(os.getpid()))  # a run still in progress
    src = write_raster(tmp_path / "scene.tif", water_scene(_disc()))
    err = io.StringIO()
    _run(src, out, reporter=JsonReporter(out=io.StringIO(), err=err))
    assert not stale.exists() and live.is_dir()
    assert "removed .waterseg-scene-deadbeef" in err.getvalue()
    assert sorted(p.name for p in out.iterdir()) == [
        ".waterseg-other-livelive",
        "scene_shoreline.gpkg",
        "scene_water.tif",
    ]


def test_staging_of_a_run_killed_during_this_one_is_removed_when_this_one_commits(tmp_path):
    # A batch worker killed mid-scene: its segment process may still be exiting when the
    # scene's retry starts, so the retry's start keeps its folder; the retry's commit removes it.
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    dying = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    left = out / ".waterseg-scene-killedxx"
    left.mkdir()
    (left / ".owner").write_text(str(dying.pid))

    class KillOnStart(JsonReporter):
        def event(self, name, **fields):
            if name == "start":  # after the start-time sweep, which saw it alive
                assert left.is_dir()
                dying.kill()
                dying.wait()
            super().event(name, **fields)

    err = io.StringIO()
    src = write_raster(tmp_path / "scene.tif", water_scene(_disc()))
    _run(src, out, reporter=KillOnStart(out=io.StringIO(), err=err))
    assert not left.exists()
    assert "removed .waterseg-scene-killedxx" in err.getvalue()


def test_staging_of_another_host_is_kept_until_it_is_a_day_old(tmp_path):
    # Batch workers on several machines may share an output folder: a PID of another host
    # says nothing here, so its folder is left alone (its scene may still be running there)
    # until it is older than any scene takes.
    import socket
    import subprocess
    import sys
    import time

    from backend.segment.pipeline import REMOTE_STAGING_MAX_AGE_S, Staging

    remote = tmp_path / ".waterseg-far-abcdefgh"
    remote.mkdir()
    (remote / ".owner").write_text(f"999999@not-{socket.gethostname()}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID is now free
    local_dead = tmp_path / ".waterseg-near-abcdefgh"
    local_dead.mkdir()
    (local_dead / ".owner").write_text(f"{dead.pid}@{socket.gethostname()}")
    assert Staging.remove_stale(tmp_path) == [local_dead]
    assert remote.is_dir()
    old = time.time() - REMOTE_STAGING_MAX_AGE_S - 60
    os.utime(remote, (old, old))
    assert Staging.remove_stale(tmp_path) == [remote]
    own = Staging(tmp_path, "mine")  # what a run writes: this PID at this host
    assert (own.dir / ".owner").read_text() == f"{os.getpid()}@{socket.gethostname()}"
    assert Staging.remove_stale(tmp_path) == []
    own.discard()


def test_zero_filled_border_without_nodata_is_nodata_unless_asked(tmp_path):
    water = _disc()
    data = water_scene(water)
    data[:, :, :12] = 0  # a gdalwarp-style black border, no nodata value declared
    src = write_raster(tmp_path / "warped.tif", data)
    done = _run(src, tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "warped_water.tif") as m:
        mask = m.read(1)
    assert (mask[:, :12] == 255).all()
    truth = water.astype(np.uint8)
    np.testing.assert_array_equal(mask[:, 12:], truth[:, 12:])
    assert done["shoreline_features"] == 1  # the disc only, nothing along the border

    # --zero-is-data: the border is read as data (dark: this model calls it water)
    opts = SegmentOptions()
    out = tmp_path / "out2"
    out.mkdir()
    with open_raster(src, BANDS, zero_is_data=True) as source:
        assert source.nodata_note is None
        segment_source(
            source,
            TilePredictor(NirThresholdModel(), "cpu", 8),
            InputSpec(tile_size=64),
            opts,
            OutputPlan.for_input(src, out, opts),
            NullReporter(),
        )
    with rasterio.open(out / "warped_water.tif") as m:
        assert (m.read(1)[:, :12] == 1).all()


def test_zero_rule_skips_8_bit_rasters_and_declared_nodata(tmp_path):
    rgb = np.full((3, 40, 40), 7, np.uint8)
    rgb[:, :5] = 0  # clipped dark water in a stretched 8-bit render is real
    with open_raster(write_raster(tmp_path / "rgb.tif", rgb), BANDS[:3]) as source:
        assert not source.zero_is_nodata
        assert source.read_strip(0, 40)[1].all()
    with open_raster(write_raster(tmp_path / "nd.tif", water_scene(_disc()), nodata=0), BANDS) as s:
        assert not s.zero_is_nodata  # GDAL's own nodata mask decides
    with open_raster(write_raster(tmp_path / "u16.tif", water_scene(_disc())), BANDS) as s:
        assert s.zero_is_nodata and "0 in every band" in s.nodata_note


# --- On arrays ---------------------------------------------------------------------------


def test_constant_model_gives_seamless_constant_mosaic():
    x = np.random.default_rng(0).random((4, 600, 500)).astype(np.float32)
    prob = predict_array(x, ConstantModel(0.3), tile=128, overlap=0.25)
    expected = 1 / (1 + np.exp(-0.3))
    assert prob.shape == (600, 500)
    np.testing.assert_allclose(prob, expected, rtol=1e-6)


def test_translation_equivariant_model_same_with_and_without_tiling():
    """A 3x3 conv (receptive field radius 1): tiled + blended == one big forward pass."""
    torch.manual_seed(0)
    model = ConvModel(4, seed=3)
    x = np.random.default_rng(1).normal(size=(4, 600, 500)).astype(np.float32)
    tiled = predict_array(x, model, tile=128, overlap=0.25, batch_size=3)
    with torch.inference_mode():
        whole = torch.softmax(model(torch.from_numpy(x)[None]), 1)[0, 1].numpy()
    r = 2  # beyond the receptive field of the raster border
    np.testing.assert_allclose(tiled[r:-r, r:-r], whole[r:-r, r:-r], atol=2e-5)
    # At the raster border both see the same zero padding, so the whole raster agrees too:
    assert np.abs(tiled - whole).max() < 2e-5


def test_raster_smaller_than_a_tile_is_padded_and_cropped():
    water = np.zeros((4, 37, 50), np.float32)
    water[3] = 0.3
    water[3, :, :20] = 0.02  # left part water (B8 reflectance 0.02)
    prob = predict_array(water, NirThresholdModel(), tile=64)
    assert prob.shape == (37, 50)
    assert (prob[:, :20] > 0.9).all() and (prob[:, 20:] < 0.1).all()


def test_nodata_pixels_are_nan_and_empty_tiles_skipped():
    x = np.full((4, 300, 300), 0.3, np.float32)
    valid = np.ones((300, 300), bool)
    valid[:, :150] = False  # left half nodata: the tiles there hold no valid pixel
    x[:, 10, 200] = np.nan  # a NaN pixel is nodata too
    calls = []

    class Counting(TilePredictor):
        def __call__(self, tiles):
            calls.append(tiles.shape[0])
            return super().__call__(tiles)

    pred = Counting(NirThresholdModel(), "cpu", batch_size=64)
    blocks = list(
        iter_probability_rows(
            ArrayReader(x, valid), pred, lambda r: r.astype(np.float32), tile=64, overlap=0.25
        )
    )
    prob = np.concatenate([b.prob for b in blocks])
    assert prob.shape == (300, 300)
    assert np.isnan(prob[:, :150]).all()
    assert np.isnan(prob[10, 200])
    assert (prob[:, 151:][~np.isnan(prob[:, 151:])] < 0.1).all()
    grid = TileGrid(300, 300, 64, 0.25)
    skipped = sum(1 for x0 in grid.xs if x0 + 64 <= 150) * len(grid.ys)
    assert sum(calls) == grid.count - skipped
    assert skipped > 0


def test_streaming_rows_arrive_in_order_and_cover_the_raster_once():
    x = np.random.default_rng(2).random((4, 333, 70)).astype(np.float32)
    rows = [
        (b.row0, b.prob.shape[0])
        for b in iter_probability_rows(
            ArrayReader(x), TilePredictor(ConstantModel(), "cpu"), lambda r: r, tile=64
        )
    ]
    starts = [r for r, _ in rows]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(h for _, h in rows) == 333
    assert all(h <= 64 for _, h in rows)  # never more than one tile row held


def test_cancel_stops_between_batches():
    x = np.zeros((4, 256, 256), np.float32)
    it = iter_probability_rows(
        ArrayReader(x),
        TilePredictor(ConstantModel(), "cpu", 1),
        lambda r: r,
        tile=64,
        cancelled=lambda: True,
    )
    with pytest.raises(Cancelled):
        next(it)


class _EdgeAwareModel:
    """A numpy 'model' whose output depends on where a pixel sits in its tile (a box blur
    with zero padding): a tile placed one pixel off, or blended with the wrong weight, changes
    the mosaic. Deterministic per tile, whatever the batch."""

    batch_size = 3

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        m = tiles.mean(axis=1)
        padded = np.pad(m, ((0, 0), (2, 2), (2, 2)))
        t = m.shape[-1]
        blur = sum(padded[:, i : i + t, j : j + t] for i in range(5) for j in range(5)) / 25
        return (1 / (1 + np.exp(-blur))).astype(np.float32)


def _whole_array_blend(x, valid, model, tile, overlap):
    """The mosaic by its definition: every tile (nodata filled with the tile's own valid band
    means) predicted, weighted and summed into full-size arrays, row by row, left to right."""
    from backend.segment.pipeline import _fill_invalid

    h, w = x.shape[1:]
    grid = TileGrid(h, w, tile, overlap)
    acc = np.zeros((h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for y in grid.ys:
        todo = []
        for x0 in grid.xs:
            v = valid[y : y + tile, x0 : x0 + tile]
            if v.any():
                t = x[:, y : y + tile, x0 : x0 + tile].copy()
                _fill_invalid(t, v)
                todo.append((x0, t))
        for b in range(0, len(todo), model.batch_size):
            chunk = todo[b : b + model.batch_size]
            for (x0, _), p in zip(chunk, model(np.stack([t for _, t in chunk])), strict=True):
                wt = tile_weight(tile, overlap, y == 0, y + tile >= h, x0 == 0, x0 + tile >= w)
                acc[y : y + tile, x0 : x0 + tile] += wt * p
                wsum[y : y + tile, x0 : x0 + tile] += wt
    out = np.full((h, w), np.nan, np.float32)
    np.divide(acc, wsum, out=out, where=wsum > 0)
    out[~valid] = np.nan
    return out


@pytest.mark.parametrize("block_tiles", [1, 2, 3, 8, 1000])
def test_blocks_of_tiles_blend_bit_for_bit_like_the_whole_array(monkeypatch, block_tiles):
    # Issue 14: reading in blocks of tiles (memory flat in the raster width) must not change a
    # single bit of the mosaic, whatever the block width, with and without nodata.
    import backend.segment.pipeline as pipeline

    monkeypatch.setattr(pipeline, "BLOCK_TILES", block_tiles)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 230, 410)).astype(np.float32)
    x += np.linspace(-3, 3, 410, dtype=np.float32)
    valid = np.ones((230, 410), bool)
    valid[:, :70] = False  # a nodata border: whole tiles skipped, others partly filled
    valid[150:, 300:] = False
    model = _EdgeAwareModel()
    want = _whole_array_blend(x, valid, model, 64, 0.25)
    got = np.concatenate(
        [
            b.prob
            for b in iter_probability_rows(
                ArrayReader(x, valid), model, lambda r: r.astype(np.float32), tile=64
            )
        ]
    )
    np.testing.assert_array_equal(got, want)  # bit for bit, NaN where nodata
    assert np.isfinite(got[valid]).all()


def test_read_blocks_cover_each_tile_once_and_share_only_the_overlap():
    from backend.segment.pipeline import BLOCK_TILES, read_blocks

    xs = tile_origins(10980, 256, 0.25)
    blocks = read_blocks(xs, 256, 10980)
    assert [x for _, _, group in blocks for x in group] == xs
    assert all(len(group) <= BLOCK_TILES for _, _, group in blocks)
    assert blocks[0][0] == 0 and blocks[-1][1] == 10980
    for (c0, c1, group), (n0, _, _) in zip(blocks, blocks[1:], strict=False):
        assert c1 == group[-1] + 256 and c0 == group[0]
        assert 0 < c1 - n0 <= 256  # the next block starts inside this one's last tile
    assert max(c1 - c0 for c0, c1, _ in blocks) <= BLOCK_TILES * 256
