"""The "WaterSeg" dock: layout from dock.ui, behaviour here.

The dock collects a SegmentRequest, validates it (nothing starts on a mistake; the reason is
shown in the dock's message bar), queues a SegmentTask in QGIS's task manager and follows
its progress. Backend queries (``info --json``, ``model-info --json``, ``plan --json``) run as QProcess so
QGIS never waits for the backend. Which bundled model and which bands fit a layer is the
backend's decision: the dock asks ``python -m backend plan`` when the layer or the model changes
and pre-fills its band mapping and the "Using the bundled ... model" line from the answer.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
)
from qgis.gui import (
    QgsDockWidget,
    QgsFileWidget,
    QgsMapLayerComboBox,
    QgsMessageBar,
    QgsRasterBandComboBox,
)
from qgis.PyQt import uic
from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, QStandardPaths, Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .backend_process import (
    PLUGIN_ROOT,
    SETTINGS_KEY,
    backend_env,
    error_line,
    find_interpreter,
    parse_json_object,
    setup_hint,
)
from .change_algorithm import open_change_dialog
from .contract import BUNDLED_MODELS, METHODS, UI_OPTIONS
from .install import BackendInstallRow
from .layers import (
    EXPORT_MAX_PIXELS,
    EXPORT_WARN_PIXELS,
    export_extent,
    export_raster_extent,
    export_shoreline,
    layer_band_facts,
    layer_band_names,
    local_raster_path,
    safe_stem,
)
from .options import configure, make_widget, on_change, widget_name, widget_value
from .render import (
    RENDERED_BAND_FACTS,
    RenderCheck,
    check_render,
    native_resolution,
    render_layer_to_geotiff,
    renders_by_default,
    resolution_unit,
)
from .request import SegmentRequest, unique_out_dir
from .task import SegmentTask, log

FORM_CLASS, _ = uic.loadUiType(str(Path(__file__).with_name("dock.ui")))
MODELS_DIR = PLUGIN_ROOT / "resources" / "models"
AUTOMATIC = ""  # model picker data of "Bundled model (chosen from the layer's bands)"
RECENT_MODELS_KEY = "waterseg/recent_models"
OUT_DIR_KEY = "waterseg/out_dir"
DOCUMENTS_OUT_DIR_KEY = "waterseg/documents_out_dir"
COMBO_MIN_CHARS = 14  # a combo box shrinks to this many characters; its text elides beyond
MODEL_METHOD = "model"  # --method: the learned model; every other choice but auto is an index
AUTO_METHOD = "auto"
EXAMPLE_METHOD = "mixed-adaptive"  # named when auto cannot choose: the first auto tries


def make_shrinkable(combo: QComboBox) -> None:
    """Let ``combo`` shrink below its longest item, so that a long layer name or model label
    never widens the dock past a horizontal scrollbar."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(COMBO_MIN_CHARS)


def default_out_dir() -> str:
    """Where results go when the Output folder field is empty: a "waterseg" folder next to the
    saved project; for an unsaved project a "WaterSeg" folder in the user's documents, chosen
    once and remembered (QgsSettings ``waterseg/documents_out_dir``), never a temporary one."""
    project_dir = QgsProject.instance().absolutePath()
    if project_dir:
        return str(Path(project_dir) / "waterseg")
    settings = QgsSettings()
    remembered = settings.value(DOCUMENTS_OUT_DIR_KEY, "", type=str)
    if remembered:
        return remembered
    docs = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    folder = str(Path(docs or Path.home() / "Documents") / "WaterSeg")
    settings.setValue(DOCUMENTS_OUT_DIR_KEY, folder)
    return folder


