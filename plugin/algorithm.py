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
from .contract import METHODS, describe_event, progress_percent
from .layers import local_raster_path
from .options import processing_parameters, processing_values
from .request import SegmentRequest, parse_bands


def method_bands_text() -> str:
    """ "mixed-adaptive B3 B8 B11; mndwi-adaptive B3 B11; ..." from the contract's methods."""
    return "; ".join(f"{m.name} {' '.join(m.bands)}" for m in METHODS.values() if m.bands)


def parse_band_mapping(text: str, method: str) -> list[int]:
    """The Bands parameter -> layer band numbers in the order ``method`` reads its bands.

    Either numbers in that order ("2,4,5") or, for an index method, band names with their
    layer band in any order ("B3=2, B8=4, B11=5"). ValueError says what is wrong and the fix.
    """
    if "=" not in text:
        return parse_bands(text)
    needed = METHODS[method].bands if method in METHODS else ()
    if not needed:
        raise ValueError(
            f"band names (B3=2, ...) need a method that says which bands it reads: choose an "
            f"index method ({method_bands_text()}), or give numbers in the model's band order"
        )
    given: dict[str, int] = {}
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        name, _, number = (x.strip() for x in part.partition("="))
        try:
            given[name.upper()] = parse_bands(number)[0]
        except (ValueError, IndexError):
            raise ValueError(f"'{part}' is not NAME=NUMBER, e.g. B3=2") from None
    missing = [b for b in needed if b.upper() not in given]
    extra = sorted(set(given) - {b.upper() for b in needed})
    if missing or extra:
        raise ValueError(
            f"{method} reads {' '.join(needed)}: "
            + (f"map {' '.join(missing)}" if missing else f"{' '.join(extra)} is not read")
            + f" (e.g. {', '.join(f'{b}={i + 1}' for i, b in enumerate(needed))})"
        )
    return [given[b.upper()] for b in needed]


