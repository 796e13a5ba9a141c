"""Training augmentations for (image, mask) pairs, applied to both together.

Geometric: random horizontal flip and a random multiple of 90-degree rotation (the 8
symmetries of the square), which keep every pixel and never interpolate labels. Spectral
(off by default): per-band gain ``1 + U(-gain, gain)`` and offset ``U(-offset, offset)`` on
the scaled image only, for models that must tolerate calibration differences between
products (e.g. L1C vs L2A input); and ``brightness = (lo, hi)``: the whole image times one
factor drawn log-uniformly from [lo, hi] (the same for every band, so band ratios such as
NDWI are kept: illumination, haze, shadows, dark or bright land covers).

Randomness comes from an explicit ``numpy.random.Generator`` so that the training loop can
derive it from (seed, epoch, sample index): the augmentation of a sample is then the same
whatever the number of DataLoader workers or processes, and after ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def flip_rot90(
    image: torch.Tensor, mask: torch.Tensor, k: int, flip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate image (C, H, W) and mask (H, W) by ``k`` x 90 degrees, after a left-right flip
    when ``flip``. Returns contiguous tensors of the same dtypes (H and W swap for odd k)."""
    if flip:
        image, mask = image.flip(-1), mask.flip(-1)
    if k % 4:
        image, mask = torch.rot90(image, k, (-2, -1)), torch.rot90(mask, k, (-2, -1))
    return image.contiguous(), mask.contiguous()


def random_crop(
    image: torch.Tensor, mask: torch.Tensor, size: int, rng: np.random.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop image (C, H, W) and mask (H, W) to ``size`` x ``size``: at a random position
    drawn from ``rng``, or centred when ``rng`` is None."""
    h, w = mask.shape[-2:]
    if size >= h and size >= w:
        return image, mask
    size_h, size_w = min(size, h), min(size, w)
    if rng is None:
        top, left = (h - size_h) // 2, (w - size_w) // 2
    else:
        top = int(rng.integers(0, h - size_h + 1))
        left = int(rng.integers(0, w - size_w + 1))
    return (
        image[:, top : top + size_h, left : left + size_w],
        mask[top : top + size_h, left : left + size_w],
    )


@dataclass
class Augment:
    """Random flips/rotations (and optional spectral jitter) of a SNOWED sample dict.

    Call as ``augment(sample, rng)``; ``sample`` holds "image" float (C, H, W) and "mask"
    int64 (H, W); returns a new dict.
    """

    flips: bool = True
    rot90: bool = True
    gain: float = 0.0
    offset: float = 0.0
    brightness: tuple[float, float] | None = None

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image, mask = sample["image"], sample["mask"]
        flip = bool(rng.integers(0, 2)) if self.flips else False
        k = int(rng.integers(0, 4)) if self.rot90 else 0
        image, mask = flip_rot90(image, mask, k, flip)
        c = image.shape[0]
        if self.brightness is not None:  # drawn only when set: old runs keep their streams
            lo, hi = (float(v) for v in self.brightness)
            image = image * float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if self.gain > 0:
            g = rng.uniform(1.0 - self.gain, 1.0 + self.gain, size=c).astype(np.float32)
            image = image * torch.from_numpy(g).view(c, 1, 1)
        if self.offset > 0:
            o = rng.uniform(-self.offset, self.offset, size=c).astype(np.float32)
            image = image + torch.from_numpy(o).view(c, 1, 1)
        return {**sample, "image": image, "mask": mask}

    @property
    def active(self) -> bool:
        return (
            self.flips
            or self.rot90
            or self.gain > 0
            or self.offset > 0
            or self.brightness is not None
        )
