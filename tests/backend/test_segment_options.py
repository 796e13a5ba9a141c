"""The segment options are one table (resources/contract.json): the CLI is built from it and
the engine's defaults agree with it; the overlap range is the same everywhere."""

from __future__ import annotations

import dataclasses

import pytest

from backend.contract import option, segment_options
from backend.errors import UserError
from backend.segment.cli import build_parser, main
from backend.segment.pipeline import SegmentOptions


def test_parser_is_built_from_the_table():
    parser = build_parser()
    flags = {a.dest: a for a in parser._actions}
    for opt in segment_options():
        dest = opt["name"].replace("-", "_")
        assert dest in flags, opt["name"]
        if not opt.get("positional") and not opt.get("required"):
            assert flags[dest].default == opt.get("default", False), opt["name"]
        assert flags[dest].help == opt["help"]


def test_engine_defaults_agree_with_the_table():
    for f in dataclasses.fields(SegmentOptions):
        name = f.name.replace("_", "-")
        if name == "overwrite" or f.default is dataclasses.MISSING:
            continue
        assert f.default == option(name)["default"], name


@pytest.mark.parametrize(("value", "ok"), [(0.25, True), (0.85, True), (0.86, False), (0.2, False)])
def test_overlap_range_is_the_table_range(tmp_path, value, ok):
    assert option("overlap")["max"] == 0.85  # what the dock and Processing offer too
    argv = ["nope.tif", "--out-dir", str(tmp_path), "--overlap", str(value)]
    with pytest.raises(UserError) as err:
        main(argv)
    assert ("out of range" in str(err.value)) != ok  # in range: fails later, on the input


def test_every_number_is_checked_against_its_range(tmp_path):
    for flag, value in (("--threshold", "1"), ("--smooth", "11"), ("--batch-size", "0")):
        with pytest.raises(UserError, match=f"{flag} .* out of range"):
            main(["nope.tif", "--out-dir", str(tmp_path), flag, value])
