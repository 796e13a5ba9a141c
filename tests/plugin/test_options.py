"""The dock's option widgets, the Processing parameters and SegmentRequest's defaults come
from the contract's option table (the table the backend builds its CLI from)."""

import pytest

from plugin.algorithm import SegmentWaterAlgorithm
from plugin.contract import OPTIONS, UI_OPTIONS, option_args
from plugin.options import parameter_name, widget_name
from plugin.request import SegmentRequest

pytestmark = pytest.mark.qgis


def test_dock_widgets_follow_the_table(plugin):
    dock = plugin.dock
    for opt in UI_OPTIONS:
        widget = dock.option_widgets[opt["name"]]
        assert widget.objectName() == widget_name(opt)
        if opt.get("choices"):
            assert [widget.itemData(i) for i in range(widget.count())] == opt["choices"]
            assert widget.currentData() == opt["default"]
        elif opt["type"] in ("float", "int"):
            assert widget.value() == opt["default"], opt["name"]
            if opt.get("min") is not None:
                assert widget.minimum() == opt["min"], opt["name"]
            if opt.get("max") is not None:
                assert widget.maximum() == opt["max"], opt["name"]
    assert dock.overlapSpin.maximum() == 0.85


def test_processing_parameters_follow_the_table():
    alg = SegmentWaterAlgorithm()
    alg.initAlgorithm()
    for opt in UI_OPTIONS:
        param = alg.parameterDefinition(parameter_name(opt))
        assert param is not None, opt["name"]
        if opt.get("choices"):
            assert param.options() == opt["choices"]
            assert param.defaultValue() == opt["choices"].index(opt["default"])
        elif opt["type"] in ("float", "int"):
            assert param.defaultValue() == opt["default"]
            if opt.get("min") is not None:
                assert param.minimum() == opt["min"]
            if opt.get("max") is not None:
                assert param.maximum() == opt["max"]


def test_request_defaults_and_arguments_follow_the_table():
    req = SegmentRequest(layer_name="s", input_path="a.tif", out_dir="o", bands=[])
    assert req.options == {o["name"]: o["default"] for o in UI_OPTIONS}
    args = req.backend_args()
    for opt in UI_OPTIONS:
        assert f"--{opt['name']}" in args
    assert set(OPTIONS) >= {o["name"] for o in UI_OPTIONS}
    assert option_args({"overlap": 0.5, "smooth": 2, "overwrite": True}) == [
        "--overlap",
        "0.5",
        "--smooth",
        "2",
        "--overwrite",
    ]
