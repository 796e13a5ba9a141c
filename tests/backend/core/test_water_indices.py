"""Classical water indices and Otsu's threshold; expected values worked out by hand."""

import numpy as np
import pytest

from backend.core.water_indices import (
    ADAPTIVE_INDICES,
    EDGE_MIN_CONTRAST,
    INDEX_BANDS,
    OTSU_CLAMP,
    clamped_otsu_threshold,
    edge_otsu_threshold,
    method_bands,
    method_index,
    ndwi,
    ndwi_water_mask,
    otsu_from_histogram,
    otsu_threshold,
    sobel_magnitude,
    strong_edges,
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


# ---- per-scene thresholds from the index's edges (the *-adaptive methods) ----------------------


def test_method_bands_and_the_mixed_index_by_hand():
    assert method_bands("ndwi") == ("B3", "B8")
    assert method_bands("mixed-adaptive") == ("B3", "B8", "B11")
    assert method_bands("mndwi-adaptive") == ("B3", "B11")
    assert set(ADAPTIVE_INDICES) == {"mixed-adaptive", "mndwi-adaptive", "ndwi-adaptive"}
    # NDWI (0.3 - 0.1) / 0.4 = 0.5, MNDWI (0.3 - 0.5) / 0.8 = -0.25: mean 0.125
    bands = {"B3": np.array([0.3]), "B8": np.array([0.1]), "B11": np.array([0.5])}
    np.testing.assert_allclose(method_index("mixed-adaptive", bands), [0.125], rtol=1e-6)
    with pytest.raises(ValueError, match="mixed-adaptive"):
        method_bands("ndwi-otsu")


def test_sobel_magnitude_of_a_unit_step_is_half_on_each_side():
    image = np.zeros((5, 6), np.float32)
    image[:, 3:] = 1.0
    grad = sobel_magnitude(image)
    # columns 2 and 3 see (1 + 2 + 1) / 8 of the step; the rest see none (border replicated)
    np.testing.assert_allclose(grad[:, 2:4], 0.5)
    np.testing.assert_allclose(grad[:, [0, 1, 4, 5]], 0.0)


def test_edge_otsu_of_a_step_is_the_middle_of_the_gap_between_the_two_sides():
    index = np.full((80, 40), -0.5, np.float32)
    index[:, 20:] = 0.3
    edges = strong_edges(index)
    assert edges[:, 18:22].all() and not edges[:, :17].any() and not edges[:, 23:].any()
    found = edge_otsu_threshold(index)
    # 256 bins on -1..1 (width 1/128): -0.5 is in bin 64, 0.3 in bin 166; every cut between
    # them ties, so the middle of edges 65 and 166: (-0.4921875 + 0.296875) / 2
    assert found.threshold == pytest.approx(-0.09765625)
    assert found.fallback is None and found.contrast == pytest.approx(0.8)
    assert found.pixels == 80 * 4  # columns 18..21: the gradient columns 19, 20 grown by one


def test_edge_otsu_finds_a_thin_river_that_whole_scene_otsu_splits_land_for():
    rng = np.random.default_rng(1)
    index = rng.normal(-0.35, 0.1, (200, 200)).astype(np.float32)  # textured land
    river = np.zeros((200, 200), bool)
    river[:, 98:101] = True  # 1.5 % water
    index[river] = rng.normal(0.35, 0.03, river.sum())
    found = edge_otsu_threshold(index)
    assert found.fallback is None and -0.1 < found.threshold < 0.1
    water = index > found.threshold
    assert water[river].all() and (water & ~river).sum() < 0.05 * river.sum()
    whole = clamped_otsu_threshold(index)  # no second mode of any weight: it cuts the land
    assert whole == OTSU_CLAMP[0] and (index > whole).sum() > 10 * river.sum()


def test_edge_otsu_falls_back_to_zero_without_a_water_land_edge():
    rng = np.random.default_rng(2)
    texture = rng.uniform(-0.45, -0.35, (64, 64)).astype(np.float32)  # land only
    found = edge_otsu_threshold(texture)
    assert found.threshold == 0.0 and found.contrast < EDGE_MIN_CONTRAST
    assert found.fallback.startswith("edges differ by only")
    flat = np.full((64, 64), -0.4, np.float32)  # no gradient at all
    assert edge_otsu_threshold(flat).fallback == "only 0 edge pixels"
    with pytest.raises(ValueError, match="no finite"):
        edge_otsu_threshold(np.full((4, 4), np.nan, np.float32))


def test_edge_otsu_threshold_is_clamped():
    index = np.full((80, 40), 0.5, np.float32)
    index[:, 20:] = 0.95  # an index whose "land" is already 0.5: Otsu ~0.72, clamped to 0.3
    assert edge_otsu_threshold(index).threshold == OTSU_CLAMP[1]


# ---- NDWI and its water mask, by hand and against the real SNOWED labels -------------------------


def test_ndwi_hand_computed():
    green = np.array([[500, 100], [0, 300]], np.uint16)
    nir = np.array([[100, 500], [0, 300]], np.uint16)
    got = ndwi(green, nir)
    assert got[0, 0] == pytest.approx(400 / 600)
    assert got[0, 1] == pytest.approx(-400 / 600)
    assert np.isnan(got[1, 0])  # 0 + 0: undefined
    assert got[1, 1] == 0.0


def test_ndwi_water_mask_uses_b3_b8_and_marks_undefined_pixels():
    # bands B2 B3 B4 B8; pixel 0: water (B3 > B8), pixel 1: land, pixel 2: nodata, pixel 3: NDWI 0
    image = np.array(
        [
            [[900, 900, 0, 10]],  # B2 (ignored)
            [[500, 100, 0, 300]],  # B3
            [[900, 900, 0, 10]],  # B4 (ignored)
            [[100, 2500, 0, 300]],  # B8
        ],
        np.uint16,
    )
    assert ndwi_water_mask(image).tolist() == [[1, 0, 255, 0]]
    assert ndwi_water_mask(image, nodata_value=None).tolist() == [[1, 0, 0, 0]]
    assert ndwi_water_mask(image, threshold=-0.5).tolist() == [[1, 0, 255, 1]]
    with pytest.raises(ValueError, match="B3 and B8"):
        ndwi_water_mask(image[:3], bands=["B2", "B4", "B8"])


def test_ndwi_agrees_with_real_snowed_labels(snowed_sample):
    """The README's sanity figure: NDWI > 0 matches label == 1 on 97.8 - 99.7 % of pixels."""
    for folder in sorted(snowed_sample.iterdir()):
        image = np.load(folder / "sample_2A.npy")[:, :, [1, 2, 3, 7]].transpose(2, 0, 1)
        label = np.load(folder / "label.npy")
        agreement = (ndwi_water_mask(image) == label).mean()
        assert 0.975 < agreement < 0.998, folder.name
