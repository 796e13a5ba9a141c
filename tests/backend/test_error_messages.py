"""Each user error names its cause and its fix, in one line: the messages rewritten when every
error path was checked once more (issue 22 item 4). Rasters and vectors are made here with a
real CRS; segment and plan run as the real CLI subprocess, change in process as its own tests
do."""

from __future__ import annotations

import numpy as np
import pytest

from backend.change.cli import main as change_main
from backend.core.errors import UserError
from tests.backend.change.scenes import CENTRE, write_series
from tests.backend.rasters import run_backend, write_raster


def _one_error_line(*args) -> str:
    """Run ``python -m backend ARGS``; it must fail as a user error (exit 2) with one line."""
    r = run_backend(*args)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("waterseg: error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# ---- segment: a raster with no valid pixel says why its pixels are nodata


def test_an_all_zero_raster_names_the_zero_rule_and_its_flag(tmp_path):
    raster = write_raster(tmp_path / "black.tif", np.zeros((4, 40, 40), np.uint16))
    line = _one_error_line("segment", raster, "--out-dir", tmp_path / "out", "--method", "ndwi")
    assert "every pixel is 0 in every band, which reads as nodata" in line
    assert line.endswith("or --zero-is-data if 0 is a real value")


def test_an_all_nodata_raster_names_its_nodata_value(tmp_path):
    raster = write_raster(tmp_path / "seven.tif", np.full((4, 40, 40), 7, np.uint16), nodata=7)
    line = _one_error_line("segment", raster, "--out-dir", tmp_path / "out", "--method", "ndwi")
    assert "(every pixel is nodata (7) or NaN); check the raster's nodata value" in line
    assert "gdal_edit.py -a_nodata" in line


def test_plan_band_names_that_are_not_json_show_an_example():
    line = _one_error_line("plan", "--band-names", "[B2, B3", "--json")
    assert line.endswith("""write e.g. --band-names '["B2", "B3", "B4", "B8"]'""")


def test_an_incomplete_checkpoint_says_which_checkpoint_to_pass(tmp_path):
    import torch

    from backend.core.checkpoint import FORMAT, read_checkpoint

    path = tmp_path / "half.pt"
    torch.save({"format": FORMAT, "format_version": 1, "arch": "unet"}, path)
    with pytest.raises(UserError, match="missing 'state_dict'.*written by 'python -m backend"):
        read_checkpoint(path)


# ---- change: the flag that is wrong and what to pass instead


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("scenes"), ["2016-01-01", "2020-01-01"], rate=8)


def _change_error(series, tmp_path, *extra) -> str:
    argv = ["--batch-dir", str(series), "--out-dir", str(tmp_path / "out"), "--progress", "none"]
    with pytest.raises(UserError) as info:
        change_main([*argv, "--plots", "none", *map(str, extra)])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_levels_and_slope_say_which_one_is_missing(series, tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text("date,level\n2016-01-01,1.0\n2020-01-01,2.0\n")
    assert _change_error(series, tmp_path, "--slope", "0.05").startswith(
        "--slope without --levels: they go together"
    )
    assert _change_error(series, tmp_path, "--levels", levels).startswith(
        "--levels without --slope: they go together"
    )
    missing = _change_error(series, tmp_path, "--levels", tmp_path / "nope.csv", "--slope", "0.05")
    assert missing.endswith("nope.csv not found; pass --levels a CSV with rows 'date,level' "
                            "(YYYY-MM-DD, metres)")  # fmt: skip
    comma = _change_error(series, tmp_path, "--levels", levels, "--slope", "0,05")
    assert comma.startswith("0,05 not found; pass --slope a number (rise over run, e.g. 0.05)")
    levels.write_text("date,level\n")
    assert _change_error(series, tmp_path, "--levels", levels, "--slope", "0.05").endswith(
        "has no 'date,level' rows; add one per date, e.g. 2020-06-01,312.4"
    )


def test_transect_geometry_errors_name_their_flags(series, tmp_path):
    assert _change_error(series, tmp_path, "--spacing", "0", "--length", "200") == (
        "--spacing 0 and --length 200: both must be positive (metres)"
    )
    assert _change_error(series, tmp_path, "--length", "200", "--landward", "500") == (
        "--landward 500 m must lie within --length 200 m; pass a value from 0 to 200 "
        "(default half)"
    )


def _transects(path, lines: dict[int, list[tuple[float, float]]]):
    from osgeo import ogr, osr

    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ref = osr.SpatialReference()
    ref.ImportFromEPSG(32632)
    layer = ds.CreateLayer("mine", ref, ogr.wkbLineString)
    layer.CreateField(ogr.FieldDefn("transect_id", ogr.OFTInteger))
    for tid, points in lines.items():
        geom = ogr.Geometry(ogr.wkbLineString)
        for x, y in points:
            geom.AddPoint_2D(x, y)
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(geom)
        feat.SetField("transect_id", tid)
        layer.CreateFeature(feat)
    ds = None  # noqa: F841 (closes the file)
    return path


def test_user_transects_errors_say_which_transect_and_how_to_draw_it(series, tmp_path):
    cx, cy = CENTRE
    bad = _transects(tmp_path / "bad.gpkg", {7: [(cx + 650, cy), (cx + 350, cy)],
                                             9: [(cx, cy - 650), (cx, cy - 650)]})  # fmt: skip
    assert _change_error(series, tmp_path, "--transects", bad) == (
        "transect 9 of --transects starts and ends at the same point; redraw it from land to "
        "water"
    )
    text = tmp_path / "notes.gpkg"
    text.write_text("not a vector file")
    assert _change_error(series, tmp_path, "--transects", text).endswith(
        "; pass a GeoPackage, Shapefile or another OGR vector file"
    )


def test_too_few_dated_scenes_point_to_the_log_and_to_dates(tmp_path):
    one = write_series(tmp_path / "scenes", ["2016-01-01", "lake"], rate=8)
    message = _change_error(one, tmp_path)
    assert message.startswith("1 dated scene(s) with a shoreline: change needs two or more")
    assert "or undated, which --dates CSV dates)" in message


def test_a_transects_file_without_lines_says_how_to_draw_them(series, tmp_path):
    cx, cy = CENTRE
    dots = _transects(tmp_path / "dots.gpkg", {1: [(cx, cy)]})
    assert _change_error(series, tmp_path, "--transects", dots) == (
        "the --transects file has no line with two or more vertices; draw each transect as a "
        "line from land to water"
    )