class SegmentWaterAlgorithm(QgsProcessingAlgorithm):
    """Raster layer -> water mask raster + shoreline lines (see the module docstring)."""

    INPUT = "INPUT"
    MODEL = "MODEL"
    BANDS = "BANDS"
    DEM = "DEM"
    OUTPUT_MASK = "OUTPUT_MASK"
    OUTPUT_SHORELINE = "OUTPUT_SHORELINE"

    def name(self) -> str:
        return "segmentwater"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Segment water"

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        methods = "; ".join(m.describe() for m in METHODS.values())
        return (
            "Separates water from land in an optical satellite image (Sentinel-2 first) and "
            f"draws the shoreline. Method: {methods}. auto takes the first adaptive index whose "
            "bands the layer has, else the bundled model (true colour); how each method works "
            "and how they compare: docs/segment.md.\n\n"
            "Bands: which layer band is which band the method reads "
            f"({method_bands_text()}; model: the model's bands). Leave empty to let the backend "
            "match them by their names (B04, red (B4), nir, SWIR1 ...), or for unnamed bands by "
            "the Sentinel-2 order of a 4, 12 or 13-band raster (said in the log). A layer "
            "without band names (e.g. a VRT from gdalbuildvrt) needs them: numbers in that order "
            "(2,4,5) or, for an index method, names (B3=2, B8=4, B11=5). A band may not be "
            "listed twice.\n\n"
            "Model (method model, or auto on a true-colour layer): a WaterSeg checkpoint (.pt); "
            "empty = the bundled model that fits the layer's bands ('python -m backend plan "
            "RASTER' shows every choice). Water threshold: the model's water probability; an "
            "index method keeps its own threshold at the default 0.5 (docs/segment.md, "
            "Threshold). Elevation (optional): a DEM in any CRS; slopes over 20 degrees are "
            "then land, which keeps hill shadow out of the water (docs/segment.md, Terrain). "
            "The backend runs in its own Python with PyTorch (WaterSeg dock, "
            "Backend). The layer must be a local raster file."
        )

    def createInstance(self):  # noqa: N802 (QGIS API)
        return SegmentWaterAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802 (QGIS API)
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Raster layer"))
        # Labels stay short (the dialog's parameter panel is about 380 px wide at its default
        # size); the rest is each parameter's help (tooltip) and shortHelpString.
        model = QgsProcessingParameterFile(
            self.MODEL, "Model (.pt; empty = bundled)", extension="pt", optional=True
        )
        model.setHelp(
            "A WaterSeg checkpoint (.pt), with method model; empty: the bundled model chosen "
            "from the layer's bands"
        )
        self.addParameter(model)
        bands = QgsProcessingParameterString(
            self.BANDS, "Bands (empty = by name)", defaultValue="", optional=True
        )
        bands.setHelp(
            f"Layer band numbers in the order the method reads its bands ({method_bands_text()}; "
            "model: the model's), or NAME=NUMBER for an index method; empty: by the layer's "
            "band names"
        )
        self.addParameter(bands)
        dem = QgsProcessingParameterRasterLayer(
            self.DEM, "Elevation (DEM, optional)", optional=True
        )
        dem.setHelp(
            "Heights in metres, any CRS (SRTM, Copernicus DEM): slopes steeper than 20 degrees "
            "are land whatever the method says, which keeps hill shadow out of the water"
        )
        self.addParameter(dem)
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
        options = processing_values(self, parameters, context)
        try:
            bands = parse_band_mapping(
                self.parameterAsString(parameters, self.BANDS, context) or "", options["method"]
            )
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        if any(b > layer.bandCount() for b in bands):
            raise QgsProcessingException(
                f"Layer '{layer.name()}' has {layer.bandCount()} bands, so Bands "
                f"{','.join(map(str, bands))} cannot all exist: number them from 1 to "
                f"{layer.bandCount()}, in the order the method reads them."
            )
        dem_layer = self.parameterAsRasterLayer(parameters, self.DEM, context)
        dem = None
        if dem_layer is not None:
            dem = local_raster_path(dem_layer)
            if dem is None:
                raise QgsProcessingException(
                    f"Elevation layer '{dem_layer.name()}' is not a local raster file: save it "
                    "as GeoTIFF first, or leave Elevation empty."
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
            options=options,
            python=interp.path,
            dem_path=dem,
        )
        argv = backend_command(interp.path, *request.backend_args())
        feedback.pushInfo(f"Backend: {' '.join(argv)}")
        feedback.pushInfo(METHODS[options["method"]].log_line())
        if bands and options["method"] == "auto":
            feedback.pushInfo(
                "Method auto with Bands runs the model on those bands (as segment does); choose "
                "an index method (e.g. mixed-adaptive) to run it on them"
            )

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
                feedback.reportError(result.log_tail)
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


def _cannot_write(what: str, dest: str, why: str) -> QgsProcessingException:
    """The one-line error of an output that cannot be written, with the fix."""
    example = "a GeoTIFF (.tif)" if what == "water mask" else "a GeoPackage (.gpkg)"
    return QgsProcessingException(
        f"cannot write the {what} to {dest} ({why}): choose another file, e.g. {example}"
    )


def _move_raster(src: str, dest: str) -> None:
    """Move the mask GeoTIFF to ``dest`` (converted with GDAL when not a .tif)."""
    try:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        if Path(dest).suffix.lower() in (".tif", ".tiff"):
            shutil.move(src, dest)
            return
    except OSError as exc:
        raise _cannot_write("water mask", dest, exc.strerror or str(exc)) from None
    from osgeo import gdal

    try:  # GDAL returns None, or raises where something turned its exceptions on
        written = gdal.Translate(dest, src) is not None
        why = gdal.GetLastErrorMsg().strip()
    except RuntimeError as exc:
        written, why = False, str(exc)
    if not written:
        raise _cannot_write("water mask", dest, why)


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
        raise _cannot_write("shoreline", dest, message)
