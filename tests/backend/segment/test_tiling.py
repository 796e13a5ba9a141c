"""The tile grid: origins with overlap, and the smallest overlap allowed."""

import numpy as np
import pytest

from backend.core.errors import UserError
from backend.segment.tiling import TileGrid, check_overlap, tile_origins


def test_tile_origins_cover_with_overlap():
    assert tile_origins(600, 256, 0.25) == [0, 192, 344]
    assert tile_origins(256, 256, 0.25) == [0]
    assert tile_origins(100, 256, 0.25) == [0]
    assert tile_origins(257, 256, 0.25) == [0, 1]
    for length in (300, 511, 1000, 10980):
        starts = tile_origins(length, 256, 0.25)
        assert starts[-1] + 256 == length
        gaps = np.diff(starts)
        assert (gaps <= 192).all()  # neighbours overlap by at least 64 px = 25 %
    assert TileGrid(600, 500, 256, 0.25).count == 3 * 3


def test_overlap_below_a_quarter_is_refused():
    assert check_overlap(0.25) == 0.25
    with pytest.raises(UserError, match="overlap"):
        check_overlap(0.1)
