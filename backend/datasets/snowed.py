"""SNOWED: the Sentinel-2 NOAA Water Edges Dataset, as a PyTorch dataset.

Andria G. et al., "SNOWED: Automatically Constructed Dataset of Satellite Imagery for Water
Edge Measurements", Sensors 23(9):4491, 2023, https://doi.org/10.3390/s23094491 (the article
says where to download the data). Labels were made automatically from NOAA shoreline vectors
and are noisy. Contains modified Copernicus Sentinel data.

On-disk format (one folder per sample, any folder name)::

    SNOWED/
      <id>/sample_2A.npy   uint16 (256, 256, 12)  Sentinel-2 L2A reflectance x 10000, bands
                                                  B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12
      <id>/label.npy       uint8  (256, 256)      1 = water, 0 = land
      <id>/metadata.pkl    optional: a pickle naming the source Sentinel-2 product. It is never
                           unpickled; the tile id (T\\d{2}[A-Z]{3}) and the date are searched
                           for in its raw bytes.

A sample is ``{"image": float32 (C, 256, 256), "mask": int64 (256, 256), "id": str}`` where
the C channels are the requested bands (default B2 B3 B4 B8) scaled by
``backend.core.checkpoint.InputSpec`` (1e-4: reflectance). Every file is checked when it is read
(shape, dtype, label values) and a problem raises ``UserError`` naming the file.

Split (:func:`make_split`): the paper used 2730 / 1171 / 433 of the 4334 samples for
train / validation / test but published no list, so the split is a seeded shuffle with those
counts; a folder of another size gets the same proportions, rounded (``n_val = round(n *
1171 / 4334)``, ``n_test = round(n * 433 / 4334)``), except that with n >= 3 validation and
test get at least one sample each and train always keeps at least one. With the five-sample
excerpt this gives 3 train / 1 val / 1 test. ``group_by_tile=True`` keeps all samples of a
Sentinel-2 tile (from metadata.pkl) in one subset, to avoid spatial leakage; samples without
a tile id form their own groups, and subset sizes then only approximate the targets.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.core.checkpoint import DEFAULT_BANDS, InputSpec
from backend.core.errors import UserError

ALL_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
IMAGE_FILE = "sample_2A.npy"
LABEL_FILE = "label.npy"
METADATA_FILE = "metadata.pkl"
IMAGE_SHAPE = (256, 256, 12)
LABEL_SHAPE = (256, 256)
PAPER_SPLIT = {"train": 2730, "val": 1171, "test": 433}  # of 4334
PAPER_TOTAL = 4334
SPLITS = ("train", "val", "test")
WHERE_TO_GET = (
    "download SNOWED (Andria et al., Sensors 23(9):4491, 2023, https://doi.org/10.3390/s23094491,"
    " see its Data Availability Statement) and pass --data PATH/TO/SNOWED"
)

_TILE_RE = re.compile(rb"T\d{2}[A-Z]{3}")
_DATE_RE = re.compile(rb"(20\d{6})T\d{6}")


def band_indices(bands: Sequence[str]) -> list[int]:
    """Band names (e.g. ["B2", "B3", "B4", "B8"]) -> channel indices into sample_2A.npy."""
    bands = [b.strip().upper() for b in bands]
    unknown = [b for b in bands if b not in ALL_BANDS]
    if unknown or not bands:
        raise UserError(
            f"unknown SNOWED band(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{' '.join(ALL_BANDS)} (e.g. --bands B2,B3,B4,B8)"
        )
    if len(set(bands)) != len(bands):
        raise UserError(f"band list {','.join(bands)} repeats a band; give each band once")
    return [ALL_BANDS.index(b) for b in bands]


def read_metadata(folder: str | os.PathLike) -> dict[str, str | None]:
    """Tile id and date of a sample from its metadata.pkl, read as bytes (never unpickled).

    Returns ``{"tile": "T06VUM" | None, "date": "20190608" | None}``; both None when the
    file is missing or names no product.
    """
    path = Path(folder) / METADATA_FILE
    try:
        raw = path.read_bytes()[: 1 << 20]
    except OSError:
        return {"tile": None, "date": None}
    tile = _TILE_RE.search(raw)
    date = _DATE_RE.search(raw)
    return {
        "tile": tile.group(0).decode("ascii") if tile else None,
        "date": date.group(1).decode("ascii") if date else None,
    }


def list_samples(root: str | os.PathLike) -> list[str]:
    """Sorted ids (folder names) of the SNOWED samples under ``root``; checks the layout.

    Raises UserError when ``root`` is missing, holds no sample folder, or a sample folder
    lacks ``sample_2A.npy`` or ``label.npy``.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"SNOWED not found: {root} does not exist; {WHERE_TO_GET}")
    if not root.is_dir():
        raise UserError(f"SNOWED path {root} is not a folder; {WHERE_TO_GET}")
    ids: list[str] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        has_image = (entry / IMAGE_FILE).is_file()
        has_label = (entry / LABEL_FILE).is_file()
        if has_image and not has_label:
            raise UserError(
                f"SNOWED sample {entry.name} has no {LABEL_FILE} ({entry / LABEL_FILE} missing);"
                " restore it from the SNOWED download or delete the folder"
            )
        if has_label and not has_image:
            raise UserError(
                f"SNOWED sample {entry.name} has no {IMAGE_FILE} ({entry / IMAGE_FILE} missing);"
                " restore it from the SNOWED download or delete the folder"
            )
        if has_image:
            ids.append(entry.name)
    if not ids:
        raise UserError(
            f"no SNOWED samples under {root} (expected folders <id>/{IMAGE_FILE} + "
            f"<id>/{LABEL_FILE}); {WHERE_TO_GET}"
        )
    return ids


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(
            f"cannot read {path}: {str(exc).splitlines()[0][:120] if str(exc) else 'corrupt'};"
            " re-download that sample of SNOWED"
        ) from None


