"""Processing algorithm "Segment water": the same backend run as the dock, for the batch
dialog, the graphical modeller and ``qgis_process``. Progress and cancel go through
QgsProcessingFeedback; the backend writes into a temporary folder and the results are then
moved (or converted) to the chosen destinations."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsSettings,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from .backend_process import SETTINGS_KEY, BackendRun, backend_command, find_interpreter
from .contract import describe_event, progress_percent
from .layers import local_raster_path
from .options import processing_parameters, processing_values
from .request import SegmentRequest, parse_bands


class SegmentWaterAlgorithm(QgsProcessingAlgorithm):
    """Raster layer -> water mask raster + shoreline lines (see the module docstring)."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    BANDS = "BANDS"
    OUTPUT_MASK = "OUTPUT_MASK"
    OUTPUT_SHORELINE = "OUTPUT_SHORELINE"

    def name(self) -> str:
        return "segmentwater"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Segment water"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return (
            "Separates water from land in an optical satellite image (Sentinel-2 first) and "
            "draws the shoreline. Method: auto (default) uses the mean of NDWI and MNDWI when the "
            "layer has B3, B8 and B11 (MNDWI or NDWI alone when it has only one pair), water "
            "above a threshold set for each layer from its water/land edges, and the bundled RGB "
            "model for a true-colour image; model runs the learned model below; or one water "
            "index by name. Bands: the "
            "layer's band numbers in the "
            "model's band order (e.g. 2,3,4,8 for B2 B3 B4 B8 of a full Sentinel-2 stack); leave "
            "empty to let the backend match bands by their names (B04, red (B4), nir, SWIR1 ...), "
            "or, for unnamed bands, by the Sentinel-2 order of a 4, 12 or 13-band raster (said in "
            "the log); names that miss a model band stop the run with the fix. A band may not be "
            "listed twice. Model (with method model): a WaterSeg checkpoint (.pt); empty = the "
            "bundled B2 B3 B4 B8 B11 B12 model when the layer has B11 and B12, else the bundled "
            "B2 B3 B4 B8 model ('python -m backend plan RASTER' shows every choice). The "
            "backend runs in its own Python with PyTorch (see the WaterSeg dock, Backend > Check "
            "backend). The layer must be a local raster file."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SegmentWaterAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "Model (WaterSeg checkpoint .pt; empty = bundled model chosen from the bands)",
                extension="pt",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS,
                "Bands (layer band numbers in model order, e.g. 2,3,4,8; empty = by name)",
                defaultValue="",
                optional=True,
            )
        )
        for param in processing_parameters():  # DEVICE, OVERLAP, ...: the contract's options
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_MASK, "Water mask"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_SHORELINE, "Shoreline", QgsProcessing.TypeVectorLine
            )
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException("Choose a raster layer.")
        path = local_raster_path(layer)
        if path is None:
            raise QgsProcessingException(
                f"Layer '{layer.name()}' is not a local raster file: save it as GeoTIFF first "
                "(or use the WaterSeg dock, which exports the visible extent)."
            )
        try:
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context) or "")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        if any(b > layer.bandCount() for b in bands):
            raise QgsProcessingException(
                f"Layer '{layer.name()}' has {layer.bandCount()} bands; bands {bands} do not exist."
            )
        interp = find_interpreter(QgsSettings().value(SETTINGS_KEY, "", type=str))
        if not interp.ok:
            raise QgsProcessingException(f"Backend missing: {interp.problem}")
        model = self.parameterAsFile(parameters, self.MODEL, context) or None  # None: automatic
        mask_dest = self.parameterAsOutputLayer(parameters, self.OUTPUT_MASK, context)
        shore_dest = self.parameterAsOutputLayer(parameters, self.OUTPUT_SHORELINE, context)

        work = Path(tempfile.mkdtemp(prefix="waterseg-", dir=QgsProcessingUtils.tempFolder()))
        request = SegmentRequest(
            layer_name=layer.name(),
            input_path=path,
            out_dir=str(work),
            bands=bands,
            model_path=model,
            options=processing_values(self, parameters, context),
            python=interp.path,
        )
        argv = backend_command(interp.path, *request.backend_args())
        feedback.pushInfo(f"Backend: {' '.join(argv)}")

        def on_event(event: dict) -> None:
            percent = progress_percent(event)  # the contract's stages, as in the dock's task
            if percent is not None:
                feedback.setProgress(percent)
            elif event.get("event") in ("start", "done"):
                feedback.pushInfo(describe_event(event))

        try:
            result = BackendRun(argv).run(
                on_event=on_event, is_canceled=feedback.isCanceled, on_text=feedback.pushConsoleInfo
            )
            if result.cancelled or feedback.isCanceled():
                feedback.pushInfo("Cancelled; no results were written.")
                return {}
            if not result.ok:
                feedback.reportError(result.stderr_tail)
                raise QgsProcessingException(result.error or "the backend failed")
            expected = request.expected_outputs()
            mask_src = result.outputs.get("mask", str(expected["mask"]))
            shore_src = result.outputs.get("shoreline_gpkg", str(expected["shoreline_gpkg"]))
            _move_raster(mask_src, mask_dest)
            _convert_vector(shore_src, shore_dest, context)
            feedback.setProgress(100)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {self.OUTPUT_MASK: mask_dest, self.OUTPUT_SHORELINE: shore_dest}


def _move_raster(src: str, dest: str) -> None:
    """Move the mask GeoTIFF to ``dest`` (converted with GDAL when not a .tif)."""
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    if Path(dest).suffix.lower() in (".tif", ".tiff"):
        shutil.move(src, dest)
        return
    from osgeo import gdal

    if gdal.Translate(dest, src) is None:
        raise QgsProcessingException(f"cannot write the water mask to {dest}")


def _convert_vector(src: str, dest: str, context) -> None:
    """Copy the shoreline layer of ``src`` (GeoPackage) to ``dest`` in the format of its
    extension, with the Processing context's datum transforms (not the project's: Processing
    may run without a project, e.g. from qgis_process)."""
    layer = QgsVectorLayer(f"{src}|layername=shoreline", "shoreline", "ogr")
    if not layer.isValid():
        raise QgsProcessingException(f"the backend's shoreline file is unreadable: {src}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = QgsVectorFileWriter.driverForExtension(Path(dest).suffix) or "GPKG"
    options.fileEncoding = "UTF-8"
    code, message, *_ = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, dest, context.transformContext(), options
    )
    if code != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"cannot write the shoreline to {dest}: {message}")
