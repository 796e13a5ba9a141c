"""The dock's option widgets, the Processing parameters and SegmentRequest's defaults come
from the contract's option table (the table the backend builds its CLI from)."""

import pytest

from plugin.algorithm import SegmentWaterAlgorithm
from plugin.contract import OPTIONS, UI_OPTIONS, option_args
from plugin.options import AUTO_TEXT, parameter_name, widget_name, widget_value
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
        elif opt["type"] in ("float", "int") and opt["default"] is None:
            # no default (e.g. threads): the spin box's lowest value reads "auto", sends nothing
            assert widget.specialValueText() == AUTO_TEXT and widget_value(widget) is None
            assert widget.minimum() == opt["min"] - 1 and widget.text() == AUTO_TEXT
            widget.setValue(opt["min"])
            assert widget_value(widget) == opt["min"]
            widget.setValue(widget.minimum())
        elif opt["type"] in ("float", "int"):
            assert widget.value() == opt["default"], opt["name"]
            if opt.get("min") is not None:
                assert widget.minimum() == opt["min"], opt["name"]
            if opt.get("max") is not None:
                assert widget.maximum() == opt["max"], opt["name"]
    assert dock.overlapSpin.maximum() == 0.85
    assert "threads" in dock.option_widgets  # issue 14: a dock setting for the thread count


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
    for opt in UI_OPTIONS:  # an option without a default is left to the backend
        assert (f"--{opt['name']}" in args) == (opt["default"] is not None), opt["name"]
    req.options["threads"] = 3
    assert req.backend_args()[req.backend_args().index("--threads") + 1] == "3"
    assert set(OPTIONS) >= {o["name"] for o in UI_OPTIONS}
    assert option_args({"overlap": 0.5, "smooth": 2, "overwrite": True}) == [
        "--overlap",
        "0.5",
        "--smooth",
        "2",
        "--overwrite",
    ]


def test_processing_leaves_an_unset_thread_count_to_the_backend():
    from qgis.core import QgsProcessingContext

    from plugin.options import processing_values

    alg = SegmentWaterAlgorithm()
    alg.initAlgorithm()
    assert (
        alg.parameterDefinition("THREADS").flags() & alg.parameterDefinition("THREADS").FlagOptional
    )
    context = QgsProcessingContext()
    assert processing_values(alg, {}, context)["threads"] is None
    assert processing_values(alg, {"THREADS": 2}, context)["threads"] == 2
    assert "--threads" not in option_args({"threads": None})
