"""Segment options as widgets and Processing parameters, built from the contract's option
table (``contract.UI_OPTIONS``): ranges, defaults, choices, labels and help are never written
here, so the dock, Processing and ``segment --help`` cannot drift apart."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from .contract import UI_OPTIONS

BIG = 1e9  # the upper end of a spin box for an option without a maximum
AUTO_TEXT = "auto"  # an int option without a default: the spin box's lowest value, sends nothing


def widget_name(opt: dict) -> str:
    """The object name of an option's widget in dock.ui: "min-length" -> "minLengthSpin"."""
    head, *rest = opt["name"].split("-")
    stem = head + "".join(w.title() for w in rest)
    if opt.get("choices"):
        return stem + "Combo"
    return stem + {"float": "Spin", "int": "Spin", "bool": "Check"}.get(opt["type"], "Edit")


def make_widget(opt: dict):
    """A new widget for an option dock.ui does not place."""
    if opt.get("choices"):
        widget = QComboBox()
    elif opt["type"] == "float":
        widget = QDoubleSpinBox()
    elif opt["type"] == "int":
        widget = QSpinBox()
    elif opt["type"] == "bool":
        widget = QCheckBox()
    else:
        widget = QLineEdit()
    widget.setObjectName(widget_name(opt))
    return widget


def configure(widget, opt: dict) -> None:
    """Range, step, decimals, choices, default value and tooltip of ``opt`` on ``widget``."""
    default = opt.get("default")
    widget.setToolTip(opt.get("help", ""))
    if isinstance(widget, QComboBox):
        widget.clear()
        for choice in opt["choices"]:
            widget.addItem(choice, choice)
        widget.setCurrentIndex(max(0, widget.findData(default)))
    elif isinstance(widget, QDoubleSpinBox | QSpinBox):
        if isinstance(widget, QDoubleSpinBox):
            widget.setDecimals(int(opt.get("decimals", 2)))
        low, high = opt.get("min"), opt.get("max")
        if default is None and isinstance(widget, QSpinBox) and low is not None:
            # no default: the value below the minimum reads "auto" and sends nothing
            widget.setRange(low - 1, BIG if high is None else high)
            widget.setSpecialValueText(AUTO_TEXT)
            widget.setSingleStep(opt.get("step", 1))
            widget.setValue(low - 1)
            return
        widget.setRange(-BIG if low is None else low, BIG if high is None else high)
        widget.setSingleStep(opt.get("step", 1))
        widget.setValue(default or 0)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(default))
    else:
        widget.setText("" if default is None else str(default))


def on_change(widget, callback) -> None:
    """Call ``callback()`` whenever the user changes an option widget."""
    if isinstance(widget, QComboBox):
        widget.currentIndexChanged.connect(lambda _i: callback())
    elif isinstance(widget, QDoubleSpinBox | QSpinBox):
        widget.valueChanged.connect(lambda _v: callback())
    elif isinstance(widget, QCheckBox):
        widget.toggled.connect(lambda _b: callback())
    else:
        widget.editingFinished.connect(callback)


def widget_value(widget) -> Any:
    """The value an option widget holds."""
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QSpinBox) and widget.specialValueText():
        return None if widget.value() == widget.minimum() else widget.value()
    if isinstance(widget, QDoubleSpinBox | QSpinBox):
        return widget.value()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    return widget.text().strip() or None


def parameter_name(opt: dict) -> str:
    """The Processing parameter of an option: "min-length" -> "MIN_LENGTH"."""
    return opt["name"].upper().replace("-", "_")


def processing_parameters() -> list:
    """One Processing parameter per UI option."""
    params = []
    for opt in UI_OPTIONS:
        name, label, default = (
            parameter_name(opt),
            opt.get("label", opt["name"]),
            opt.get("default"),
        )
        if opt.get("choices"):
            params.append(
                QgsProcessingParameterEnum(
                    name,
                    label,
                    options=list(opt["choices"]),
                    defaultValue=opt["choices"].index(default),
                )
            )
        elif opt["type"] in ("float", "int"):
            kind = (
                QgsProcessingParameterNumber.Double
                if opt["type"] == "float"
                else QgsProcessingParameterNumber.Integer
            )
            param = QgsProcessingParameterNumber(
                name, label, kind, defaultValue=default, optional=default is None
            )
            if opt.get("min") is not None:
                param.setMinimum(opt["min"])
            if opt.get("max") is not None:
                param.setMaximum(opt["max"])
            params.append(param)
        elif opt["type"] == "bool":
            params.append(QgsProcessingParameterBoolean(name, label, defaultValue=bool(default)))
        else:
            params.append(
                QgsProcessingParameterString(name, label, defaultValue=default, optional=True)
            )
        params[-1].setHelp(opt.get("help", ""))
    return params


def processing_values(algorithm, parameters, context) -> dict[str, Any]:
    """Option name -> value read from a Processing run's parameters."""
    values: dict[str, Any] = {}
    for opt in UI_OPTIONS:
        name = parameter_name(opt)
        if opt.get("choices"):
            values[opt["name"]] = opt["choices"][
                algorithm.parameterAsEnum(parameters, name, context)
            ]
        elif opt["type"] == "float":
            values[opt["name"]] = algorithm.parameterAsDouble(parameters, name, context)
        elif opt["type"] == "int":
            unset = opt.get("default") is None and parameters.get(name) in (None, "")
            values[opt["name"]] = (
                None if unset else algorithm.parameterAsInt(parameters, name, context)
            )
        elif opt["type"] == "bool":
            values[opt["name"]] = algorithm.parameterAsBool(parameters, name, context)
        else:
            values[opt["name"]] = algorithm.parameterAsString(parameters, name, context) or None
    return values
