"""Processing algorithm "Shoreline change through time": the backend's ``change`` command
(dated scenes -> batch masks and shorelines -> transects, positions, DSAS rates, plots) as a
subprocess, with its progress in QgsProcessingFeedback. When it ends, the transects layer
(styled by rate: a diverging ramp, resources/styles/transects_rate.qml) and the positions
layer are loaded, and the HTML report (overview figure, per-transect plots) is the
algorithm's HTML output, which the Processing results viewer opens. The plugin never imports
the backend: see docs/change.md."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsSettings,
)

from .backend_process import (
    PLUGIN_ROOT,
    SETTINGS_KEY,
    BackendRun,
    backend_command,
    find_interpreter,
)
from .layers import local_raster_path

ALGORITHM_ID = "waterseg:shorelinechange"
TRANSECTS_STYLE = PLUGIN_ROOT / "resources" / "styles" / "transects_rate.qml"
CROSSING_RULES = ["nearest", "seaward", "landward", "none"]  # backend/change/positions.py
# Share of the progress bar for the batch (segmentation) stage; the rest is the analysis.
BATCH_SHARE = 0.7
_POST_PROCESSORS: list = []  # QGIS keeps no reference of its own: keep them alive here


class _LoadStyle(QgsProcessingLayerPostProcessorInterface):
    """Applies a QML style to a layer loaded on completion."""

    def __init__(self, qml: Path):
        super().__init__()
        self.qml = str(qml)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        if layer is not None and Path(self.qml).is_file():
            layer.loadNamedStyle(self.qml)
            layer.triggerRepaint()


def open_change_dialog() -> None:
    """Open the Processing dialog of this algorithm (the dock's entry point)."""
    import processing

    processing.execAlgorithmDialog(ALGORITHM_ID, {})


class ShorelineChangeAlgorithm(QgsProcessingAlgorithm):
    """Dated scenes (layers and/or a folder), or a finished batch -> change layers and report."""

    LAYERS = "LAYERS"
    FOLDER = "FOLDER"
    BATCH_DIR = "BATCH_DIR"
    DATES = "DATES"
    TRANSECTS = "TRANSECTS"
    BASELINE = "BASELINE"
    SPACING = "SPACING"
    LENGTH = "LENGTH"
    CROSSING = "CROSSING"
    MAX_CHANGE = "MAX_CHANGE"
    MEDIAN_WINDOW = "MEDIAN_WINDOW"
    MEDIAN_THRESHOLD = "MEDIAN_THRESHOLD"
    KEEP_FLAGGED = "KEEP_FLAGGED"
    LEVELS = "LEVELS"
    SLOPE = "SLOPE"
    PLOTS = "PLOTS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_TRANSECTS = "OUTPUT_TRANSECTS"
    OUTPUT_POSITIONS = "OUTPUT_POSITIONS"
    OUTPUT_RATES = "OUTPUT_RATES"
    OUTPUT_REPORT = "OUTPUT_REPORT"

    def name(self) -> str:
        return "shorelinechange"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Shoreline change through time"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "From a folder of dated scenes (or raster layers) to shoreline-change rates. Each "
            "scene is segmented as 'Segment water (many scenes)' does (finished scenes are "
            "skipped on a re-run), or a finished batch output folder is read. Dates come from "
            "the raster's metadata or file name (YYYY-MM-DD, YYYYMMDD, Sentinel-2/Landsat "
            "product names), or from a CSV 'scene,date'; an undated scene is reported and left "
            "out. Transects are yours (lines drawn land -> water) or cast normal to a baseline "
            "(yours, or the median shoreline of all dates) every Spacing metres. For each "
            "transect and date: the shoreline's position (missing where cloud or nodata covers "
            "it); spikes and departures from a running median are removed; then DSAS's "
            "statistics: SCE, NSM, EPR, LRR (R², standard error, 95 % interval), WLR. Dates "
            "whose quality flags them (cloud, shadow, a jump in water fraction) are left out "
            "unless kept. An optional CSV of water levels with a shore slope moves every "
            "position to one level. Loads the transects (coloured by LRR: blue towards the "
            "water, red towards the land) and the positions; the HTML report holds the "
            "plots. See docs/change.md."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return ShorelineChangeAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.LAYERS, "Dated raster layers", QgsProcessing.TypeRaster, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.FOLDER,
                "Folder of dated scenes (searched recursively)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.BATCH_DIR,
                "Or: a finished batch output folder (with batch_report.json)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.DATES, "Dates CSV (scene,date; optional)", extension="csv", optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.TRANSECTS,
                "Your transects (lines drawn land -> water; optional)",
                [QgsProcessing.TypeVectorLine],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorLayer(
                self.BASELINE,
                "Baseline (optional; default: the median shoreline of all dates)",
                [QgsProcessing.TypeVectorLine],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.SPACING,
                "Transect spacing (m)",
                QgsProcessingParameterNumber.Double,
                50.0,
                minValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LENGTH,
                "Transect length (m)",
                QgsProcessingParameterNumber.Double,
                300.0,
                minValue=1.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.CROSSING,
                "Several crossings on a transect: take the one",
                options=[
                    "nearest the baseline",
                    "farthest towards the water",
                    "farthest towards the land",
                    "none (missing)",
                ],
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_CHANGE,
                "Spike: change from both neighbouring dates above (m; 0 = off)",
                QgsProcessingParameterNumber.Double,
                40.0,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MEDIAN_WINDOW,
                "Running median over dates (0 = off)",
                QgsProcessingParameterNumber.Integer,
                5,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MEDIAN_THRESHOLD,
                "Remove positions farther from the running median than (m)",
                QgsProcessingParameterNumber.Double,
                30.0,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.KEEP_FLAGGED, "Use dates flagged by quality too", False
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.LEVELS,
                "Water levels CSV (date,level in m; optional)",
                extension="csv",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.SLOPE,
                "Shore slope for the levels (e.g. 0.05, or a CSV transect_id,slope)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(
                self.PLOTS, "A plot per transect (else the overview only)", True
            )
        )
        self.addParameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder")
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.OUTPUT_TRANSECTS, "Transects (rates)", QgsProcessing.TypeVectorLine
            )
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.OUTPUT_POSITIONS, "Shoreline positions", QgsProcessing.TypeVectorPoint
            )
        )
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_RATES, "Rates (CSV)"))
        self.addOutput(QgsProcessingOutputHtml(self.OUTPUT_REPORT, "Shoreline change report"))

    @staticmethod
    def _source(layer) -> str:
        return layer.source().split("|")[0] if layer is not None else ""

    def change_arguments(self, parameters, context) -> list[str]:
        """The ``change`` command's arguments for these parameters."""
        inputs: list[str] = []
        for layer in self.parameterAsLayerList(parameters, self.LAYERS, context):
            path = local_raster_path(layer)
            if path is None:
                raise QgsProcessingException(
                    f"Layer '{layer.name()}' is not a local raster file: save it as GeoTIFF first."
                )
            inputs.append(path)
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if folder:
            inputs.append(folder)
        batch_dir = self.parameterAsFile(parameters, self.BATCH_DIR, context)
        if not inputs and not batch_dir:
            raise QgsProcessingException(
                "Choose dated raster layers, a folder of scenes, or a finished batch folder."
            )
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        args = ["change", *inputs, "--out-dir", out_dir, "--progress", "json"]
        if batch_dir and not inputs:
            args += ["--batch-dir", batch_dir]
        for key, flag in ((self.DATES, "--dates"), (self.LEVELS, "--levels")):
            value = self.parameterAsFile(parameters, key, context)
            if value:
                args += [flag, value]
        slope = (self.parameterAsString(parameters, self.SLOPE, context) or "").strip()
        if slope:
            args += ["--slope", slope]
        for key, flag in ((self.TRANSECTS, "--transects"), (self.BASELINE, "--baseline")):
            source = self._source(self.parameterAsVectorLayer(parameters, key, context))
            if source:
                args += [flag, source]
        args += ["--spacing", f"{self.parameterAsDouble(parameters, self.SPACING, context):g}"]
        args += ["--length", f"{self.parameterAsDouble(parameters, self.LENGTH, context):g}"]
        args += [
            "--crossing",
            CROSSING_RULES[self.parameterAsEnum(parameters, self.CROSSING, context)],
        ]
        args += [
            "--max-change",
            f"{self.parameterAsDouble(parameters, self.MAX_CHANGE, context):g}",
        ]
        args += [
            "--median-window",
            str(self.parameterAsInt(parameters, self.MEDIAN_WINDOW, context)),
        ]
        args += [
            "--median-threshold",
            f"{self.parameterAsDouble(parameters, self.MEDIAN_THRESHOLD, context):g}",
        ]
        if self.parameterAsBoolean(parameters, self.KEEP_FLAGGED, context):
            args.append("--keep-flagged")
        args += [
            "--plots",
            "all" if self.parameterAsBoolean(parameters, self.PLOTS, context) else "overview",
        ]
        return args

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        if bool(self.parameterAsFile(parameters, self.LEVELS, context)) != bool(
            (self.parameterAsString(parameters, self.SLOPE, context) or "").strip()
        ):
            raise QgsProcessingException("Give the water levels CSV and the shore slope together.")
        interp = find_interpreter(QgsSettings().value(SETTINGS_KEY, "", type=str))
        if not interp.ok:
            raise QgsProcessingException(f"Backend missing: {interp.problem}")
        argv = backend_command(interp.path, *self.change_arguments(parameters, context))
        feedback.pushInfo(f"Backend: {' '.join(argv)}")
        finished: dict = {}

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "progress":
                frac = float(event.get("fraction") or 0.0)
                stage = event.get("stage")
                share = (
                    frac * BATCH_SHARE
                    if stage == "batch"
                    else BATCH_SHARE + frac * (1 - BATCH_SHARE)
                )
                feedback.setProgress(100.0 * share)
            elif kind == "batch" and event.get("kind") == "scene":
                line = f"[{event.get('finished')}/{event.get('total')}] {event.get('scene')}: {event.get('status')}"
                (feedback.reportError if event.get("status") == "failed" else feedback.pushInfo)(
                    line
                )
            elif kind == "transects":
                feedback.pushInfo(f"{event.get('count')} transects")
            elif kind == "finished":
                finished.update(event)

        result = BackendRun(argv).run(
            on_event=on_event, is_canceled=feedback.isCanceled, on_text=feedback.pushConsoleInfo
        )
        if result.cancelled or feedback.isCanceled():
            feedback.pushInfo("Cancelled; segmented scenes are kept and a re-run skips them.")
            return {}
        if result.exit_code != 0:
            feedback.reportError(result.log_tail)
            raise QgsProcessingException(result.error or "the backend failed")
        if finished.get("dates_flagged"):
            feedback.pushWarning(
                "Dates left out by their quality flags: " + ", ".join(finished["dates_flagged"])
            )
        if finished and not finished.get("corrected"):
            feedback.pushInfo("Positions are not corrected for water level (no levels CSV).")
        transects = result.outputs.get("transects")
        positions = result.outputs.get("positions")
        if transects and Path(transects).is_file():
            details = QgsProcessingContext.LayerDetails(
                "Shoreline change (transects)", context.project(), self.OUTPUT_TRANSECTS
            )
            loader = _LoadStyle(TRANSECTS_STYLE)
            _POST_PROCESSORS.append(loader)
            details.setPostProcessor(loader)
            context.addLayerToLoadOnCompletion(transects, details)
        if positions and Path(positions).is_file():
            context.addLayerToLoadOnCompletion(
                positions,
                QgsProcessingContext.LayerDetails(
                    "Shoreline positions", context.project(), self.OUTPUT_POSITIONS
                ),
            )
        return {
            self.OUTPUT_FOLDER: self.parameterAsString(parameters, self.OUTPUT_FOLDER, context),
            self.OUTPUT_TRANSECTS: transects,
            self.OUTPUT_POSITIONS: positions,
            self.OUTPUT_RATES: result.outputs.get("rates"),
            self.OUTPUT_REPORT: result.outputs.get("report_html"),
        }