def check_writable(folder: str) -> str | None:
    """None when ``folder`` exists (or can be made) and accepts files; else the reason."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".waterseg-write-test"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def bundled_model_path(key: str) -> str:
    """The file of bundled model ``key`` ("default", "rgbn", ...; see contract.BUNDLED_MODELS)."""
    return str(MODELS_DIR / BUNDLED_MODELS[key].file)


def bundled_key(path: str) -> str | None:
    """The key ("default", "rgbn", ...) when ``path`` is a bundled model file, else None."""
    for key in BUNDLED_MODELS:
        if path == bundled_model_path(key):
            return key
    return None


def summarize_model(info: dict) -> str:
    """One line about a checkpoint from ``model-info --json``."""
    arch = info.get("arch", "?")
    width = info.get("width")
    bands = " ".join(info.get("bands") or [])
    parts = [f"{arch}" + (f" ({width})" if width not in (None, "") else "")]
    parts.append(f"bands {bands}")
    metrics = info.get("metrics") or {}
    flat = metrics
    for split in ("test", "val"):
        if isinstance(metrics.get(split), dict):
            flat = {**metrics[split], "split": split}
            break
    shown = [
        f"{k} {flat[k]:.3f}"
        for k in ("iou_mean", "f1_water", "accuracy")
        if isinstance(flat.get(k), int | float)
    ]
    if shown:
        parts.append((f"{flat['split']} " if "split" in flat else "") + ", ".join(shown))
    if info.get("parameters"):
        parts.append(f"{int(info['parameters']) / 1e6:.2f} M parameters")
    return " · ".join(parts)


class WaterSegDock(QgsDockWidget, FORM_CLASS):
    """The WaterSeg dock widget (see the module docstring)."""

    def __init__(self, iface, parent=None):
        super().__init__(parent)
        self.setupUi(self)
        self.setObjectName("WaterSegDock")
        self.iface = iface
        self.tasks: list[SegmentTask] = []
        self.model_bands: list[str] = []
        self.auto_choice: str | None = None  # bundled model key the plan chose for the layer
        self.plan: dict | None = None  # the backend's last ``plan --json`` answer
        self.plan_error = ""  # its one-line error when the layer cannot be planned
        self.model_info: dict | None = None
        self.backend_info: dict | None = None
        self.band_combos: list[QgsRasterBandComboBox] = []
        self._processes: dict[str, QProcess] = {}
        self._shown_once = False
        self._logged: set[tuple[str, str]] = set()  # (layer, plan warning) already logged

        self.message_bar = QgsMessageBar(self)
        self.message_bar.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)  # may shrink
        # The bar hides itself when empty; its slot keeps the height of one message, so a
        # message that comes or goes never moves a widget under the cursor.
        slot = QWidget(self)
        slot_layout = QVBoxLayout(slot)
        slot_layout.setContentsMargins(0, 0, 0, 0)
        slot_layout.addWidget(self.message_bar)
        self.message_bar.pushMessage("WaterSeg", "-", Qgis.Info, 0)
        slot.setFixedHeight(self.message_bar.sizeHint().height())
        self.message_bar.clearWidgets()
        self.messageBarLayout.addWidget(slot)
        # Shoreline change through time (issue 19): opens its Processing dialog
        change_button = QPushButton("Shoreline change through time...", self)
        change_button.setObjectName("changeButton")
        change_button.setToolTip("Dated scenes -> transects, rates and plots (docs/change.md)")
        change_button.clicked.connect(lambda: open_change_dialog())
        self.mainLayout.addWidget(change_button)

        self.layerCombo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layerCombo.setAllowEmptyLayer(True)
        self.layerCombo.layerChanged.connect(self._on_layer_changed)
        QgsProject.instance().layersAdded.connect(self._on_layers_added)
        self._add_input_row()
        self.shorelineCombo.setFilters(QgsMapLayerProxyModel.LineLayer)
        self.shorelineCombo.setAllowEmptyLayer(True)

        self.option_widgets: dict[str, object] = {}  # contract option name -> its widget
        for opt in UI_OPTIONS:  # ranges, defaults and choices from the contract
            widget = getattr(self, widget_name(opt), None)
            if widget is None and opt.get("plan"):  # what runs (--method): above the model
                widget = make_widget(opt)
                row, _ = self.inputForm.getWidgetPosition(self.modelLabel)
                self.inputForm.insertRow(row, opt.get("label", opt["name"]), widget)
            elif widget is None:  # an option dock.ui does not place: a generated row
                widget = make_widget(opt)
                row = self.optionsForm.rowCount() - 1  # above the output folder
                self.optionsForm.insertRow(row, opt.get("label", opt["name"]), widget)
            configure(widget, opt)
            self.option_widgets[opt["name"]] = widget
            if opt.get("plan"):  # an option that changes the backend's plan: ask again
                on_change(widget, self.request_plan)
        # an optional elevation model: steep slopes are land (segment --dem, docs/segment.md)
        self.demCombo = QgsMapLayerComboBox(self)
        self.demCombo.setObjectName("demCombo")
        self.demCombo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.demCombo.setAllowEmptyLayer(True)
        self.demCombo.setLayer(None)
        self.demCombo.setToolTip(
            "Optional: heights in metres, any CRS (SRTM, Copernicus DEM). Slopes steeper than "
            "20 degrees are then land whatever the method says, which keeps hill shadow out of "
            "the water. Empty: no elevation is used"
        )
        row = self.optionsForm.rowCount() - 1  # above the output folder
        self.optionsForm.insertRow(row, "Elevation (DEM, optional)", self.demCombo)
        for opt in UI_OPTIONS:  # the rows dock.ui places are labelled as the contract says
            label = self.optionsForm.labelForField(self.option_widgets[opt["name"]])
            if label is not None and opt.get("label"):
                label.setText(opt["label"])
        method_combo = self.option_widgets["method"]
        for i in range(method_combo.count()):  # "ndwi (NDWI > 0)": the contract's labels
            method_combo.setItemText(i, METHODS[method_combo.itemData(i)].describe())

        settings = QgsSettings()
        self.outDirWidget.setStorageMode(QgsFileWidget.GetDirectory)
        self.outDirWidget.setFilePath(settings.value(OUT_DIR_KEY, "", type=str))
        self.outDirWidget.lineEdit().setPlaceholderText(
            "next to the saved project, else Documents/WaterSeg"
        )
        self.outDirWidget.fileChanged.connect(lambda p: QgsSettings().setValue(OUT_DIR_KEY, p))
        self.pythonWidget.setStorageMode(QgsFileWidget.GetFile)
        self.pythonWidget.setFilePath(settings.value(SETTINGS_KEY, "", type=str))
        self.pythonWidget.lineEdit().setPlaceholderText("found automatically")
        self.pythonWidget.fileChanged.connect(
            lambda p: QgsSettings().setValue(SETTINGS_KEY, p.strip())
        )

        self.modelCombo.addItem("Bundled model (chosen from the layer's bands)", AUTOMATIC)
        self.modelCombo.setToolTip(  # the contract's table, in the order it is tried
            "Automatic: the first bundled model that fits the layer: "
            + "; ".join(f"{m.label} when {m.when}" for m in BUNDLED_MODELS.values())
            + ". Or one of them by hand, or a WaterSeg checkpoint (.pt) you browsed to"
        )
        installed = [k for k in BUNDLED_MODELS if Path(bundled_model_path(k)).is_file()]
        for key in installed or list(BUNDLED_MODELS):  # none installed: show what is missing
            self.modelCombo.addItem(BUNDLED_MODELS[key].label, bundled_model_path(key))
        for path in settings.value(RECENT_MODELS_KEY, [], type=list) or []:
            if path and Path(path).is_file() and bundled_key(path) is None:
                self.modelCombo.addItem(Path(path).name, path)
        self.modelCombo.currentIndexChanged.connect(lambda _i: self.refresh_model_info())
        self.browseModelButton.clicked.connect(self._browse_model)

        self.runButton.clicked.connect(self.start_run)
        self.cancelButton.clicked.connect(self.cancel_runs)
        self.checkButton.clicked.connect(self.check_backend)
        self.install_row = BackendInstallRow(self)  # Install/Update backend (plugin/install.py)
        self.backendForm.insertRow(2, self.install_row)
        self.install_row.installed.connect(self._on_backend_installed)
        self.exportButton.clicked.connect(self._export_clicked)
        self.backendGroup.setCollapsed(True)

        self._rebuild_band_rows()
        self.layerCombo.blockSignals(True)
        self.layerCombo.setLayer(None)  # not whichever raster the combo listed first
        self.pick_default_layer()
        self.layerCombo.blockSignals(False)
        self._on_layer_changed(self.layerCombo.currentLayer())
        self._fit_width()

    def _fit_width(self) -> None:
        """A minimum width at which nothing is clipped: the scroll area is at least as wide as
        its contents' minimum (combo boxes made shrinkable first) plus a vertical scrollbar,
        so the dock never opens with a horizontal scrollbar."""
        for combo in self.scrollContents.findChildren(QComboBox):
            make_shrinkable(combo)
        for widget in self._method_rows():  # measured shown: a method may show them later
            widget.setVisible(True)
        for label in (self.statusLabel, self.modelInfoLabel, self.renderInfoLabel):  # never widen
            policy = label.sizePolicy()
            policy.setHorizontalPolicy(QSizePolicy.Ignored)
            label.setSizePolicy(policy)
        needed = (
            self.scrollContents.minimumSizeHint().width()
            + self.scrollArea.verticalScrollBar().sizeHint().width()
            + 2 * self.scrollArea.frameWidth()
        )
        self.scrollArea.setMinimumWidth(max(self.scrollArea.minimumWidth(), needed))
        # The scrollbar's room is always kept: a message or a group that opens or closes
        # changes the content's height, and a scrollbar coming and going with it would shift
        # every button sideways under the cursor.
        self.scrollArea.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        self._update_method_rows()

    # ---- non-file layers: render or export ------------------------------------------------

    def _add_input_row(self) -> None:
        """The "Input" rows under the layer, shown for layers without a local file: render the
        visible map extent (RGB, at a resolution) or export the layer's band values; and a
        line with the render's size in pixels and what to watch out for."""
        self.inputModeCombo = QComboBox()
        self.inputModeCombo.addItem("Render: visible map extent", "render")
        self.inputModeCombo.addItem("Export band values: visible extent", "export")
        self.inputModeCombo.setToolTip(
            "The layer is not a local file. Render draws it as shown on the map (XYZ, WMS: "
            "the bundled RGB model); export copies its band values."
        )
        self.resolutionSpin = QDoubleSpinBox()
        self.resolutionSpin.setDecimals(6)
        self.resolutionSpin.setRange(1e-6, 1e7)
        self.resolutionSpin.setToolTip(
            "Rendered pixel size, in units of the map's CRS. It follows the map (the source's "
            "finest resolution, or the map's when that is coarser) until you edit it"
        )
        self.resolutionAutoButton = QToolButton()
        self.resolutionAutoButton.setText("Auto")
        self.resolutionAutoButton.setCheckable(True)
        self.resolutionAutoButton.setChecked(True)
        self.resolutionAutoButton.setToolTip(
            "Checked: the resolution follows the map. Editing the resolution unchecks it"
        )
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.inputModeCombo, 1)
        self.inputModeRow = QWidget()
        self.inputModeRow.setLayout(row)
        self.inputModeLabel = QLabel("Input")
        self.inputForm.insertRow(1, self.inputModeLabel, self.inputModeRow)
        resolution_row = QHBoxLayout()
        resolution_row.setContentsMargins(0, 0, 0, 0)
        resolution_row.addWidget(self.resolutionSpin, 1)
        resolution_row.addWidget(self.resolutionAutoButton)
        self.resolutionRow = QWidget()
        self.resolutionRow.setLayout(resolution_row)
        self.resolutionLabel = QLabel("Resolution")
        self.inputForm.insertRow(2, self.resolutionLabel, self.resolutionRow)
        self.renderInfoLabel = QLabel()
        self.renderInfoLabel.setWordWrap(True)
        self.renderInfoLabel.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.inputForm.insertRow(3, self.renderInfoLabel)
        self._input_row_layer = None
        self._setting_resolution = False  # True while the dock itself sets the spin box
        self.inputModeCombo.currentIndexChanged.connect(
            lambda _i: self._on_layer_changed(self.layerCombo.currentLayer())
        )
        self.resolutionSpin.valueChanged.connect(self._on_resolution_edited)
        self.resolutionAutoButton.toggled.connect(lambda _on: self.follow_map())
        canvas = self._canvas()
        if canvas is not None:  # the render follows the map: extent, scale and CRS
            canvas.extentsChanged.connect(self.follow_map)
            canvas.destinationCrsChanged.connect(self.follow_map)

    def _canvas(self):
        return self.iface.mapCanvas() if self.iface is not None else None

    def _on_resolution_edited(self, _value: float) -> None:
        if not self._setting_resolution:  # the user's value: no longer follows the map
            self.resolutionAutoButton.blockSignals(True)
            self.resolutionAutoButton.setChecked(False)
            self.resolutionAutoButton.blockSignals(False)
        self._show_render_check()

    def _render_area(self, layer):
        """(extent, CRS) a render covers: the map's visible extent, else the layer's."""
        canvas = self._canvas()
        if canvas is not None and not canvas.extent().isEmpty():
            return canvas.extent(), canvas.mapSettings().destinationCrs()
        return layer.extent(), layer.crs()

    def auto_resolution(self, layer) -> float:
        """The resolution that follows the map: the source's finest (XYZ zoom levels, a
        file's pixels) where the map shows it finer, else the map's; the map's alone when the
        source does not say; 10 map units without a map."""
        extent, crs = self._render_area(layer)
        canvas = self._canvas()
        upp = canvas.mapUnitsPerPixel() if canvas is not None else 0.0
        native = native_resolution(layer, crs, extent.center())
        candidates = [r for r in (upp, native) if r and r > 0]
        return max(candidates) if candidates else 10.0

    def follow_map(self, *_args) -> None:
        """Set the resolution from the map while Auto is checked, and show the render's size."""
        layer = self.layerCombo.currentLayer()
        if not self.rendering():
            return
        self._setting_resolution = True
        _, crs = self._render_area(layer)
        self.resolutionSpin.setDecimals(9 if crs.isGeographic() else 6)  # 1e-9 deg: 0.1 mm
        if self.resolutionAutoButton.isChecked():
            self.resolutionSpin.setValue(self.auto_resolution(layer))
        self._setting_resolution = False
        self._show_render_check()

    def render_check(self, layer=None) -> RenderCheck:
        """What rendering ``layer`` (the current one) at the Resolution row would give."""
        layer = layer or self.layerCombo.currentLayer()
        extent, crs = self._render_area(layer)
        key = self.auto_choice or bundled_key(self.model_path())
        model = BUNDLED_MODELS[key] if key in BUNDLED_MODELS else None
        return check_render(
            extent,
            crs,
            self.resolutionSpin.value(),
            native_resolution(layer, crs, extent.center()),
            model.resolution_m if model is not None else None,
        )

    def _show_render_check(self) -> None:
        """The line under the Resolution row: size in pixels, then a refusal or warnings."""
        if not self.rendering():
            self.renderInfoLabel.setText("")
            return
        layer = self.layerCombo.currentLayer()
        _, crs = self._render_area(layer)
        self.resolutionSpin.setSuffix(f" {resolution_unit(crs)}")
        check = self.render_check(layer)
        size = f"{check.cols} x {check.rows} px of the visible extent" if check.cols else ""
        follows = "follows the map" if self.resolutionAutoButton.isChecked() else "set by hand"
        if check.refusal:
            text = f"Cannot render: {check.refusal}"
        else:
            text = "; ".join([f"{size} ({follows})", *check.warnings])
        self.renderInfoLabel.setText(text)

    def _update_input_row(self, layer) -> None:
        """Show the rows for non-file layers; default to render for picture providers, and
        let the resolution follow the map again for each new layer."""
        shown = isinstance(layer, QgsRasterLayer) and local_raster_path(layer) is None
        self.inputModeLabel.setVisible(shown)
        self.inputModeRow.setVisible(shown)
        if shown and layer.id() != self._input_row_layer:
            self._input_row_layer = layer.id()
            self.inputModeCombo.blockSignals(True)
            self.inputModeCombo.setCurrentIndex(0 if renders_by_default(layer) else 1)
            self.inputModeCombo.blockSignals(False)
            self.resolutionAutoButton.blockSignals(True)
            self.resolutionAutoButton.setChecked(True)
            self.resolutionAutoButton.blockSignals(False)
        rendering = self.rendering()
        for widget in (self.resolutionLabel, self.resolutionRow, self.renderInfoLabel):
            widget.setVisible(rendering)
        self.follow_map()

    def rendering(self) -> bool:
        """True when the run renders the layer (not a local file, "Render" chosen)."""
        layer = self.layerCombo.currentLayer()
        return (
            isinstance(layer, QgsRasterLayer)
            and local_raster_path(layer) is None
            and self.inputModeCombo.currentData() == "render"
        )

    def input_band_count(self, layer) -> int:
        """Bands of what the backend reads: 4 (RGBA) when rendering, else the layer's."""
        return len(RENDERED_BAND_FACTS["names"]) if self.rendering() else layer.bandCount()

    def _band_layer(self):
        """The layer the band combos list (None when rendering: bands are typed numbers)."""
        return None if self.rendering() else self.layerCombo.currentLayer()

    def _render_job(self, layer):
        """A job(path) rendering the visible map extent of ``layer`` (in the map's CRS, at
        the Resolution row's) to a GeoTIFF, or None after saying why it cannot: an absurd
        size is refused here, before anything is rendered."""
        self.follow_map()  # never a stale resolution, even if a map signal was missed
        extent, crs = self._render_area(layer)
        resolution = self.resolutionSpin.value()
        check = self.render_check(layer)
        if check.refusal:
            self.show_message(f"Layer '{layer.name()}': {check.refusal}.")
            return None
        cols, rows = check.cols, check.rows
        notes = list(check.warnings)
        if cols * rows > EXPORT_WARN_PIXELS:
            notes.append("this may take a while")
        if notes:
            self.show_message(
                f"Rendering {cols} x {rows} px of '{layer.name()}': {'; '.join(notes)}.",
                Qgis.Warning,
                10,
            )
        return functools.partial(
            render_layer_to_geotiff,
            layer.clone(),  # made here, on the main thread; the task renders it
            QgsRectangle(extent),
            QgsCoordinateReferenceSystem(crs),
            resolution,
        )

    # ---- messages -------------------------------------------------------------------------

    def show_message(self, text: str, level=Qgis.Warning, duration: int = 0) -> None:
        """Show ``text`` in the dock's message bar (and the log)."""
        self.message_bar.clearWidgets()
        self.message_bar.pushMessage("WaterSeg", text, level, duration)
        self.statusLabel.setText(text)
        log(text, level)

    def clear_messages(self) -> None:
        """Remove the dock's own messages (earlier warnings no longer apply)."""
        self.message_bar.clearWidgets()

    def last_message(self) -> str:
        item = self.message_bar.currentItem()
        return item.text() if item is not None else ""

    # ---- model and bands ------------------------------------------------------------------

    def is_automatic(self) -> bool:
        """True when the picker says "Bundled model (chosen from the layer's bands)"."""
        return not self.modelCombo.currentData()

    def model_path(self) -> str:
        """The checkpoint a run uses: the picked file, or in automatic mode the bundled model
        chosen for the current layer."""
        if self.modelCombo.currentData():
            return self.modelCombo.currentData()
        return bundled_model_path(self.auto_choice) if self.auto_choice else ""

    def set_model_path(self, path: str) -> None:
        """Select (adding if needed) a checkpoint in the model picker and read its info."""
        idx = self.modelCombo.findData(path)
        if idx < 0:
            self.modelCombo.addItem(Path(path).name, path)
            idx = self.modelCombo.count() - 1
            recent = [
                p for p in QgsSettings().value(RECENT_MODELS_KEY, [], type=list) or [] if p != path
            ]
            QgsSettings().setValue(RECENT_MODELS_KEY, ([path] + recent)[:8])
        if idx == self.modelCombo.currentIndex():
            self.refresh_model_info()
        else:
            self.modelCombo.setCurrentIndex(idx)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a WaterSeg model", str(Path.home()), "WaterSeg checkpoint (*.pt)"
        )
        if path:
            self.set_model_path(path)

    def refresh_model_info(self) -> None:
        """Show the selected model: in automatic mode which bundled model fits the layer and
        why; otherwise ask the backend (``model-info --json``) about the checkpoint."""
        self.model_info = None
        self.request_plan()
        if self.is_automatic():
            self._cancel_query("model")
            return
        path = self.model_path()
        key = bundled_key(path)
        if key is not None:  # known bands now; model-info confirms them and adds the scores
            self._set_model_bands(list(BUNDLED_MODELS[key].bands))
        if not Path(path).is_file():
            self.modelInfoLabel.setText(
                f"Model file missing: {path}"
                + (" (the bundled model is not installed)" if key else "")
            )
            return
        interp = find_interpreter(self.pythonWidget.filePath())
        if not interp.ok:
            self.modelInfoLabel.setText(f"Cannot read the model: {interp.problem}")
            return
        self.modelInfoLabel.setText("Reading the model…")
        self._run_json("model", interp.path, ["model-info", path, "--json"], self._on_model_info)

    def _on_model_info(self, info: dict | None, error: str) -> None:
        if info is None:
            self.modelInfoLabel.setText(f"Cannot read the model: {error}")
            return
        self.model_info = info
        self.modelInfoLabel.setText(summarize_model(info))
        if self.plan is None:  # the plan answers with the same bands and the mapping
            self._set_model_bands([str(b) for b in info.get("bands") or []])

    def request_plan(self) -> None:
        """Ask the backend (``plan --json``) which model and bands fit the current layer;
        :meth:`_on_plan` shows the answer."""
        self.plan, self.plan_error = None, ""
        layer = self.layerCombo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            self._cancel_query("plan")
            if self.is_automatic():
                self.auto_choice = None
            self._show_unplanned("chosen from the layer's bands once you pick a raster layer", True)
            return
        interp = find_interpreter(self.pythonWidget.filePath())
        if not interp.ok:
            self._cancel_query("plan")
            self.plan_error = f"cannot read the layer's bands: {interp.problem}"
            if self.is_automatic():
                self.auto_choice = None
            self._show_unplanned(self.plan_error)
            return
        path = local_raster_path(layer)
        if path:
            args = ["plan", path]
        else:
            facts = RENDERED_BAND_FACTS if self.rendering() else layer_band_facts(layer)
            args = ["plan", "--band-names", json.dumps(facts["names"]), "--dtype", facts["dtype"]]
            if facts["colour_interp"]:
                args += ["--colour-interp", ",".join(facts["colour_interp"])]
        for opt in UI_OPTIONS:  # options the plan depends on (e.g. --method)
            if opt.get("plan"):
                args += [f"--{opt['name']}", str(widget_value(self.option_widgets[opt["name"]]))]
        if not self.is_automatic():
            args += ["--model", self.model_path()]
        else:
            self.modelInfoLabel.setText("Reading the layer's bands…")
        self._run_json("plan", interp.path, [*args, "--json"], self._on_plan)

    def _on_plan(self, plan: dict | None, error: str) -> None:
        self.plan, self.plan_error = plan, error
        if plan is None:
            if self.is_automatic():
                self.auto_choice = None
            self._show_unplanned(error)
            for combo in self.band_combos:
                combo.setBand(-1)
            return
        model = plan.get("model") or {}
        method = self.resolved_method()
        why = str(model.get("why") or "")
        if method != MODEL_METHOD:
            how = (
                "chosen from the layer's bands" if self.chosen_method() == AUTO_METHOD else "reads"
            )
            bands = " ".join(model.get("bands") or [])
            self.modelInfoLabel.setText(
                f"Method: {METHODS[method].describe()}, no model; {how} {bands}"
            )
        elif self.is_automatic():
            self.auto_choice = model.get("key")
            text = why
            path = self.model_path()
            if path and not Path(path).is_file():
                text += f", but {path} is missing: reinstall the plugin"
            self.modelInfoLabel.setText(text)
        self.modelInfoLabel.setToolTip(why)
        self._set_model_bands([str(b) for b in model.get("bands") or []])
        self._update_method_rows()
        self._show_render_check()  # the model's training resolution is known now
        name = self.layerCombo.currentLayer().name()
        for note in plan.get("warnings") or []:
            if (name, note) not in self._logged:  # a re-plan of the same layer: said once
                self._logged.add((name, note))
                log(f"{name}: {note}")

    # ---- what runs: the method, and the rows that apply to it -----------------------------

    def chosen_method(self) -> str:
        """The Method row's choice ("auto", "model", "ndwi", ...)."""
        return str(widget_value(self.option_widgets["method"]))

    def resolved_method(self) -> str | None:
        """The method a run uses: the plan's answer (auto resolved), else the Method row's
        choice when it is not auto, else the model when one is picked by hand (as segment
        resolves auto with --model); None while auto is unresolved (no plan)."""
        if self.plan is not None and self.plan.get("method"):
            return str(self.plan["method"])
        method = self.chosen_method()
        if method == AUTO_METHOD:
            return None if self.is_automatic() else MODEL_METHOD
        return method

    def _show_unplanned(self, reason: str, no_layer: bool = False) -> None:
        """No plan for the layer (``no_layer``: none chosen yet; else no backend, or bands
        the backend cannot match): say what will run, as far as the dock knows, and offer the
        rows of an explicit index method to map by hand."""
        method = self.resolved_method()
        if method is None or (method == MODEL_METHOD and self.is_automatic()):
            self._set_model_bands([])  # no model known yet: no rows to map
        if no_layer:
            text = f"Method {self.chosen_method()}: {reason}"
        elif method is None:
            example = f"{EXAMPLE_METHOD}: {' '.join(METHODS[EXAMPLE_METHOD].bands)}"
            text = (
                f"Cannot use this layer with method auto: {reason}. Choose a method and map "
                f"its bands (e.g. {example})"
            )
        elif method == MODEL_METHOD:
            text = f"Cannot use this layer: {reason}"
            if self.is_automatic():
                text += ". Choose a model to map its bands by hand"
        else:
            bands = " ".join(METHODS[method].bands)
            layer = self.layerCombo.currentLayer()
            unnamed = not self.rendering() and all(
                re.fullmatch(r"Band \d+", name) for name in layer_band_names(layer)
            )
            text = f"Method: {METHODS[method].describe()}, no model; " + (
                f"the layer's bands have no names: map {bands} below"
                if unnamed
                else f"{reason}; map {bands} below"
            )
            self._set_model_bands(list(METHODS[method].bands))
        self.modelInfoLabel.setText(text)
        self.modelInfoLabel.setToolTip(reason)
        self._update_method_rows()

    def _method_rows(self) -> tuple:
        """The widgets of the rows only the learned model uses: the model picker and the
        water probability threshold."""
        return (
            self.modelLabel,
            self.modelCombo,
            self.browseModelButton,
            self.thresholdLabel,
            self.thresholdSpin,
        )

    def _update_method_rows(self) -> None:
        """Show the rows that apply to the method that will run: the model picker and the
        water probability threshold only for the learned model; the auto choice's resolution
        in the Method row; the band mapping titled after what reads the bands."""
        method = self.resolved_method()
        uses_model = method == MODEL_METHOD
        for widget in self._method_rows():  # an index has no model, and its own threshold
            widget.setVisible(uses_model)
        combo = self.option_widgets["method"]
        auto = combo.findData(AUTO_METHOD)
        chosen = self.chosen_method() == AUTO_METHOD and method  # "auto: mixed-adaptive"
        combo.setItemText(auto, f"auto: {method}" if chosen else METHODS[AUTO_METHOD].describe())
        reader = "the model" if uses_model or method is None else method
        # not in the title: a group box is at least as wide as its title
        self.bandsGroup.setToolTip(f"Which layer band is each band {reader} reads")
        self.bandsGroup.setVisible(bool(self.model_bands))

    def _set_model_bands(self, bands: list[str]) -> None:
        """Show one mapping row per model band (rebuilt only when the bands change)."""
        if bands != self.model_bands:
            self.model_bands = list(bands)
            self._rebuild_band_rows()
        self._fill_band_mapping()

    def _rebuild_band_rows(self) -> None:
        while self.bandsForm.rowCount():
            self.bandsForm.removeRow(0)
        self.band_combos = []
        for name in self.model_bands:
            combo = QgsRasterBandComboBox()
            make_shrinkable(combo)
            combo.setLayer(self._band_layer())
            self.bandsForm.addRow(QLabel(name), combo)
            self.band_combos.append(combo)
        self._fill_band_mapping()

    def _fill_band_mapping(self) -> None:
        """Set the mapping rows from the backend's plan (unset until it answers)."""
        layer = self.layerCombo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            return
        mapping = list((self.plan or {}).get("bands") or [])
        planned = list((self.plan or {}).get("model", {}).get("bands") or [])
        if planned != self.model_bands:
            mapping = []
        for i, combo in enumerate(self.band_combos):
            band = mapping[i] if i < len(mapping) else -1
            combo.setBand(band if band <= self.input_band_count(layer) else -1)

    def pick_default_layer(self) -> bool:
        """When no raster layer is chosen, choose the active layer if it is a raster, else the
        project's only raster layer. True when a layer was chosen."""
        if self.layerCombo.currentLayer() is not None:
            return False
        active_layer = getattr(self.iface, "activeLayer", None)
        layer = active_layer() if active_layer is not None else None
        if not (isinstance(layer, QgsRasterLayer) and layer.isValid()):
            rasters = [
                lyr
                for lyr in QgsProject.instance().mapLayers().values()
                if isinstance(lyr, QgsRasterLayer)
            ]
            if len(rasters) != 1:
                return False
            layer = rasters[0]
        self.layerCombo.setLayer(layer)
        return self.layerCombo.currentLayer() is layer

    def _on_layers_added(self, layers) -> None:
        """A raster added while none is chosen (the first one of a project): choose it."""
        if any(isinstance(lyr, QgsRasterLayer) for lyr in layers):
            self.pick_default_layer()

    def _on_layer_changed(self, layer) -> None:
        if isinstance(layer, QgsRasterLayer):
            self.clear_messages()  # a valid choice: "Choose a raster layer…" no longer applies
        if not self.active_tasks():  # the last run's line and bar were about another layer
            self.statusLabel.setText("")
            self.progressBar.setValue(0)
        self._update_input_row(layer)
        for combo in self.band_combos:
            combo.setLayer(self._band_layer())
        self.request_plan()

    def band_mapping(self) -> list[int]:
        return [combo.currentBand() for combo in self.band_combos]

    # ---- backend diagnostics ----------------------------------------------------------------

    def check_backend(self) -> None:
        """Report interpreter, torch, CUDA and device; say how to fix a missing backend."""
        self.backendGroup.setCollapsed(False)
        interp = find_interpreter(self.pythonWidget.filePath())
        if not interp.ok:
            self.diagnosticsText.setPlainText(f"Backend missing.\n{interp.problem}")
            self.show_message(f"Backend missing: {interp.problem}", Qgis.Warning)
            return
        self.diagnosticsText.setPlainText(
            f"Python: {interp.path} ({interp.source})\nChecking torch…"
        )
        self._run_json(
            "info",
            interp.path,
            ["info", "--json"],
            lambda info, err: self._on_info(interp, info, err),
        )

    def _on_backend_installed(self, result) -> None:
        """After Install backend: show the new backend, and read the layer's bands with it."""
        if result.ok:
            self.check_backend()
            self.request_plan()

    def _on_info(self, interp, info: dict | None, error: str) -> None:
        if info is None:
            text = (
                f"Python: {interp.path} ({interp.source})\nThe backend does not start: {error}\n"
                f"Fix: {setup_hint()}."
            )
            self.diagnosticsText.setPlainText(text)
            return
        self.backend_info = info
        cuda = info.get("cuda_available")
        devices = ", ".join(str(d) for d in info.get("cuda_devices") or []) or "none"
        lines = [
            f"Python: {info.get('python', interp.path)} ({interp.source}), Python {info.get('python_version', '?')}",
            f"torch: {info.get('torch', 'not installed')}",
            f"CUDA: {'available (' + devices + ')' if cuda else 'not available'}",
            f"Device used by 'auto': {info.get('device', '?')}",
            f"Default model: {'ok' if info.get('default_model_ok') else 'missing or corrupt'}",
        ]
        if not info.get("torch"):
            lines.append(f"Fix: {setup_hint()}")
        self.diagnosticsText.setPlainText("\n".join(lines))
        self.deviceCombo.setItemText(0, f"auto ({info.get('device', '?')})")
        self.deviceCombo.setItemText(2, "cuda" if cuda else "cuda (not available)")

    def _cancel_query(self, purpose: str) -> None:
        """Stop a running backend query (its answer would be stale)."""
        old = self._processes.pop(purpose, None)
        if old is not None:
            old.finished.disconnect()
            old.kill()
            old.waitForFinished(2000)

    def _run_json(self, purpose: str, python: str, args: list[str], callback) -> None:
        self._cancel_query(purpose)
        proc = QProcess(self)
        env = QProcessEnvironment()
        for k, v in backend_env().items():
            env.insert(k, v)
        proc.setProcessEnvironment(env)
        proc.setWorkingDirectory(str(PLUGIN_ROOT))
        proc.setProgram(python)
        proc.setArguments(["-m", "backend", *args])

        def done(code, _status, proc=proc):
            out = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace")
            err = bytes(proc.readAllStandardError()).decode("utf-8", "replace")
            if self._processes.get(purpose) is proc:
                del self._processes[purpose]
            proc.deleteLater()
            if code != 0:
                callback(None, error_line(err) or f"exit code {code}")
                return
            try:
                callback(parse_json_object(out), "")
            except RuntimeError as exc:
                callback(None, str(exc))

        proc.finished.connect(done)
        self._processes[purpose] = proc
        proc.start()

    def busy_queries(self) -> bool:
        return bool(self._processes)

    # ---- run ----------------------------------------------------------------------------------

    def build_request(self) -> tuple[SegmentRequest, object] | None:
        """Validate the dock; returns (request, export job or None), or None after showing why."""
        layer = self.layerCombo.currentLayer()
        if not isinstance(layer, QgsRasterLayer) or not layer.isValid():
            self.show_message(
                "Choose a raster layer to segment (add a satellite image to the project first)."
            )
            return None
        if "plan" in self._processes:
            self.show_message("Still reading the layer's bands: try again in a moment.")
            return None
        method = self.resolved_method()
        if method is None or (method == MODEL_METHOD and self.is_automatic() and not self.plan):
            fix = (
                "choose a method and map its bands (Band mapping)"
                if method is None
                else "choose a model and map its bands (Band mapping)"
            )
            self.show_message(f"Layer '{layer.name()}': {self.plan_error or 'no plan yet'}; {fix}.")
            return None
        need = len(self.model_bands)
        band_count = self.input_band_count(layer)
        if band_count < need:
            fix = "choose a multispectral image"
            if bundled_key(self.model_path()) and layer.bandCount() >= 3:
                fix += " or the automatic bundled model"  # e.g. the SWIR model on 4 bands
            self.show_message(
                f"Layer '{layer.name()}' has {layer.bandCount()} band(s) but the model needs "
                f"{need} ({' '.join(self.model_bands)}): {fix}."
            )
            return None
        bands = self.band_mapping()
        reader = "model" if method == MODEL_METHOD else method
        if any(b < 1 or b > band_count for b in bands):
            self.show_message(
                f"Map every {reader} band ({' '.join(self.model_bands)}) to a band of the layer "
                "(Band mapping)."
            )
            return None
        twice = sorted({b for b in bands if bands.count(b) > 1})
        if twice:
            self.show_message(
                f"Layer band {twice[0]} is mapped to two {reader} bands: map each of "
                f"{' '.join(self.model_bands)} to its own layer band (Band mapping)."
            )
            return None
        needs_model = method == MODEL_METHOD  # an index method needs no checkpoint
        model = self.model_path() if needs_model else None
        if needs_model and not Path(model).is_file():
            self.show_message(
                f"The bundled model {model} is missing: reinstall the plugin, or browse to a "
                "WaterSeg checkpoint (.pt)."
                if bundled_key(model)
                else f"Model file not found: {model}. Browse to a WaterSeg checkpoint (.pt)."
            )
            return None
        dem = None
        dem_layer = self.demCombo.currentLayer()
        if dem_layer is not None:
            dem = local_raster_path(dem_layer)
            if dem is None:
                self.show_message(
                    f"Elevation layer '{dem_layer.name()}' is not a local raster file: save it "
                    "as GeoTIFF (Export > Save As), or leave Elevation empty."
                )
                return None
        out_dir = self.outDirWidget.filePath().strip() or default_out_dir()
        problem = check_writable(out_dir)
        if problem:
            self.show_message(
                f"Cannot write to the output folder {out_dir} ({problem}): choose another folder."
            )
            return None
        interp = find_interpreter(self.pythonWidget.filePath())
        if not interp.ok:
            self.show_message(f"Backend missing: {interp.problem}")
            return None

        export_job = None
        path = local_raster_path(layer)
        temporary = path is None
        if temporary and self.rendering():
            export_job = self._render_job(layer)  # the task calls it with a temporary path
            if export_job is None:
                return None
            path = f"{safe_stem(layer.name())}.tif"
        elif temporary:
            canvas = self.iface.mapCanvas() if self.iface is not None else None
            extent, cols, rows = export_extent(
                layer,
                canvas.extent() if canvas else None,
                canvas.mapSettings().destinationCrs() if canvas else None,
                canvas.mapUnitsPerPixel() if canvas else None,
            )
            pixels = cols * rows
            if pixels > EXPORT_MAX_PIXELS:
                self.show_message(
                    f"Layer '{layer.name()}' is not a local file and its visible part is {cols} x {rows} px, "
                    "too large to export: zoom in, or save the layer as GeoTIFF (Export > Save As) first."
                )
                return None
            if pixels > EXPORT_WARN_PIXELS:
                self.show_message(
                    f"Exporting {cols} x {rows} px of '{layer.name()}' to a temporary GeoTIFF; this may take a while.",
                    Qgis.Warning,
                    10,
                )
            # the task makes the temporary folder when it exports, and removes it at the end
            path = f"{safe_stem(layer.name())}.tif"
            provider = layer.dataProvider().clone()
            crs = layer.crs()
            context = QgsProject.instance().transformContext()

            def export_job(path, provider=provider, crs=crs, extent=extent, cols=cols, rows=rows):
                export_raster_extent(provider, crs, path, extent, cols, rows, context)

        options = {name: widget_value(w) for name, w in self.option_widgets.items()}
        # auto as the plan resolved it for this layer; sent as is, "auto" with the explicit
        # --bands below would make segment run a model on the index's bands
        options["method"] = method
        if method != MODEL_METHOD:  # hidden: an index has its own threshold (0 or per scene)
            options.pop("threshold", None)
        request = SegmentRequest(
            layer_name=layer.name(),
            input_path=path,
            out_dir=out_dir,
            bands=bands,
            model_path=model,  # a concrete file, bundled ones included (the backend checks them)
            options=options,
            python=interp.path,
            temporary_input=temporary,
            dem_path=dem,
        )
        # never replace earlier results (nor those of runs under way): a run whose outputs
        # exist writes into its own sub-folder <stem>-2/, <stem>-3/, ... (no --overwrite)
        busy = {str(t.request.expected_outputs()["mask"]) for t in self.active_tasks()}
        request.out_dir = unique_out_dir(out_dir, request.stem, busy)
        request.own_out_dir = request.out_dir != out_dir
        return request, export_job

    def start_run(self) -> SegmentTask | None:
        """Validate, then queue a SegmentTask. Returns the task, or None when nothing started."""
        self.clear_messages()  # earlier warnings: this attempt says again what still applies
        built = self.build_request()
        if built is None:
            return None
        request, export_job = built
        task = SegmentTask(request, self.iface)
        task.export_job = export_job
        task.progressChanged.connect(lambda p: self.progressBar.setValue(int(p)))
        task.message.connect(self.statusLabel.setText)
        task.completed.connect(self._on_task_completed)
        task.taskTerminated.connect(lambda: self._update_buttons())
        self.tasks.append(task)
        self.progressBar.setValue(0)
        self.statusLabel.setText(f"queued: {request.layer_name}")
        method = METHODS[str(request.options["method"])]
        log(
            f"queued segmentation of {request.layer_name}. {method.log_line()}. Backend: "
            f"{request.python} -m backend {' '.join(request.backend_args())}"
        )
        QgsApplication.taskManager().addTask(task)
        self._update_buttons()
        return task

    def active_tasks(self) -> list[SegmentTask]:
        alive = []
        for t in self.tasks:
            try:
                if t.status() not in (t.Complete, t.Terminated):
                    alive.append(t)
            except RuntimeError:  # C++ object already deleted
                pass
        self.tasks = alive
        return list(alive)

    def cancel_runs(self) -> None:
        """Cancel every WaterSeg run started from this dock (running or queued)."""
        for task in self.active_tasks():
            task.cancel()
        self.statusLabel.setText("cancelling…")

    def _on_task_completed(self, task, result, mask_layer, shoreline_layer) -> None:
        if shoreline_layer is not None:
            self.shorelineCombo.setLayer(shoreline_layer)
        if result.ok:
            self.clear_messages()
            self.progressBar.setValue(100)
            found = f"; {result.summary}" if result.summary else ""
            self.statusLabel.setText(
                f"done: {task.request.layer_name} ({result.elapsed_s:.1f} s{found})"
            )
        elif result.cancelled:
            self.progressBar.setValue(0)
            self.show_message(f"Cancelled: {task.request.layer_name}", Qgis.Info, 5)
            self.statusLabel.setText("cancelled")
        else:
            self.progressBar.setValue(0)  # not left where the run stopped
            self.statusLabel.setText(f"failed: {result.error}")
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = bool(self.active_tasks())
        self.cancelButton.setEnabled(busy)

    # ---- export ---------------------------------------------------------------------------------

    def _export_clicked(self) -> None:
        layer = self.shorelineCombo.currentLayer()
        if layer is None:
            self.show_message("No shoreline layer to export: run 'Segment water' first.")
            return
        start = str(
            Path(self.outDirWidget.filePath() or default_out_dir())
            / f"{safe_stem(layer.name())}.shp"
        )
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export shoreline", start, "ESRI Shapefile (*.shp);;GeoPackage (*.gpkg)"
        )
        if not path:
            return
        if "gpkg" in chosen and not path.lower().endswith(".gpkg"):
            path += ".gpkg"
        self.export_shoreline_to(layer, path)

    def export_shoreline_to(self, layer, path: str) -> str | None:
        try:
            written = export_shoreline(layer, path)
        except RuntimeError as exc:
            self.show_message(f"Export failed: {exc}", Qgis.Critical)
            return None
        self.show_message(f"Shoreline saved to {written}", Qgis.Success, 5)
        return written

    # ---- lifecycle ----------------------------------------------------------------------------

    def showEvent(self, event):  # noqa: N802 (Qt)
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self.refresh_model_info()
            self.install_row.offer_on_start(self.pythonWidget.filePath())
        self.pick_default_layer()

    def shutdown(self) -> None:
        """Stop helper processes and cancel runs (plugin unload)."""
        canvas = self._canvas()
        if canvas is not None:
            for signal in (canvas.extentsChanged, canvas.destinationCrsChanged):
                try:
                    signal.disconnect(self.follow_map)
                except TypeError:  # already disconnected
                    pass
        self.install_row.shutdown()
        try:
            QgsProject.instance().layersAdded.disconnect(self._on_layers_added)
        except TypeError:  # already disconnected
            pass
        for proc in list(self._processes.values()):
            proc.finished.disconnect()
            proc.kill()
            proc.waitForFinished(2000)
        self._processes.clear()
        for task in self.active_tasks():
            task.cancel()
