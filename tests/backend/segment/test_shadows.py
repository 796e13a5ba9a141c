"""Cloud shadows found from the image (backend.segment.shadows): the offset search by FFT
correlation, the sweep, and the guards that keep water (a lake, a river under a shadow) out."""

from __future__ import annotations

import numpy as np

from backend.segment import shadows as sh

LAND = (0.05, 0.30)  # red, NIR reflectance: vegetation, NDVI 0.71
SHADE = (0.02, 0.05)  # shaded vegetation: dark, NDVI 0.43
WATER = (0.05, 0.02)  # water: red above NIR, NDVI -0.43


def _scene(shape=(60, 70), offset=(5, -7), at=(0, 0)):
    """Two clouds (moved by ``at``) and their shadows ``offset`` cells away, on noisy land."""
    rng = np.random.default_rng(0)
    cloud = np.zeros(shape, bool)
    cloud[10:16, 20:27] = True
    cloud[30:34, 40:46] = True
    cloud = sh.shifted(cloud, *at)
    red = np.full(shape, LAND[0]) + rng.normal(0, 0.002, shape)
    nir = np.full(shape, LAND[1]) + rng.normal(0, 0.01, shape)
    shade = sh.shifted(cloud, *offset) & ~cloud
    red[shade], nir[shade] = SHADE
    return cloud, red, nir, shade


def test_the_correlation_is_the_sum_under_each_shifted_mask():
    cloud, *_ = _scene()
    level = np.random.default_rng(1).uniform(0, 1, cloud.shape)
    sums = sh._correlate(level, cloud, 10)
    for dy, dx in ((5, -7), (-3, 2), (0, 0), (10, 10), (-10, 0)):
        assert np.isclose(sums[dy + 10, dx + 10], (level * sh.shifted(cloud, dy, dx)).sum())


def test_the_offset_is_where_the_shifted_clouds_darken_the_land():
    cloud, red, nir, shade = _scene()
    found = sh.shadow_offset(cloud, nir, red, np.ones_like(cloud), cell_m=40.0)
    assert (found.dy, found.dx) == (5, -7)
    assert abs(found.darkening - SHADE[1] / LAND[1]) < 0.01  # shade NIR over the land median
    # five cells down, seven left: 8.6 cells of 40 m, toward the south-west
    assert np.isclose(found.metres(40.0), 40.0 * np.hypot(5, 7))
    assert np.isclose(found.bearing(), 180 + np.degrees(np.arctan2(7, 5)))
    flags = sh.shadow_flags(cloud, nir, red, np.ones_like(cloud), found)
    np.testing.assert_array_equal(flags, shade)  # the sweep keeps only the dark land


def test_a_lake_does_not_attract_the_offset_and_water_under_a_shadow_stays():
    cloud, red, nir, shade = _scene()
    lake = np.zeros_like(cloud)
    lake[45:60, 0:30] = True  # dark in NIR, darker than the shadows, but water-like
    red[lake], nir[lake] = WATER
    river = np.zeros_like(cloud)
    river[:, 16] = True  # runs through the first cloud's shadow
    red[river & ~cloud], nir[river & ~cloud] = WATER
    found = sh.shadow_offset(cloud, nir, red, np.ones_like(cloud), cell_m=40.0)
    assert (found.dy, found.dx) == (5, -7)
    flags = sh.shadow_flags(cloud, nir, red, np.ones_like(cloud), found)
    assert not (flags & (lake | river)).any()
    np.testing.assert_array_equal(flags, shade & ~river)


def test_no_shadow_without_clouds_or_without_darkening():
    cloud, red, nir, _ = _scene()
    valid = np.ones_like(cloud)
    assert sh.shadow_offset(np.zeros_like(cloud), nir, red, valid, 40.0) is None
    flat_red = np.full(cloud.shape, LAND[0])
    flat_nir = np.full(cloud.shape, LAND[1])  # clouds over land that casts no dark shadow
    assert sh.shadow_offset(cloud, flat_nir, flat_red, valid, 40.0) is None
    assert not sh.shadow_flags(cloud, nir, red, valid, None).any()


def test_the_search_reaches_the_shadow_of_high_clouds_under_a_low_sun():
    # 3 km at 40 m cells is 75 cells: within MAX_OFFSET_M, found on a larger grid
    cloud, red, nir, shade = _scene(shape=(200, 200), offset=(60, -45), at=(20, 100))
    found = sh.shadow_offset(cloud, nir, red, np.ones_like(cloud), cell_m=40.0)
    assert (found.dy, found.dx) == (60, -45) and np.isclose(found.metres(40.0), 3000.0)


def test_a_known_sun_azimuth_keeps_the_search_away_from_the_sun():
    cloud, red, nir, shade = _scene()
    # a second dark patch where a sun in the north-east would put the shadows (down-left)
    decoy = sh.shifted(cloud, 6, 6) & ~cloud & ~shade
    red[decoy], nir[decoy] = (0.02, 0.03)  # darker than the real shadows
    valid = np.ones_like(cloud)
    free = sh.shadow_offset(cloud, nir, red, valid, 40.0)
    assert (free.dy, free.dx) == (6, 6)  # from the image alone: the darker decoy wins
    # the real shadows lie toward 234 degrees: a sun at azimuth 54 degrees puts them there
    known = sh.shadow_offset(cloud, nir, red, valid, 40.0, bearing=(54.0 + 180.0) % 360.0)
    assert (known.dy, known.dx) == (5, -7)


def test_sun_azimuth_from_the_metadata_names_in_use():
    assert sh.sun_azimuth({"MEAN_SOLAR_AZIMUTH_ANGLE": "158.2"}) == 158.2  # Earth Engine S2
    assert sh.sun_azimuth({"SUN_AZIMUTH": "141.5", "SUN_ELEVATION": "40"}) == 141.5  # Landsat
    assert sh.sun_azimuth({"AREA_OR_POINT": "Area"}) is None
    assert sh.sun_azimuth({"sun_azimuth": "n/a"}) is None