def load_sample_arrays(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one sample folder -> (uint16 (256, 256, 12), uint8 (256, 256) in {0,1})."""
    folder = Path(folder)
    image = _load_npy(folder / IMAGE_FILE)
    if image.shape != IMAGE_SHAPE or image.dtype != np.uint16:
        raise UserError(
            f"{folder / IMAGE_FILE} has shape {image.shape} dtype {image.dtype}; SNOWED samples "
            f"are {IMAGE_SHAPE} uint16 (H, W, 12 bands); {WHERE_TO_GET}"
        )
    label = _load_npy(folder / LABEL_FILE)
    if label.shape != LABEL_SHAPE or label.dtype.kind not in "ui":
        raise UserError(
            f"{folder / LABEL_FILE} has shape {label.shape} dtype {label.dtype}; SNOWED labels "
            f"are {LABEL_SHAPE} integers (1 water, 0 land)"
        )
    if label.max(initial=0) > 1 or label.min(initial=0) < 0:
        bad = sorted(set(np.unique(label).tolist()) - {0, 1})[:5]
        raise UserError(
            f"{folder / LABEL_FILE} holds values {bad}; SNOWED labels must be 0 (land) or 1 (water)"
        )
    return image, label.astype(np.uint8, copy=False)


class SNOWED(Dataset):
    """SNOWED samples as ``{"image": float32 (C, H, W), "mask": int64 (H, W), "id": str}``.

    Args:
        root: the SNOWED folder (the one holding the sample folders).
        ids: which samples, in order (default: all, sorted by folder name).
        bands: input band names in model order (any of :data:`ALL_BANDS`).
        input_spec: scaling/normalisation; default ``InputSpec(bands)`` (scale 1e-4).
        transforms: optional ``f(sample) -> sample`` applied last (e.g. augmentation).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        ids: Sequence[str] | None = None,
        bands: Sequence[str] = DEFAULT_BANDS,
        input_spec: InputSpec | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.bands = [b.strip().upper() for b in bands]
        self.indices = band_indices(self.bands)
        self.input_spec = input_spec or InputSpec(bands=list(self.bands))
        if list(self.input_spec.bands) != self.bands:
            raise ValueError(f"input_spec bands {self.input_spec.bands} != bands {self.bands}")
        self.transforms = transforms
        self.ids = self._verify(ids)

    def _verify(self, ids: Sequence[str] | None) -> list[str]:
        """Check the folder layout; return the sample ids to serve."""
        available = list_samples(self.root)
        if ids is None:
            return available
        known = set(available)
        missing = [i for i in ids if i not in known]
        if missing:
            raise UserError(
                f"{len(missing)} sample id(s) of the split are not in {self.root} (e.g. "
                f"{missing[0]!r}); pass the SNOWED folder the split was made for, or another "
                "--split-file"
            )
        return list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample_id = self.ids[index]
        image, label = load_sample_arrays(self.root / sample_id)
        raw = np.ascontiguousarray(image[:, :, self.indices].transpose(2, 0, 1))
        sample = {
            "image": torch.from_numpy(self.input_spec.normalise(raw)),
            "mask": torch.from_numpy(label.astype(np.int64)),
            "id": sample_id,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(self, sample: dict[str, Any], prediction: torch.Tensor | None = None, title: str = ""):
        """Matplotlib figure: RGB (B4 B3 B2 if loaded, else the first 3 bands), mask, prediction.

        ``prediction``: optional int (H, W) class map. Needs matplotlib (not a dependency).
        """
        from backend.datasets.plotting import sample_figure

        image = sample["image"].numpy()
        rgb_idx = [self.bands.index(b) for b in ("B4", "B3", "B2") if b in self.bands]
        if len(rgb_idx) < 3:
            rgb_idx = list(range(min(3, image.shape[0])))
        rgb = image[rgb_idx].transpose(1, 2, 0)
        rgb = rgb / max(float(np.percentile(rgb, 98)), 1e-6)
        title = title or str(sample.get("id", ""))
        return sample_figure(rgb, sample["mask"].numpy(), prediction, title)


def split_sizes(n: int) -> dict[str, int]:
    """Subset sizes for ``n`` samples: 2730/1171/433 for 4334, proportional otherwise.

    With n >= 3, val and test get at least one sample; train always gets at least one.
    """
    if n < 1:
        raise UserError("no samples to split; check --data")
    n_val = (n * PAPER_SPLIT["val"] + PAPER_TOTAL // 2) // PAPER_TOTAL
    n_test = (n * PAPER_SPLIT["test"] + PAPER_TOTAL // 2) // PAPER_TOTAL
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    while n - n_val - n_test < 1:  # keep one for training
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def make_split(
    ids: Sequence[str],
    seed: int = 0,
    *,
    groups: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """Seeded train/val/test split of sample ids.

    ``groups``: optional id -> group key (e.g. Sentinel-2 tile); samples of one group land in
    one subset. Returns ``{"seed", "grouped_by", "train", "val", "test"}`` (lists of ids,
    each sorted).
    """
    ids = sorted(ids)
    sizes = split_sizes(len(ids))
    rng = random.Random(seed)
    if groups is None:
        order = list(ids)
        rng.shuffle(order)
        subsets = {
            "test": order[: sizes["test"]],
            "val": order[sizes["test"] : sizes["test"] + sizes["val"]],
            "train": order[sizes["test"] + sizes["val"] :],
        }
    else:
        by_group: dict[str, list[str]] = {}
        for i in ids:
            by_group.setdefault(groups.get(i) or f"id:{i}", []).append(i)
        keys = sorted(by_group)
        rng.shuffle(keys)
        subsets = {"train": [], "val": [], "test": []}
        for key in keys:  # each group to the subset furthest below its target (relatively)
            name = max(
                (s for s in ("train", "val", "test") if sizes[s] > 0),
                key=lambda s: (sizes[s] - len(subsets[s])) / sizes[s],
            )
            subsets[name].extend(by_group[key])
    return {
        "seed": int(seed),
        "grouped_by": None if groups is None else "tile",
        "train": sorted(subsets["train"]),
        "val": sorted(subsets["val"]),
        "test": sorted(subsets["test"]),
    }


def tile_groups(root: str | os.PathLike, ids: Sequence[str]) -> dict[str, str | None]:
    """id -> Sentinel-2 tile id from each sample's metadata.pkl (None when unknown)."""
    return {i: read_metadata(Path(root) / i)["tile"] for i in ids}


def write_split(split: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a split as JSON (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(split, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def read_split(path: str | os.PathLike) -> dict[str, Any]:
    """Read a split JSON written by :func:`write_split`; checks its structure."""
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot read split file {path}: {exc}; pass a split.json written by train"
        ) from None
    if not isinstance(split, dict) or not all(
        isinstance(split.get(k), list) and all(isinstance(i, str) for i in split[k]) for k in SPLITS
    ):
        raise UserError(f"split file {path} lacks lists 'train', 'val', 'test' of sample ids")
    seen: set[str] = set()
    for k in SPLITS:
        dup = seen.intersection(split[k])
        if dup:
            raise UserError(f"split file {path} puts sample {sorted(dup)[0]!r} in two subsets")
        seen.update(split[k])
    if not split["train"]:
        raise UserError(f"split file {path} has an empty training subset")
    return split
