"""The pages say what the code does: every option of ``segment`` (the contract's table, which
builds the CLI) and every --method choice appears in docs/segment.md, and the dock's page
names every method and option the dock shows."""

import re
from pathlib import Path

import pytest

from backend.core.contract import methods, segment_options

ROOT = Path(__file__).resolve().parent.parent
SEGMENT_DOC = (ROOT / "docs" / "segment.md").read_text(encoding="utf-8")
PLUGIN_DOC = (ROOT / "docs" / "plugin.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("opt", segment_options(), ids=lambda o: o["name"])
def test_every_segment_option_is_in_the_segment_docs(opt):
    if opt.get("positional"):
        assert opt["metavar"] in SEGMENT_DOC
        return
    flag = f"--{opt['name']}"
    assert re.search(rf"{re.escape(flag)}(?![\w-])", SEGMENT_DOC), f"{flag} is not documented"
    for choice in opt.get("choices") or []:
        if not opt.get("open_choices"):
            assert choice in SEGMENT_DOC, f"{flag} {choice} is not documented"


def test_the_synopsis_lists_every_option():
    synopsis = SEGMENT_DOC.split("```", 2)[1]
    for opt in segment_options():
        if not opt.get("positional"):
            assert f"--{opt['name']}" in synopsis, opt["name"]


@pytest.mark.parametrize("method", [m["name"] for m in methods()])
def test_every_method_is_explained_in_both_pages(method):
    section = SEGMENT_DOC.split("## Methods (`--method`)", 1)[1].split("\n## ", 1)[0]
    assert f"`{method}`" in section
    assert f"`{method}`" in PLUGIN_DOC or f"*{method}*" in PLUGIN_DOC, method


def test_the_plugin_page_names_every_option_the_dock_shows():
    for opt in segment_options():
        if opt.get("ui"):
            assert opt["label"].split(" (")[0].lower() in PLUGIN_DOC.lower(), opt["label"]


def test_the_plugin_page_has_no_stale_claims():
    """Claims that were true once (issue 22, item 6)."""
    assert "only SCL" not in PLUGIN_DOC
    assert "s2cloudless" in PLUGIN_DOC  # the cloud mask's third source
    assert "WaterSeg ships two models" not in PLUGIN_DOC  # there are three
