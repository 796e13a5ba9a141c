"""Quality flags of dated scenes: cloud (unless segment called it haze), shadow, and a jump in
water fraction that is large both against the dates' scatter and as a share of the scene."""

from __future__ import annotations

from datetime import datetime

from backend.change.scenes import Scene, flag_quality


def _scene(k: int, water: float, **quality) -> Scene:
    return Scene(
        f"s{k}", f"s{k}.tif", datetime(2020, 1, 1 + k), "name", "x.gpkg", None, water, quality
    )


def test_flags():
    # a lake: 36-37 % water; two winter dates with hill shadow read as water (+4 and +7 %)
    lake = [
        _scene(k, w) for k, w in enumerate([0.366, 0.369, 0.362, 0.41, 0.365, 0.37, 0.44, 0.359])
    ]
    flag_quality(lake)
    assert [s.name for s in lake if s.flags] == ["s3", "s6"]
    assert lake[3].flags == ["water_jump"]
    # a river: 5 % water, a MAD of 0.1 %: half a percent more water is not a jump, 4 % is
    river = [_scene(k, w) for k, w in enumerate([0.047, 0.048, 0.046, 0.053, 0.047, 0.049, 0.086])]
    flag_quality(river)
    assert [s.name for s in river if s.flags] == ["s6"]
    # cloud: flagged unless segment dropped the mask as haze; shadow share
    more = [
        _scene(0, None, cloud_fraction=0.9),
        _scene(1, None, cloud_fraction=1.0, flags=["haze"]),
        _scene(2, None, cloud_fraction=0.1, shadow_fraction=0.2),
    ]
    flag_quality(more)
    assert [s.flags for s in more] == [["cloudy"], [], ["shadow"]]
