"""Open and validate an input raster, map its bands to the model's, read it strip by strip.

Band mapping: :mod:`backend.segment.bands` (the rules) and :mod:`backend.segment.plan` (the
decision for a raster, shared by ``plan``, ``segment``, the dock and Processing).

Nodata: a pixel is valid when every mapped band is valid by GDAL's mask (band nodata value,
internal/external mask, alpha) and finite (NaN/inf are nodata).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError, RasterioIOError

from backend.core.errors import UserError
from backend.segment.bands import (  # noqa: F401 - re-exported for the engine and tests
    BandMapping,
    RasterBands,
    bands_in_file_name,
    map_bands,
    map_raster_bands,
    normalise_band_name,
    parse_bands_option,
)
from backend.segment.clouds import CloudAndShadow, CloudBand, CloudGrid, choose_cloud_mask
from backend.segment.georef import GeoRef

_READ_ERRORS = (RasterioError, RasterioIOError, OSError)
SUPPORTED_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}


class RasterSource:
    """An open input raster with its band mapping. Not thread-safe: one reader at a time.

    ``read_strip(row0, row1)`` -> (raw (C, h, W) in the raster's dtype, valid (h, W) bool).
    """

    def __init__(
        self,
        path: Path,
        dataset,
        mapping: BandMapping,
        zero_is_nodata: bool | None = None,
        cloud: CloudBand | CloudGrid | CloudAndShadow | None = None,
    ):
        self.path = path
        self._ds = dataset
        self.mapping = mapping
        self.cloud = cloud  # pixels it flags are nodata (backend.segment.clouds)
        self.cloud_why_not = ""  # why s2cloudless did not run, for the log (open_raster)
        self.held: dict[str, int] = {}  # every band the raster holds by name (open_raster)
        self.indexes = mapping.indexes
        nodata = dataset.nodatavals[mapping.indexes[0] - 1]
        self.georef = GeoRef(dataset.crs, dataset.transform, dataset.width, dataset.height, nodata)
        self.dtype = np.dtype(dataset.dtypes[mapping.indexes[0] - 1])
        self.descriptions = list(dataset.descriptions)
        self.count = dataset.count
        from rasterio.enums import MaskFlags

        self._all_valid = all(
            dataset.mask_flag_enums[i - 1] == [MaskFlags.all_valid] for i in self.indexes
        )
        # Exactly 0 in every band is never real reflectance, but it is the black border that
        # gdalwarp and many exports write without declaring a nodata value. 8-bit renders are
        # the exception: their stretch clips dark water to 0, 0, 0.
        if zero_is_nodata is None:
            zero_is_nodata = self._all_valid and self.dtype != np.uint8
        self.zero_is_nodata = bool(zero_is_nodata)

    @property
    def nodata_note(self) -> str | None:
        """One log line when zeros are read as nodata by the rule above, else None."""
        if not self.zero_is_nodata:
            return None
        return (
            "no nodata value set: pixels that are 0 in every band are read as nodata "
            "(--zero-is-data reads them as data)"
        )

    @property
    def width(self) -> int:
        return self.georef.width

    @property
    def height(self) -> int:
        return self.georef.height

    def read_strip(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [row0, row1) of the mapped bands and their validity."""
        return self.read_window(row0, row1, 0, self.width)

    def read_window(
        self, row0: int, row1: int, col0: int, col1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows [row0, row1) x columns [col0, col1) of the mapped bands and their validity."""
        from rasterio.windows import Window

        return self._read(
            f"rows {row0}-{row1}, columns {col0}-{col1}",
            Window(col0, row0, col1 - col0, row1 - row0),
        )

    def tags(self) -> dict[str, str]:
        """The raster's dataset-level metadata (GDAL's default domain)."""
        return dict(self._ds.tags())

    def overview_factor(self, max_pixels: int) -> int:
        """The smallest integer step at which the whole raster is at most ``max_pixels``."""
        return max(1, int(np.ceil(np.sqrt(self.width * self.height / max_pixels))))

    def read_decimated(self, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole raster's mapped bands read at every :meth:`overview_factor`-th pixel
        (nearest; overviews used), (C, h, w), and their validity by the rules of
        :meth:`read_strip`."""
        f = self.overview_factor(max_pixels)
        return self._read("an overview", None, (max(1, self.height // f), max(1, self.width // f)))

    def cloud_fraction(self, max_pixels: int = 4_000_000) -> float:
        """Share of the raster's pixels the cloud mask flags (a band read at up to
        ``max_pixels``)."""
        cloud = self.cloud.cloud if isinstance(self.cloud, CloudAndShadow) else self.cloud
        if cloud is None:
            return 0.0
        if isinstance(cloud, CloudGrid):
            return cloud.fraction
        return self.band_flag_fraction(cloud, max_pixels)

    def shadow_fraction(self) -> float:
        """Share of the raster's pixels flagged as cloud shadow outside the clouds
        (:func:`backend.segment.clouds.with_shadows`; an SCL band's shadow class counts as
        cloud)."""
        return self.cloud.shadow.fraction if isinstance(self.cloud, CloudAndShadow) else 0.0

    def band_flag_fraction(self, band: CloudBand, max_pixels: int = 4_000_000) -> float:
        """Share of the raster's pixels ``band`` flags (read at up to ``max_pixels``)."""
        f = self.overview_factor(max_pixels)
        shape = (1, max(1, self.height // f), max(1, self.width // f))
        flags = self._ds.read([band.index], out_shape=shape)[0]
        return float(band.flagged(flags).mean())

    def read_bands_and_validity(
        self, indexes: list[int], out_h: int, out_w: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``indexes`` of the whole raster resampled to (len(indexes), out_h, out_w)
        (nearest; overviews used) and their validity (bool (out_h, out_w)) by the rules of
        :meth:`read_strip`, without the cloud mask."""
        return self._read("an overview", None, (out_h, out_w), list(indexes), clouds=False)

    def _cloud_flags(self, window, out_hw, mask=None) -> np.ndarray:
        """Bool: the pixels of a read (``window`` or the whole raster at ``out_hw``) that the
        cloud mask (or ``mask``, one of its parts) flags."""
        mask = self.cloud if mask is None else mask
        if isinstance(mask, CloudAndShadow):
            flags = self._cloud_flags(window, out_hw, mask.cloud)
            return flags | self._cloud_flags(window, out_hw, mask.shadow)
        if isinstance(mask, CloudGrid):
            if out_hw is not None:
                return mask.flags_in(0, out_hw[0], 0, out_hw[1], out_hw)
            r0, c0 = int(window.row_off), int(window.col_off)
            r1, c1 = r0 + int(window.height), c0 + int(window.width)
            return mask.flags_in(r0, r1, c0, c1, (self.height, self.width))
        where = {"window": window} if out_hw is None else {"out_shape": (1, *out_hw)}
        return mask.flagged(self._ds.read([mask.index], **where)[0])

    def _read(
        self, what: str, window=None, out_hw=None, indexes=None, clouds: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bands ``indexes`` (default: the mapped ones) of ``window``, or of the whole raster
        resampled to ``out_hw``, and their validity (the cloud mask too when ``clouds``)."""
        indexes = self.indexes if indexes is None else indexes

        def where(count: int) -> dict:
            return {"window": window} if out_hw is None else {"out_shape": (count, *out_hw)}

        try:
            raw = self._ds.read(indexes, **where(len(indexes)))
            if self._all_valid and list(indexes) == list(self.indexes):
                valid = np.ones(raw.shape[1:], bool)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # NodataShadowWarning: nodata wins, fine
                    masks = self._ds.read_masks(indexes, **where(len(indexes)))
                valid = np.all(masks > 0, axis=0)
            if clouds and self.cloud is not None:
                valid &= ~self._cloud_flags(window, out_hw)
        except _READ_ERRORS as exc:
            raise UserError(
                f"cannot read {what} of {self.path}: {_first_line(exc)}; the file is "
                "truncated or corrupt, re-download or re-export it"
            ) from None
        if raw.dtype.kind == "f":
            valid &= np.all(np.isfinite(raw), axis=0)
        if self.zero_is_nodata:
            valid &= np.any(raw != 0, axis=0)
        return raw, valid

    def read_bands_decimated(self, indexes: list[int], out_h: int, out_w: int) -> np.ndarray:
        """Bands ``indexes`` resampled to (len(indexes), out_h, out_w) (nearest; overviews used)."""
        return self._ds.read(indexes, out_shape=(len(indexes), out_h, out_w))

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def raster_bands(ds) -> RasterBands:
    """What band mapping needs to know about an open rasterio dataset."""
    colours = tuple(c.name for c in ds.colorinterp)
    data_bands = ds.count - sum(1 for c in colours if c == "alpha")
    return RasterBands(
        ds.count,
        tuple(ds.descriptions),
        colours,
        str(ds.dtypes[0]),
        bands_in_file_name(ds.name, data_bands) if data_bands == ds.count else (),
    )


def open_raster(
    path: str | os.PathLike,
    model_bands: list[str],
    explicit: list[int] | None = None,
    allow_duplicates: bool = False,
    zero_is_data: bool = False,
    cloud_mask: str = "none",
    extra_offset: float = 0.0,
) -> RasterSource:
    """Open ``path``, validate it and map its bands. Every problem is a one-line UserError.

    ``zero_is_data`` turns off the rule that reads pixels 0 in every band as nodata
    (:class:`RasterSource`); ``cloud_mask`` "auto" reads the pixels the raster's SCL or QA60
    band or s2cloudless flags as nodata (:mod:`backend.segment.clouds`; s2cloudless runs here,
    once, on a coarse read, with ``extra_offset`` added to the DN: -1000 with --l2a-offset)."""
    ds = open_checked(Path(path))
    try:
        bands = raster_bands(ds)
        mapping = map_raster_bands(
            list(model_bands), bands, explicit, allow_duplicates=allow_duplicates
        )
        _check_dtypes_and_probe(Path(path), ds, mapping.indexes)
        source = RasterSource(Path(path), ds, mapping, False if zero_is_data else None)
        source.held = bands.held()[0]  # canonical band name -> raster band, all of them
        choice = choose_cloud_mask(cloud_mask, source, source.held, extra_offset)
        source.cloud, source.cloud_why_not = choice.mask, choice.why_not_s2cloudless
        return source
    except BaseException:
        ds.close()
        raise


def check_raster(path: str | os.PathLike) -> None:
    """Validate ``path`` without a model (exists, GDAL raster, has bands, not truncated):
    cheap checks run before the model is loaded, so typos fail fast."""
    ds = open_checked(Path(path))
    try:
        _check_dtypes_and_probe(Path(path), ds, list(range(1, ds.count + 1)))
    finally:
        ds.close()


def _training_data_hint(path: Path) -> str | None:
    """The error for SNOWED training data (a .npy array or a SNOWED folder) given as a
    raster to segment, else None."""
    is_snowed_dir = path.is_dir() and (
        (path / "sample_2A.npy").is_file() or any(path.glob("*/sample_2A.npy"))
    )
    if path.suffix.lower() == ".npy" or is_snowed_dir:
        return (
            f"{path} is training data (SNOWED NumPy arrays), not a georeferenced raster; "
            "train on it with 'python -m backend train --data FOLDER' or score a model with "
            "'python -m backend evaluate CHECKPOINT --data FOLDER', and pass segment a GeoTIFF"
        )
    return None


def _missing_sources(path: Path, ds) -> list[str]:
    """The source files a VRT names that do not exist (GDAL opens such a VRT and fails only
    at the first read, with a message that reads like a corrupt file)."""
    if ds.driver != "VRT":
        return []
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return []
    missing = []
    for node in root.iter("SourceFilename"):
        name = (node.text or "").strip()
        if not name or name.startswith("/vsi"):
            continue
        source = path.parent / name if node.get("relativeToVRT") == "1" else Path(name)
        if not source.exists() and str(source) not in missing:
            missing.append(str(source))
    return missing


def open_checked(path: Path):
    import rasterio

    if not path.exists():
        raise UserError(f"input not found: {path}; check the path")
    training = _training_data_hint(path)
    if training:
        raise UserError(training)
    if path.is_dir():
        raise UserError(f"input {path} is a folder, not a raster; pass a raster file")
    try:
        ds = rasterio.open(path)
    except _READ_ERRORS as exc:
        raise UserError(
            f"{path} is not a raster GDAL can read ({_first_line(exc)}); pass a GeoTIFF, JP2, "
            "VRT or another GDAL raster"
        ) from None
    missing = _missing_sources(path, ds)
    if missing:
        ds.close()
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(
            f"{path} is a VRT whose source file {missing[0]}{more} is missing; restore it, or "
            "rebuild the VRT (gdalbuildvrt) from files that exist"
        )
    if ds.count == 0:
        ds.close()
        raise UserError(f"{path} has no raster bands; pass a multispectral raster")
    if ds.width < 1 or ds.height < 1:
        ds.close()
        raise UserError(
            f"{path} is empty ({ds.width} x {ds.height} pixels): an export or clip that "
            "produced no pixels; export it again over an extent that holds the scene"
        )
    return ds


def _check_dtypes_and_probe(path: Path, ds, indexes: list[int]) -> None:
    from rasterio.windows import Window

    dtypes = {ds.dtypes[i - 1] for i in indexes}
    bad = dtypes - SUPPORTED_DTYPES
    if bad:
        raise UserError(
            f"{path} has unsupported data type {', '.join(sorted(bad))}; convert it to "
            "uint16 or float32 (e.g. gdal_translate -ot Float32)"
        )
    # Probe the first and the last pixel: a truncated file fails here, before any output.
    try:
        for r, c in ((0, 0), (ds.height - 1, ds.width - 1)):
            ds.read(indexes, window=Window(c, r, 1, 1))
    except _READ_ERRORS as exc:
        raise UserError(
            f"cannot read {path}: {_first_line(exc)}; the file is truncated or corrupt, "
            "re-download or re-export it"
        ) from None
