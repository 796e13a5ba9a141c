"""Dataset wrappers that transform the samples of another dataset (SNOWED, ...).

- :class:`CenterCrop`: the centre ``size`` x ``size`` crop of every sample (validation and
  evaluation on the crops a run trained on).
- :class:`TrainSet`: a random crop and augmentation per sample, drawn from (seed, epoch,
  sample index), so the same sample gets the same transform in a given epoch whatever the
  worker count, process count or resume point.

Samples are dicts holding "image" float (C, H, W) and "mask" int64 (H, W); other keys pass
through unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from backend.datasets.augment import Augment, random_crop


class CenterCrop(Dataset):
    """A dataset whose samples are centre-cropped to ``size`` x ``size`` (None: unchanged)."""

    def __init__(self, base: Dataset, size: int | None):
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        if self.size:
            image, mask = random_crop(sample["image"], sample["mask"], self.size, None)
            sample = {**sample, "image": image, "mask": mask}
        return sample


class TrainSet(Dataset):
    """A training subset with per-sample randomness drawn from (seed, epoch, index).

    Random crop (when ``crop``) then ``augment``; the same sample gets the same random
    transform in a given epoch whatever the worker count, process count or resume point.
    """

    def __init__(self, base: Dataset, augment: Augment | None, crop: int | None, seed: int):
        self.base, self.augment, self.crop, self.seed = base, augment, crop, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop:
            image, mask = random_crop(sample["image"], sample["mask"], self.crop, rng)
            sample = {**sample, "image": image, "mask": mask}
        if self.augment is not None and self.augment.active:
            sample = self.augment(sample, rng)
        return sample
