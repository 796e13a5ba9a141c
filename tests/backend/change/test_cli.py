"""``python -m backend change`` on generated dated scenes (the batch's outputs): every file,
the statistics of a lake shrinking at a known rate, cloud as missing, flagged and undated
scenes reported, the water-level correction."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from backend.change.cli import main
from backend.core.errors import UserError
from tests.backend.change.scenes import write_series

DATES = ["2016-01-01", "2017-01-01", "2018-01-01", "2019-01-01", "2020-01-01", "2021-01-01"]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    quality = {
        "2019-01-01": {
            "cloud_fraction": 0.9,
            "shadow_fraction": 0.0,
            "method": "mndwi-adaptive",
            "threshold": 0.1,
            "flags": ["low-contrast"],
            "warnings": ["cloudy"],
        }
    }
    return write_series(out, [*DATES, "lake"], rate=8.0, cloud_on="2018-01-01", quality=quality)


def test_change_writes_every_output(series, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "--batch-dir",
            str(series),
            "--out-dir",
            str(out),
            "--spacing",
            "100",
            "--length",
            "200",
            "--min-baseline-length",
            "100",
            "--progress",
            "json",
            "--plots",
            "all",
        ]
    )
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = {e["kind"] for e in events if e["event"] == "output"}
    assert {
        "transects",
        "positions",
        "shorelines",
        "positions_wide",
        "positions_long",
        "rates",
        "outliers",
        "report_json",
        "report_html",
        "overview_png",
        "plots_dir",
        "transects_style",
    } <= kinds
    assert events[-1]["event"] == "finished" and events[-1]["corrected"] is False
    report = json.loads((out / "change_report.json").read_text())
    assert (
        report["skipped_scenes"][0]["scene"] == "lake"
        and "undated" in report["skipped_scenes"][0]["reason"]
    )
    assert report["dates_flagged"] == ["2019-01-01"]  # cloud_fraction 0.9 > 0.5
    assert "not corrected" in " ".join(report["notes"])
    rates = list(csv.DictReader((out / "rates.csv").read_text().splitlines()))
    n = len(rates)
    assert n == pytest.approx(2 * np.pi * 500 / 100, abs=2)
    lrr = np.array([float(r["lrr"]) for r in rates])
    # the lake shrinks 8 m/yr: the shore moves 8 m/yr towards the water (positive)
    assert np.allclose(lrr, 8.0, atol=0.6)
    # the north-east quarter was cloud on 2018-01-01: missing there, not zero
    long = list(csv.DictReader((out / "positions_long.csv").read_text().splitlines()))
    on_cloud = [r for r in long if r["date"] == "2018-01-01" and r["status"] == "unseen"]
    assert 0 < len(on_cloud) < n and all(r["position_m"] == "" for r in on_cloud)
    assert {r["status"] for r in long if r["date"] == "2019-01-01"} == {"excluded:cloudy"}
    from osgeo import ogr

    ds = ogr.Open(str(out / "transects.gpkg"))
    layer = ds.GetLayer(0)
    names = [
        layer.GetLayerDefn().GetFieldDefn(i).GetName()
        for i in range(layer.GetLayerDefn().GetFieldCount())
    ]
    assert {
        "transect_id",
        "sce",
        "nsm",
        "epr",
        "lrr",
        "lrr_r2",
        "lrr_ci95",
        "wlr",
        "n_dates",
    } <= set(names)
    assert layer.GetFeatureCount() == n
    ds = None  # noqa: F841 - a layer dies with its dataset: keep one alive at a time
    shores = ogr.Open(str(out / "shorelines.gpkg"))
    feats = {
        f.GetField("date"): tuple(
            f.GetField(k) for k in ("cloud_fraction", "method", "batch_flags", "left_out_for")
        )
        for f in shores.GetLayer(0)
    }
    shores = None  # noqa: F841
    assert feats["2019-01-01"] == (0.9, "mndwi-adaptive", "low-contrast", "cloudy")
    assert feats["2016-01-01"][3] == ""  # used: left out for nothing
    assert len(list((out / "plots").glob("transect_*.png"))) == n
    assert "Shoreline change" in (out / "change_report.html").read_text()


def test_water_level_correction(series, tmp_path):
    # levels rising 0.4 m/yr on a 0.05 slope: shift = (level - mean) / 0.05 = +8 m/yr, which
    # doubles the measured rate of 8 m/yr
    levels = tmp_path / "levels.csv"
    levels.write_text("date,level\n2015-12-01,-0.0366\n2021-02-01,2.0\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "--batch-dir",
                str(series),
                "--out-dir",
                str(out),
                "--spacing",
                "200",
                "--length",
                "200",
                "--min-baseline-length",
                "100",
                "--progress",
                "none",
                "--plots",
                "none",
                "--levels",
                str(levels),
                "--slope",
                "0.05",
            ]
        )
        == 0
    )
    rates = list(csv.DictReader((out / "rates.csv").read_text().splitlines()))
    lrr = np.array([float(r["lrr"]) for r in rates])
    level_rate = 2.0366 / (
        (np.datetime64("2021-02-01") - np.datetime64("2015-12-01")).astype(float) / 365.2425
    )
    assert np.allclose(lrr, 8.0 + level_rate / 0.05, atol=0.7)
    assert all(r["corrected"] == "1" for r in rates)
    # levels that end before the last date: that date has no level, so no corrected position
    levels.write_text("date,level\n2015-12-01,0.0\n2020-06-01,1.0\n")
    argv = ["--batch-dir", str(series), "--out-dir", str(out), "--spacing", "200"]
    argv += ["--levels", str(levels), "--slope", "0.05", "--progress", "none", "--plots", "none"]
    assert main(argv) == 0
    long = list(csv.DictReader((out / "positions_long.csv").read_text().splitlines()))
    last = [r for r in long if r["date"] == "2021-01-01"]
    assert last and all(r["status"] == "no_level" and r["position_m"] == "" for r in last)
    assert all(r["measured_m"] != "" for r in last)  # measured all the same, and kept


def test_user_errors(tmp_path, series):
    with pytest.raises(UserError, match="batch-dir"):
        main(["--out-dir", str(tmp_path)])
    with pytest.raises(UserError, match="go together"):
        main(["--batch-dir", str(series), "--out-dir", str(tmp_path), "--slope", "0.1"])


def test_user_transects_keep_their_ids_and_direction(series, tmp_path):
    from osgeo import ogr, osr

    from tests.backend.change.scenes import CENTRE

    cx, cy = CENTRE
    path = tmp_path / "mine.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    ref = osr.SpatialReference()
    ref.ImportFromEPSG(32632)
    layer = ds.CreateLayer("mine", ref, ogr.wkbLineString)
    layer.CreateField(ogr.FieldDefn("transect_id", ogr.OFTInteger))
    for tid, (x0, y0, x1, y1) in {
        7: (cx + 650, cy, cx + 350, cy),
        9: (cx, cy - 650, cx, cy - 350),
    }.items():
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkt(f"LINESTRING ({x0} {y0}, {x1} {y1})"))
        feat.SetField("transect_id", tid)
        layer.CreateFeature(feat)
    ds = None  # noqa: F841
    out = tmp_path / "out"
    argv = ["--batch-dir", str(series), "--out-dir", str(out), "--transects", str(path)]
    assert main([*argv, "--progress", "none", "--plots", "none"]) == 0
    rates = list(csv.DictReader((out / "rates.csv").read_text().splitlines()))
    assert [r["transect_id"] for r in rates] == ["7", "9"]
    # measured from the first vertex (land): 650 m minus the radius, growing 8 m/yr
    assert np.allclose([float(r["lrr"]) for r in rates], 8.0, atol=0.6)
