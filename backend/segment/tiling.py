"""Tile grid: where the square model tiles sit along one axis of the raster, with overlap."""

from __future__ import annotations

from dataclasses import dataclass

from backend.core.contract import option
from backend.core.errors import UserError

# The range of --overlap is defined once, in the option table (resources/contract.json).
MIN_OVERLAP = float(option("overlap")["min"])
MAX_OVERLAP = float(option("overlap")["max"])


def tile_origins(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least
    ``overlap`` (fraction of ``tile``) between neighbours. The last tile ends exactly at
    ``length``; a raster shorter than one tile gets a single tile at 0 (padded later).

    >>> tile_origins(600, 256, 0.25)
    [0, 192, 344]
    """
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def check_overlap(overlap: float) -> float:
    """Validate the ``--overlap`` fraction (MIN_OVERLAP <= overlap <= MAX_OVERLAP)."""
    if not MIN_OVERLAP <= overlap <= MAX_OVERLAP:
        raise UserError(
            f"--overlap {overlap} is out of range; use a fraction from {MIN_OVERLAP} to "
            f"{MAX_OVERLAP} "
            "(0.25 is the default: smaller overlaps leave tile-edge artefacts)"
        )
    return overlap


@dataclass(frozen=True)
class TileGrid:
    """Tile origins along rows (``ys``) and columns (``xs``) of a ``height`` x ``width`` raster."""

    height: int
    width: int
    tile: int
    overlap: float

    @property
    def ys(self) -> list[int]:
        return tile_origins(self.height, self.tile, self.overlap)

    @property
    def xs(self) -> list[int]:
        return tile_origins(self.width, self.tile, self.overlap)

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)
