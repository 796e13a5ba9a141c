"""Opening inputs: band mapping rules, dtypes, nodata/masks/NaN, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest

from backend.core.errors import UserError
from backend.segment.raster_io import (
    map_bands,
    normalise_band_name,
    open_raster,
    parse_bands_option,
)
from tests.backend.rasters import write_raster

MODEL = ["B2", "B3", "B4", "B8"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("B2", "B2"),
        ("B02", "B2"),
        ("b8", "B8"),
        ("B08", "B8"),
        ("B8A", "B8A"),
        ("B8a", "B8A"),
        ("B4, central wavelength 665 nm", "B4"),
        ("B12", "B12"),
        ("QA10", None),
        ("B13", None),
        ("B1A", None),
        ("Band 1", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_band_name(text, name):
    assert normalise_band_name(text) == name


def test_explicit_bands_win():
    m = map_bands(MODEL, 13, ["B1"] * 13, [2, 3, 4, 8])
    assert m.indexes == [2, 3, 4, 8] and m.rule == "explicit"
    with pytest.raises(UserError, match="needs 4"):
        map_bands(MODEL, 13, [None] * 13, [2, 3, 4])
    with pytest.raises(UserError, match="out of range"):
        map_bands(MODEL, 4, [None] * 4, [2, 3, 4, 8])


def test_descriptions_of_the_demo_layout():
    desc = [f"B{i}" for i in range(1, 9)] + [
        "B8A",
        "B9",
        "B10",
        "B11",
        "B12",
        "QA10",
        "QA20",
        "QA60",
    ]
    m = map_bands(MODEL, 16, desc)
    assert m.indexes == [2, 3, 4, 8] and m.rule == "descriptions"
    shuffled = ["B08", "B04", "B03", "B02"]
    assert map_bands(MODEL, 4, shuffled).indexes == [4, 3, 2, 1]


def test_descriptions_missing_a_band_name_it():
    with pytest.raises(UserError, match=r"missing B8.*--bands"):
        map_bands(MODEL, 3, ["B4", "B3", "B2"])


def test_default_layouts():
    assert map_bands(MODEL, 4, [None] * 4).indexes == [1, 2, 3, 4]
    assert map_bands(MODEL, 12, [None] * 12).indexes == [2, 3, 4, 8]  # SNOWED order
    assert map_bands(MODEL, 13, [None] * 13).indexes == [2, 3, 4, 8]  # L1C order
    assert map_bands(["B8A", "B11"], 13, [None] * 13).indexes == [9, 12]
    assert map_bands(["B8A", "B11"], 12, [None] * 12).indexes == [9, 11]


def test_too_few_or_unknown_layout():
    with pytest.raises(UserError, match=r"1 band\(s\).*missing B3, B4, B8"):
        map_bands(MODEL, 1, [None])
    with pytest.raises(UserError, match="--bands"):
        map_bands(MODEL, 7, [None] * 7)


def test_parse_bands_option():
    assert parse_bands_option("2,3,4,8") == [2, 3, 4, 8]
    assert parse_bands_option(" 4, 3 ,2,1") == [4, 3, 2, 1]
    with pytest.raises(UserError, match="--bands"):
        parse_bands_option("B2,B3")


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64"])
def test_every_dtype_reads_with_nodata(tmp_path, dtype):
    data = (np.arange(4 * 20 * 30).reshape(4, 20, 30) % 200 + 1).astype(dtype)
    data[:, 0, :5] = 0
    path = write_raster(tmp_path / f"x_{dtype}.tif", data, nodata=0)
    with open_raster(path, MODEL) as src:
        assert src.dtype == np.dtype(dtype)
        raw, valid = src.read_strip(0, 5)
        assert raw.shape == (4, 5, 30) and raw.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(raw, data[:, :5])
        assert not valid[0, :5].any() and valid[0, 5:].all() and valid[1:].all()
        assert src.georef.crs.to_epsg() == 32632


def test_nan_is_nodata_and_internal_mask_is_honoured(tmp_path):
    import rasterio

    data = np.ones((4, 10, 10), np.float32)
    data[2, 3, 3] = np.nan
    path = write_raster(tmp_path / "nan.tif", data)
    with open_raster(path, MODEL) as src:
        _, valid = src.read_strip(0, 10)
    assert not valid[3, 3] and valid.sum() == 99

    path2 = write_raster(tmp_path / "masked.tif", np.ones((4, 10, 10), np.uint16))
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path2, "r+") as ds:
        m = np.full((10, 10), 255, np.uint8)
        m[:, :4] = 0
        ds.write_mask(m)
    with open_raster(path2, MODEL) as src:
        _, valid = src.read_strip(0, 10)
    assert not valid[:, :4].any() and valid[:, 4:].all()


def test_open_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        open_raster(tmp_path / "nope.tif", MODEL)
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(UserError, match="not a raster"):
        open_raster(tmp_path / "text.tif", MODEL)
    with pytest.raises(UserError, match="folder"):
        open_raster(tmp_path, MODEL)
    one = write_raster(tmp_path / "one.tif", np.ones((1, 8, 8), np.uint16))
    with pytest.raises(UserError, match="missing B3"):
        open_raster(one, MODEL)


def test_truncated_file_fails_at_open(tmp_path):
    full = write_raster(tmp_path / "full.tif", np.ones((4, 512, 512), np.uint16), tiled=True)
    data = full.read_bytes()
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        open_raster(trunc, MODEL)
