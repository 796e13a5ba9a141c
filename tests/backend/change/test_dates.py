"""Acquisition dates from tags, product names, band descriptions, file names and a CSV;
an undated or ambiguous scene is reported, never guessed."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from backend.change.dates import date_from_text, decimal_years, load_date_csv, scene_date
from backend.core.errors import UserError


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2017-01-04.tif", datetime(2017, 1, 4)),
        ("bracciano_20170104.tif", datetime(2017, 1, 4)),
        (
            "S2A_MSIL1C_20170105T100412_N0204_R122_T32TQM_20170105T100409.SAFE",
            datetime(2017, 1, 5, 10, 4, 12),
        ),
        ("T32TQM_20190625T100031_B04_10m.jp2", datetime(2019, 6, 25, 10, 0, 31)),
        ("LC08_L1TP_191031_20170812_20170824_01_T1_B5.TIF", datetime(2017, 8, 12)),
        ("2018:09:28 10:20:31", datetime(2018, 9, 28, 10, 20, 31)),
        ("2020-06-27T10:15", datetime(2020, 6, 27, 10, 15)),
    ],
)
def test_dates_in_text(text, want):
    assert date_from_text(text) == (want, "")


def test_no_date_and_ambiguous_dates_are_not_guessed():
    assert date_from_text("lake.tif") == (None, "")
    assert date_from_text("scene_12345678.tif")[0] is None  # not a valid calendar day
    dt, problem = date_from_text("mosaic_2017-01-04_2017-02-04.tif")
    assert dt is None and "ambiguous" in problem


def _tif(path, tags=None, band_desc=None, band_tags=None):
    from osgeo import gdal

    ds = gdal.GetDriverByName("GTiff").Create(str(path), 4, 4, 1, gdal.GDT_Byte)
    if tags:
        ds.SetMetadata(tags)
    if band_desc:
        ds.GetRasterBand(1).SetDescription(band_desc)
    if band_tags:
        ds.GetRasterBand(1).SetMetadata(band_tags)
    ds = None
    return str(path)


def test_metadata_before_file_name(tmp_path):
    p = _tif(tmp_path / "2020-01-01.tif", tags={"TIFFTAG_DATETIME": "2019:06:25 10:00:31"})
    d = scene_date(p)
    assert d.date == datetime(2019, 6, 25, 10, 0, 31) and d.source == "metadata:TIFFTAG_DATETIME"
    p = _tif(
        tmp_path / "a.tif",
        tags={"PRODUCT_URI": "S2B_MSIL2A_20210712T100029_N0301_R122_T32TQM_20210712T124033.SAFE"},
    )
    assert scene_date(p).date == datetime(2021, 7, 12, 10, 0, 29)
    p = _tif(tmp_path / "b.tif", tags={"DATE_ACQUIRED": "2017-08-12"})
    assert (scene_date(p).date, scene_date(p).source) == (
        datetime(2017, 8, 12),
        "metadata:DATE_ACQUIRED",
    )
    p = _tif(tmp_path / "c.tif", band_desc="date=2018-04-21")
    assert (scene_date(p).date, scene_date(p).source) == (datetime(2018, 4, 21), "band:1")
    p = _tif(tmp_path / "d.tif", band_tags={"date": "20180421"})
    assert scene_date(p).date == datetime(2018, 4, 21)
    p = _tif(tmp_path / "scene_2016-07-18.tif")
    assert (scene_date(p).date, scene_date(p).source) == (datetime(2016, 7, 18), "name")


def test_undated_scene_is_reported(tmp_path):
    d = scene_date(_tif(tmp_path / "lake.tif"))
    assert d.date is None and "no date" in d.problem


def test_user_csv_wins(tmp_path):
    p = _tif(tmp_path / "2020-01-01.tif", tags={"TIFFTAG_DATETIME": "2019:06:25 10:00:31"})
    csv = tmp_path / "dates.csv"
    csv.write_text("scene,date\n2020-01-01.tif,2015-03-02\nother,2014-01-01\n")
    user = load_date_csv(csv)
    assert scene_date(p, user).date == datetime(2015, 3, 2) and scene_date(p, user).source == "csv"
    csv.write_text("scene,date\nx.tif,yesterday\n")
    with pytest.raises(UserError, match="line 2"):
        load_date_csv(csv)


def test_decimal_years():
    y = decimal_years([datetime(2016, 1, 1), datetime(2016, 7, 2), datetime(2017, 1, 1, 12)])
    assert y[0] == 2016.0
    assert y[1] == pytest.approx(2016 + 183 / 366)  # 2016 is a leap year
    assert y[2] == pytest.approx(2017 + 0.5 / 365)
    assert isinstance(y, np.ndarray)
