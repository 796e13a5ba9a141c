"""Processing algorithm "Segment water (many scenes)": the backend's ``batch`` command (one
Dask task per scene, finished scenes skipped on a re-run) as a subprocess, with its progress
in QgsProcessingFeedback; the merged shoreline of all scenes is loaded when it ends. The
plugin never imports Dask: it only starts ``python -m backend batch`` and reads its JSON
lines (docs/batch.md)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsSettings,
)

from .backend_process import SETTINGS_KEY, BackendRun, backend_command, find_interpreter
from .layers import local_raster_path

SOME_FAILED_EXIT = 3  # batch's exit code when it ran to the end but some scenes failed


class SegmentManyScenesAlgorithm(QgsProcessingAlgorithm):
    """Raster layers and/or a folder of scenes -> per-scene outputs, a report, one merged
    shoreline layer (see the module docstring)."""

    LAYERS = "LAYERS"
    FOLDER = "FOLDER"
    MODEL = "MODEL"
    L2A_OFFSET = "L2A_OFFSET"
    WORKERS = "WORKERS"
    SCHEDULER = "SCHEDULER"
    FORCE = "FORCE"
    MERGE_CRS = "MERGE_CRS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_SHORELINE = "OUTPUT_SHORELINE"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    FAILED = "FAILED"

    def name(self) -> str:
        return "segmentwatermany"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Segment water (many scenes)"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "Segments many scenes with one run of the backend's batch command: the chosen raster "
            "layers and every raster in the folder (searched recursively). Scenes run in "
            "parallel on this machine (Workers: scenes at once, 0 = as many as the CPUs and "
            "memory allow) or on a Dask cluster (Scheduler: tcp://host:8786). Each scene gets a "
            "water mask and a shoreline in the output folder, like 'Segment water'; scenes "
            "already done with the same model and options are skipped unless 'Redo' is checked. "
            "batch_report.csv lists every scene's status, water fraction, shoreline length and "
            "error; the shorelines of all scenes are merged into one layer (field 'scene') in "
            "the chosen CRS and loaded. A scene that fails does not stop the others. See "
            "docs/batch.md."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SegmentManyScenesAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        # Labels stay short (the dialog's parameter panel is about 380 px wide at its default
        # size); what each one means in full is its help (tooltip) and shortHelpString.
        params = [
            QgsProcessingParameterMultipleLayers(
                self.LAYERS, "Raster layers", QgsProcessing.TypeRaster, optional=True
            ),
            QgsProcessingParameterFile(
                self.FOLDER,
                "Folder of scenes",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            ),
            QgsProcessingParameterFile(
                self.MODEL, "Model (.pt; empty = bundled)", extension="pt", optional=True
            ),
            QgsProcessingParameterBoolean(
                self.L2A_OFFSET, "L2A offset (baseline 04.00+)", defaultValue=False
            ),
            QgsProcessingParameterNumber(
                self.WORKERS,
                "Workers (0 = automatic)",
                QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
            ),
            QgsProcessingParameterString(self.SCHEDULER, "Scheduler", defaultValue="auto"),
            QgsProcessingParameterBoolean(self.FORCE, "Redo scenes already done", False),
            QgsProcessingParameterCrs(
                self.MERGE_CRS,
                "Merged shoreline CRS",
                defaultValue="EPSG:4326",
                optional=True,  # QGIS 3.22 refuses a missing CRS even with a default
            ),
            QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Output folder"),
        ]
        helps = {
            self.LAYERS: "Raster layers of the project to segment (local files)",
            self.FOLDER: "Every raster in this folder, searched recursively",
            self.MODEL: "A WaterSeg checkpoint (.pt); empty: the bundled model chosen from "
            "each scene's bands",
            self.L2A_OFFSET: "Subtract 1000 from raw values: Sentinel-2 L2A of processing "
            "baseline 04.00 or newer (from January 2022)",
            self.WORKERS: "Scenes at once on this machine; 0: as many as the CPUs and memory "
            "allow",
            self.SCHEDULER: "auto, local, or a Dask scheduler address (tcp://host:8786)",
            self.FORCE: "Segment again scenes already done with the same model and options",
            self.MERGE_CRS: "CRS of the merged shoreline of all scenes (empty: EPSG:4326)",
        }
        for param in params:
            param.setHelp(helps.get(param.name(), ""))
            self.addParameter(param)
        self.addOutput(
            QgsProcessingOutputVectorLayer(
                self.OUTPUT_SHORELINE, "Shoreline (all scenes)", QgsProcessing.TypeVectorLine
            )
        )
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_REPORT, "Batch report (CSV)"))
        self.addOutput(QgsProcessingOutputNumber(self.FAILED, "Scenes that failed"))

    def _inputs(self, parameters, context) -> list[str]:
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
        if not inputs:
            raise QgsProcessingException("Choose raster layers, a folder of scenes, or both.")
        return inputs

    def batch_arguments(self, parameters, context) -> list[str]:
        """The ``batch`` command's arguments for these parameters."""
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        crs: QgsCoordinateReferenceSystem = self.parameterAsCrs(parameters, self.MERGE_CRS, context)
        args = ["batch", *self._inputs(parameters, context), "--out-dir", out_dir]
        args += ["--progress", "json", "--merge-shoreline"]
        merge_crs = (crs.authid() or crs.toWkt()) if crs.isValid() else "EPSG:4326"
        args += ["--merge-crs", merge_crs]
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if model:
            args += ["--model", model]
        scheduler = (self.parameterAsString(parameters, self.SCHEDULER, context) or "").strip()
        args += ["--scheduler", scheduler or "auto"]
        workers = self.parameterAsInt(parameters, self.WORKERS, context)
        if workers > 0:
            args += ["--workers", str(workers)]
        if self.parameterAsBoolean(parameters, self.FORCE, context):
            args.append("--force")
        if self.parameterAsBoolean(parameters, self.L2A_OFFSET, context):
            args.append("--l2a-offset")
        return args

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        interp = find_interpreter(QgsSettings().value(SETTINGS_KEY, "", type=str))
        if not interp.ok:
            raise QgsProcessingException(f"Backend missing: {interp.problem}")
        argv = backend_command(interp.path, *self.batch_arguments(parameters, context))
        feedback.pushInfo(f"Backend: {' '.join(argv)}")
        failed: list[str] = []

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "start":
                feedback.pushInfo(
                    f"{event.get('total')} scene(s) on {event.get('scheduler')}, "
                    f"{event.get('threads')} at once; Dask dashboard: {event.get('dashboard')}"
                )
            elif kind == "scene":
                line = f"[{event.get('finished')}/{event.get('total')}] {event.get('scene')}: "
                if event.get("status") == "failed":
                    failed.append(str(event.get("scene")))
                    feedback.reportError(line + f"failed: {event.get('error')}")
                else:
                    feedback.pushInfo(line + f"{event.get('status')} in {event.get('seconds')} s")
            elif kind == "progress" and event.get("total"):
                finished = sum(int(event.get(k) or 0) for k in ("done", "skipped", "failed"))
                feedback.setProgress(100.0 * finished / int(event["total"]))

        result = BackendRun(argv).run(
            on_event=on_event, is_canceled=feedback.isCanceled, on_text=feedback.pushConsoleInfo
        )
        if result.cancelled or feedback.isCanceled():
            feedback.pushInfo("Cancelled; finished scenes are kept and a re-run skips them.")
            return {}
        if result.exit_code not in (0, SOME_FAILED_EXIT):
            feedback.reportError(result.log_tail)
            raise QgsProcessingException(result.error or "the backend failed")
        if failed:
            feedback.reportError(
                f"{len(failed)} scene(s) failed: {', '.join(failed)} (see the batch report)"
            )
        merged = result.outputs.get("merged_shoreline")
        if merged and Path(merged).is_file():
            details = QgsProcessingContext.LayerDetails(
                "Shoreline (all scenes)", context.project(), self.OUTPUT_SHORELINE
            )
            context.addLayerToLoadOnCompletion(merged, details)
        return {
            self.OUTPUT_FOLDER: self.parameterAsString(parameters, self.OUTPUT_FOLDER, context),
            self.OUTPUT_SHORELINE: merged,
            self.OUTPUT_REPORT: result.outputs.get("report_csv"),
            self.FAILED: len(failed),
        }
