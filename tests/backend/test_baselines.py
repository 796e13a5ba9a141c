"""Classical water indices and Otsu's threshold; expected values worked out by hand."""

import numpy as np
import pytest

from backend.baselines import (
    INDEX_BANDS,
    OTSU_CLAMP,
    clamped_otsu_threshold,
    ndwi,
    ndwi_water_mask,
    otsu_from_histogram,
    otsu_threshold,
    water_index,
)

# Two typical reflectance spectra (0..1): clear water, and vegetated land.
WATER = {"B2": 0.05, "B3": 0.04, "B4": 0.03, "B8": 0.02, "B11": 0.01, "B12": 0.005}
LAND = {"B2": 0.04, "B3": 0.08, "B4": 0.06, "B8": 0.30, "B11": 0.20, "B12": 0.10}


def _pixels(*spectra: dict[str, float]) -> dict[str, np.ndarray]:
    """Band name -> (1, n) float32, one column per spectrum."""
    return {b: np.array([[s[b] for s in spectra]], dtype=np.float32) for b in WATER}


def test_ndwi_by_hand():
    # (0.3 - 0.1) / (0.3 + 0.1) = 0.5
    out = water_index("ndwi", {"B3": np.array([0.3]), "B8": np.array([0.1])})
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(0.5)


def test_mndwi_by_hand():
    # (0.1 - 0.3) / (0.1 + 0.3) = -0.5
    out = water_index("mndwi", {"B3": np.array([0.1]), "B11": np.array([0.3])})
    assert out[0] == pytest.approx(-0.5)


def test_awei_sh_by_hand():
    # 0.05 + 2.5 * 0.04 - 1.5 * (0.02 + 0.01) - 0.25 * 0.005 = 0.05 + 0.1 - 0.045 - 0.00125
    out = water_index("awei_sh", _pixels(WATER))
    assert out[0, 0] == pytest.approx(0.10375, abs=1e-6)


def test_wi2015_by_hand():
    # water: 1.7204 + 171*0.04 + 3*0.03 - 70*0.02 - 45*0.01 - 71*0.005
    #      = 1.7204 + 6.84 + 0.09 - 1.4 - 0.45 - 0.355 = 6.4454
    # land:  1.7204 + 13.68 + 0.18 - 21 - 9 - 7.1 = -21.5196
    out = water_index("wi2015", _pixels(WATER, LAND))
    assert out[0, 0] == pytest.approx(6.4454, abs=1e-4)
    assert out[0, 1] == pytest.approx(-21.5196, abs=1e-4)


@pytest.mark.parametrize("method", sorted(INDEX_BANDS))
def test_every_index_separates_water_from_land(method):
    out = water_index(method, _pixels(WATER, LAND))
    assert out.shape == (1, 2) and out.dtype == np.float32
    assert out[0, 0] > 0 > out[0, 1]


@pytest.mark.parametrize("method", sorted(INDEX_BANDS))
def test_every_index_is_nan_on_zero_nodata_and_nan_input(method):
    bands = {b: np.array([0.0, np.nan, WATER[b]], dtype=np.float32) for b in WATER}
    out = water_index(method, bands)
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] > 0


def test_ndwi_nan_where_green_plus_nir_is_zero():
    out = water_index("ndwi", {"B3": np.array([0.0, 0.2]), "B8": np.array([0.0, 0.2])})
    assert np.isnan(out[0]) and out[1] == 0.0


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="ndwi, mndwi, awei_sh, wi2015"):
        water_index("ndvi", _pixels(WATER))


def test_missing_band_is_named():
    with pytest.raises(ValueError, match="missing B11"):
        water_index("mndwi", {"B3": np.ones(2)})


def test_otsu_from_histogram_splits_two_modes_in_the_middle_of_the_gap():
    # Modes in bins 0-1 and 6-7 (edges 0..8). Cutting after bin 1: w0 = 10, mean 1.0,
    # w1 = 6, mean 7.0 -> 10 * 6 * 36 = 2160; after bin 0: 5 * 11 * (0.5 - 4.5)^2 = 880.
    # Every cut in the empty gap (edges 2..6) ties at 2160, so the middle edge, 4.
    counts = np.array([5, 5, 0, 0, 0, 0, 3, 3])
    assert otsu_from_histogram(counts, np.arange(9.0)) == pytest.approx(4.0)


def test_otsu_from_histogram_rejects_empty_and_bad_shapes():
    with pytest.raises(ValueError, match="empty"):
        otsu_from_histogram(np.zeros(4), np.arange(5.0))
    with pytest.raises(ValueError, match=r"n \+ 1"):
        otsu_from_histogram(np.ones(4), np.arange(4.0))


def test_otsu_threshold_lands_between_the_modes_and_skips_nan():
    land = np.linspace(-0.6, -0.4, 700)
    water = np.linspace(0.3, 0.5, 300)
    values = np.concatenate([land, water, [np.nan, np.inf]])
    t = otsu_threshold(values, value_range=(-1, 1))
    assert -0.4 < t < 0.3


def test_streamed_histogram_gives_the_same_threshold():
    values = np.concatenate([np.linspace(-0.6, -0.4, 700), np.linspace(0.3, 0.5, 300)])
    edges = np.linspace(-1, 1, 257)
    counts = sum(np.histogram(block, bins=edges)[0] for block in np.array_split(values, 7))
    assert otsu_from_histogram(counts, edges) == otsu_threshold(values, value_range=(-1, 1))


def test_clamped_otsu_threshold_stays_in_range():
    # One mode only (all water): Otsu splits it near 0.9; the clamp brings it to 0.3.
    assert clamped_otsu_threshold(np.linspace(0.85, 0.95, 100)) == OTSU_CLAMP[1]


def test_legacy_ndwi_api_still_works():
    assert ndwi(np.array([3]), np.array([1]))[0] == pytest.approx(0.5)
    image = np.array([[[30, 10]], [[10, 30]]], dtype=np.uint16)  # B3, B8
    assert ndwi_water_mask(image, bands=["B3", "B8"]).tolist() == [[1, 0]]
