"""Datasets for training and evaluation. SNOWED is the one the paper uses."""

from backend.datasets.esw import ESW
from backend.datasets.snowed import (
    ALL_BANDS,
    SNOWED,
    band_indices,
    list_samples,
    make_split,
    read_metadata,
    read_split,
    split_sizes,
    tile_groups,
    write_split,
)
from backend.datasets.transforms import CenterCrop, TrainSet

__all__ = [
    "ALL_BANDS",
    "CenterCrop",
    "ESW",
    "SNOWED",
    "TrainSet",
    "band_indices",
    "list_samples",
    "make_split",
    "read_metadata",
    "read_split",
    "split_sizes",
    "tile_groups",
    "write_split",
]
