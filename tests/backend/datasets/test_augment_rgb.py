"""Rendering-robust RGB augmentation: each transform's range, neutral point and direction."""

import numpy as np
import pytest
import torch

from backend.datasets.augment_rgb import (
    RGBAugment,
    brightness_contrast,
    colour_balance,
    gamma,
    haze,
    jpeg_roundtrip,
    resample,
    saturation,
    stretch,
)


@pytest.fixture
def image():
    """float32 (3, 64, 64) in 0..1 spanning exactly 0..1: a smooth colourful gradient."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    return np.stack([x, y, (x + y) / 2]).astype(np.float32)


def check_image(out, shape):
    assert out.shape == shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_stretch_identity_when_image_spans_the_range(image):
    np.testing.assert_allclose(stretch(image, 0, 100), image, atol=1e-6)


def test_stretch_maps_percentiles_to_0_and_1(image):
    dull = 0.3 + 0.2 * image  # values 0.3..0.5
    out = stretch(dull, 2, 98)
    check_image(out, image.shape)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.mean(out == 0.0) >= 0.01 and np.mean(out == 1.0) >= 0.01  # clipped tails
    per = stretch(dull * np.array([1.0, 0.5, 0.2], np.float32).reshape(3, 1, 1), 0, 100, True)
    np.testing.assert_allclose(per.max(axis=(1, 2)), 1.0)  # each channel stretched alone


def test_stretch_uses_the_scene_percentiles_for_a_crop(image):
    lake = np.full((3, 16, 16), 0.1, np.float32) + np.linspace(0, 0.02, 16, dtype=np.float32)
    alone = stretch(lake, 0, 100)  # its own percentiles: noise blown up to 0..1
    assert alone.min() == 0.0 and alone.max() == 1.0
    in_scene = stretch(lake, 0, 100, reference=0.5 * image)  # scene spans 0..0.5
    np.testing.assert_allclose(in_scene, lake / 0.5, atol=1e-6)  # stays a dark, flat lake


def test_stretch_leaves_a_flat_image_alone():
    flat = np.full((3, 8, 8), 0.4, np.float32)
    np.testing.assert_array_equal(stretch(flat, 2, 98), flat)


def test_gamma_identity_and_monotone(image):
    np.testing.assert_allclose(gamma(image, 1.0), image, atol=1e-7)
    check_image(gamma(image, 0.5), image.shape)
    mid = np.float32(0.5)
    assert (
        gamma(np.full((3, 1, 1), mid), 0.5)[0, 0, 0]
        > mid
        > gamma(np.full((3, 1, 1), mid), 2)[0, 0, 0]
    )
    out = gamma(image, 2.0)[0, 0]  # red = x ramp along a row: order kept
    assert np.all(np.diff(out) >= 0)
    assert gamma(image, 2.0)[0, 0, 0] == 0.0 and gamma(image, 2.0)[0, 0, -1] == 1.0


def test_brightness_contrast(image):
    np.testing.assert_allclose(brightness_contrast(image, 0.0, 1.0), image, atol=1e-7)
    brighter = brightness_contrast(image, 0.1, 1.0)
    check_image(brighter, image.shape)
    assert brighter.mean() > image.mean()
    flat = brightness_contrast(image, 0.0, 0.5)
    assert flat.std() == pytest.approx(image.std() * 0.5, rel=1e-4)


def test_saturation(image):
    np.testing.assert_allclose(saturation(image, 1.0), image, atol=1e-6)
    grey = saturation(image, 0.0)
    check_image(grey, image.shape)
    np.testing.assert_allclose(grey[0], grey[1], atol=1e-6)
    np.testing.assert_allclose(grey[1], grey[2], atol=1e-6)
    spread = lambda a: (a.max(axis=0) - a.min(axis=0)).mean()  # noqa: E731
    assert spread(saturation(image, 1.5)) > spread(image) > spread(saturation(image, 0.5))


def test_haze_blends_toward_airlight(image):
    air = np.array([0.9, 0.95, 1.0], np.float32)
    np.testing.assert_array_equal(haze(image, 0.0, air), image)
    np.testing.assert_allclose(
        haze(image, 1.0, air), np.broadcast_to(air.reshape(3, 1, 1), image.shape)
    )
    hazy = haze(image, 0.4, air)
    check_image(hazy, image.shape)
    assert hazy.min() >= 0.4 * 0.9 - 1e-6  # dark water is lifted
    assert hazy.std() < image.std()  # contrast drops


def test_jpeg_roundtrip_loses_more_at_low_quality(image):
    hi, lo = jpeg_roundtrip(image, 95), jpeg_roundtrip(image, 30)
    check_image(hi, image.shape)
    np.testing.assert_array_equal(hi * 255, np.rint(hi * 255))  # on the 8-bit grid
    err = lambda a: np.abs(a - image).mean()  # noqa: E731
    assert err(hi) < 0.01
    assert err(lo) > err(hi)


def test_rgb_augment_crop_shapes_and_label_alignment():
    rng = np.random.default_rng(0)
    h, w = 300, 280
    image = np.zeros((3, h, w), np.float32)
    image[2, :, : w // 2] = 1.0  # blue water on the left
    image[1, :, w // 2 :] = 0.6  # green land on the right
    mask = np.zeros((h, w), np.int64)
    mask[:, : w // 2] = 1
    aug = RGBAugment(crop=256, p_saturation=0.0, p_stretch=0.0, p_haze=0.0)
    for _ in range(8):
        x, y = aug(image, mask, rng)
        assert x.shape == (3, 256, 256) and x.dtype == torch.float32
        assert y.shape == (256, 256) and y.dtype == torch.int64
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        # Geometry moves image and mask together: water pixels are the bluer ones.
        water, land = y == 1, y == 0
        assert (x[2][water].mean() - x[2][land].mean()) > 0.3


def test_rgb_augment_is_seeded_and_neutral_when_all_off(image):
    aug = RGBAugment(crop=64)
    a = aug(image, np.zeros((64, 64), np.int64), np.random.default_rng(3))
    b = aug(image, np.zeros((64, 64), np.int64), np.random.default_rng(3))
    torch.testing.assert_close(a[0], b[0])
    off = RGBAugment(
        crop=64,
        p_stretch=0,
        p_gamma=0,
        p_brightness_contrast=0,
        p_saturation=0,
        p_haze=0,
        p_jpeg=0,
        flips=False,
        rot90=False,
    )
    x, _ = off(image, np.zeros((64, 64), np.int64), np.random.default_rng(0))
    np.testing.assert_allclose(x.numpy(), image, atol=0.5 / 255 + 1e-6)  # 8-bit rounding only


def test_colour_balance_scales_each_channel(image):
    np.testing.assert_array_equal(colour_balance(image, [1, 1, 1]), image)
    out = colour_balance(image * 0.5, [1.0, 0.8, 1.25])
    check_image(out, image.shape)
    np.testing.assert_allclose(out[1], image[1] * 0.4, atol=1e-6)
    np.testing.assert_allclose(out[2], image[2] * 0.625, atol=1e-6)
    assert colour_balance(image, [2.0, 1.0, 1.0]).max() == 1.0  # clipped


def test_resample_to_a_coarser_and_a_finer_pixel():
    image = torch.zeros(3, 90, 90)
    mask = torch.zeros(90, 90, dtype=torch.int64)
    mask[:, :30] = 1  # water: the left third
    image[2, :, :30] = 1.0
    coarse, m = resample(image, mask, 30)  # 30 m pixels from 10 m ones: 3 x 3 -> 1
    assert coarse.shape == (3, 30, 30) and m.shape == (30, 30) and m.dtype == torch.int64
    assert m[:, :10].all() and not m[:, 10:].any()
    assert 0.0 <= float(coarse.min()) and float(coarse.max()) <= 1.0
    fine, m = resample(image[:, :20, :20], mask[:20, :20], 100)  # 2 m from 10 m: x 5
    assert fine.shape == (3, 100, 100) and m.float().mean() == 1.0
    same, m = resample(image, mask, 90)
    assert same is image and m is mask


def test_window_draws_pixel_sizes_from_2_to_30_m():
    rng = np.random.default_rng(0)
    assert RGBAugment(crop=256).window(rng) == 256  # p_scale 0: no draw, the crop
    aug = RGBAugment(crop=256, p_scale=1.0)
    sides = [aug.window(rng) for _ in range(400)]
    assert min(sides) >= round(256 * 2 / 10) and max(sides) <= round(256 * 30 / 10)
    assert min(sides) < 100 and max(sides) > 600  # both ends are reached
    rng = np.random.default_rng(1)
    image = np.zeros((3, 700, 700), np.float32)
    mask = np.zeros((700, 700), np.int64)
    mask[:, :350] = 1
    image[2, :, :350] = 1.0
    x, y = aug(image, mask, rng)  # a 700 px window seen as 256 px of 27 m
    assert x.shape == (3, 256, 256) and y.shape == (256, 256)
    water, land = y == 1, y == 0
    assert 0.4 < float(water.float().mean()) < 0.6
    assert (x[2][water].mean() - x[2][land].mean()) > 0.3
