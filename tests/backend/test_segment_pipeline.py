"""The whole per-raster pipeline on real GeoTIFFs with a hand-made NIR model: files out."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import ogr

from backend.checkpoint import InputSpec
from backend.errors import UserError
from backend.segment.inference import TilePredictor
from backend.segment.pipeline import OutputPlan, SegmentOptions, segment_source
from backend.segment.progress import JsonReporter, NullReporter
from backend.segment.raster_io import open_raster

from .rasters import WGS84, NirThresholdModel, water_scene, write_raster

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
