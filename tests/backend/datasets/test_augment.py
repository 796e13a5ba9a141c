"""Training augmentations: the 8 symmetries by hand, image and mask moved together, and the
brightness factor that scales every band alike."""

import numpy as np
import torch

from backend.datasets import SNOWED
from backend.datasets.augment import Augment, flip_rot90, random_crop


def test_flip_rot90_by_hand():
    image = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    mask = torch.tensor([[1, 2], [3, 4]])
    img, m = flip_rot90(image, mask, k=1, flip=False)  # counter-clockwise
    assert img.tolist() == [[[2.0, 4.0], [1.0, 3.0]]] and m.tolist() == [[2, 4], [1, 3]]
    img, m = flip_rot90(image, mask, k=0, flip=True)
    assert m.tolist() == [[2, 1], [4, 3]]
    crop_img, crop_m = random_crop(
        torch.arange(16.0).view(1, 4, 4), torch.arange(16).view(4, 4), 2, None
    )
    assert crop_m.tolist() == [[5, 6], [9, 10]] and crop_img.shape == (1, 2, 2)


def test_augment_moves_image_and_mask_together(snowed_sample):
    sample = SNOWED(snowed_sample, ids=["sample_0004"])[0]
    ref = sample["image"][0] * 10 + sample["mask"]  # image and mask in one array
    candidates = [torch.rot90(r, k, (0, 1)) for r in (ref, ref.flip(-1)) for k in range(4)]
    used = set()
    for s in range(24):
        out = Augment()(sample, np.random.default_rng(s))
        got = out["image"][0] * 10 + out["mask"]
        matches = [n for n, c in enumerate(candidates) if torch.equal(got, c)]
        assert len(matches) == 1, "image and mask were not transformed together"
        used.add(matches[0])
    assert len(used) >= 6  # the 8 symmetries are drawn at random
    jitter = Augment(flips=False, rot90=False, gain=0.1, offset=0.01)(
        sample, np.random.default_rng(0)
    )
    ratio = jitter["image"] / sample["image"]
    assert not torch.allclose(ratio, torch.ones_like(ratio))
    assert torch.equal(jitter["mask"], sample["mask"])


def test_brightness_augmentation_scales_all_bands_alike():
    from backend.datasets.augment import Augment

    image = torch.tensor([0.02, 0.05, 0.03, 0.01]).view(4, 1, 1).repeat(1, 2, 2)
    sample = {"image": image, "mask": torch.zeros(2, 2, dtype=torch.int64)}
    fixed = Augment(flips=False, rot90=False, brightness=(2.0, 2.0))
    assert fixed.active
    assert torch.allclose(fixed(sample, np.random.default_rng(0))["image"], 2 * image)
    ranged = Augment(flips=False, rot90=False, brightness=(0.5, 3.0))
    factors = []
    for seed in range(20):
        out = ranged(sample, np.random.default_rng(seed))["image"]
        ratio = out / image
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))  # one factor, all bands
        factors.append(float(ratio.flatten()[0]))
    assert 0.5 <= min(factors) < 1 < max(factors) <= 3.0
    # off by default: the random stream (and so older runs) is unchanged
    plain = Augment(gain=0.1)(sample, np.random.default_rng(5))["image"]
    rng = np.random.default_rng(5)
    rng.integers(0, 2), rng.integers(0, 4)
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, size=4).astype(np.float32)).view(4, 1, 1)
    k_flip = np.random.default_rng(5)
    flip, k = bool(k_flip.integers(0, 2)), int(k_flip.integers(0, 4))
    from backend.datasets.augment import flip_rot90

    expected, _ = flip_rot90(image, sample["mask"], k, flip)
    assert torch.allclose(plain, expected * gain)
