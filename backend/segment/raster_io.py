"""Open and validate an input raster, map its bands to the model's, read it strip by strip.

Band mapping (first rule that applies):

1. ``--bands`` (``explicit``): 1-based raster band numbers listed in the model's band order,
   e.g. ``2,3,4,8`` for B2 B3 B4 B8 of a 13-band L1C stack.
2. Band descriptions naming Sentinel-2 bands (``B2``, ``B02``, ``b8``, ``B8A``,
   ``B4, central wavelength 665 nm`` ...): every model band must be found.
3. A documented default layout chosen by the band count:
   4 bands = B2 B3 B4 B8; 12 bands = SNOWED / L2A order B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B11 B12;
   13 bands = L1C order B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12.

Otherwise a ``UserError`` names the missing bands and suggests ``--bands``.

Nodata: a pixel is valid when every mapped band is valid by GDAL's mask (band nodata value,
internal/external mask, alpha) and finite (NaN/inf are nodata).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError, RasterioIOError

from backend.errors import UserError
from backend.segment.georef import GeoRef

S2_L1C_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
SNOWED_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
DEFAULT_LAYOUTS: dict[int, list[str]] = {
    4: ["B2", "B3", "B4", "B8"],
    12: SNOWED_ORDER,
    13: S2_L1C_ORDER,
}
_READ_ERRORS = (RasterioError, RasterioIOError, OSError)
SUPPORTED_DTYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64"}

_BAND_RE = re.compile(r"^\s*(?:band\s*)?B0*(\d{1,2})(A?)(?![0-9A-Za-z])", re.IGNORECASE)


def normalise_band_name(text: str | None) -> str | None:
    """A band description -> canonical Sentinel-2 name ("B02" -> "B2", "b8a" -> "B8A"), or None."""
    if not text:
        return None
    m = _BAND_RE.match(text)
    if not m:
        return None
    number = int(m.group(1))
    if not 1 <= number <= 12:
        return None
    suffix = m.group(2).upper()
    if suffix and number != 8:
        return None
    return f"B{number}{suffix}"


def parse_bands_option(text: str) -> list[int]:
    """``"2,3,4,8"`` -> [2, 3, 4, 8] (1-based band numbers). Raises UserError on bad syntax."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(
            f"--bands {text!r} is not a list of band numbers; write e.g. --bands 2,3,4,8"
        ) from None
    if not values:
        raise UserError("--bands is empty; write e.g. --bands 2,3,4,8")
    return values


@dataclass(frozen=True)
class BandMapping:
    """1-based raster band indexes in model band order, and which rule chose them."""

    indexes: list[int]
    rule: str  # "explicit" | "descriptions" | "default-<n>-band"


def map_bands(
    model_bands: list[str],
    count: int,
    descriptions: list[str | None] | tuple[str | None, ...],
    explicit: list[int] | None = None,
) -> BandMapping:
    """Choose the raster bands that feed the model (rules in the module docstring)."""
    need = ", ".join(model_bands)
    if count < 1:
        raise UserError("the raster has no bands; pass a multispectral raster")
    if explicit is not None:
        if len(explicit) != len(model_bands):
            raise UserError(
                f"--bands lists {len(explicit)} bands but the model needs {len(model_bands)} "
                f"({need}); list one raster band number for each, in that order"
            )
        bad = [b for b in explicit if not 1 <= b <= count]
        if bad:
            raise UserError(
                f"--bands {','.join(map(str, bad))} out of range: the raster has {count} "
                f"band(s), numbered 1..{count}"
            )
        return BandMapping(list(explicit), "explicit")

    names = [normalise_band_name(d) for d in descriptions]
    found: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name and name not in found:
            found[name] = i
    if found:
        missing = [b for b in model_bands if b not in found]
        if not missing:
            return BandMapping([found[b] for b in model_bands], "descriptions")
        raise UserError(
            f"the raster's band descriptions name {', '.join(found)} but the model needs "
            f"{need}: missing {', '.join(missing)}; pass --bands with the raster band numbers "
            f"of {need} in that order"
        )

    layout = DEFAULT_LAYOUTS.get(count)
    if layout is not None and all(b in layout for b in model_bands):
        return BandMapping([layout.index(b) + 1 for b in model_bands], f"default-{count}-band")
    if count < len(model_bands):
        missing = model_bands[count:] if count else model_bands
        raise UserError(
            f"the raster has {count} band(s) but the model needs {len(model_bands)} ({need}); "
            f"missing {', '.join(missing)}; pass a raster with these bands or --bands"
        )
    raise UserError(
        f"cannot tell which of the raster's {count} bands are {need} (no band descriptions, "
        f"no default layout for {count} bands); pass --bands with their numbers, e.g. "
        "--bands 2,3,4,8"
    )


class RasterSource:
    """An open input raster with its band mapping. Not thread-safe: one reader at a time.

    ``read_strip(row0, row1)`` -> (raw (C, h, W) in the raster's dtype, valid (h, W) bool).
    """

    def __init__(self, path: Path, dataset, mapping: BandMapping):
        self.path = path
        self._ds = dataset
        self.mapping = mapping
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

    @property
    def width(self) -> int:
        return self.georef.width

    @property
    def height(self) -> int:
        return self.georef.height

    def read_strip(self, row0: int, row1: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows [row0, row1) of the mapped bands and their validity."""
        from rasterio.windows import Window

        window = Window(0, row0, self.width, row1 - row0)
        try:
            raw = self._ds.read(self.indexes, window=window)
            if self._all_valid:
                valid = np.ones(raw.shape[1:], bool)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # NodataShadowWarning: nodata wins, fine
                    masks = self._ds.read_masks(self.indexes, window=window)
                valid = np.all(masks > 0, axis=0)
        except _READ_ERRORS as exc:
            raise UserError(
                f"cannot read rows {row0}-{row1} of {self.path}: {_first_line(exc)}; the file is "
                "truncated or corrupt, re-download or re-export it"
            ) from None
        if raw.dtype.kind == "f":
            valid &= np.all(np.isfinite(raw), axis=0)
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


def open_raster(
    path: str | os.PathLike, model_bands: list[str], explicit: list[int] | None = None
) -> RasterSource:
    """Open ``path``, validate it and map its bands. Every problem is a one-line UserError."""
    ds = _open_checked(Path(path))
    try:
        mapping = map_bands(model_bands, ds.count, ds.descriptions, explicit)
        _check_dtypes_and_probe(Path(path), ds, mapping.indexes)
        return RasterSource(Path(path), ds, mapping)
    except BaseException:
        ds.close()
        raise


def check_raster(path: str | os.PathLike) -> None:
    """Validate ``path`` without a model (exists, GDAL raster, has bands, not truncated):
    cheap checks run before the model is loaded, so typos fail fast."""
    ds = _open_checked(Path(path))
    try:
        _check_dtypes_and_probe(Path(path), ds, list(range(1, ds.count + 1)))
    finally:
        ds.close()


def _open_checked(path: Path):
    import rasterio

    if not path.exists():
        raise UserError(f"input not found: {path}; check the path")
    if path.is_dir():
        raise UserError(f"input {path} is a folder, not a raster; pass a raster file")
    try:
        ds = rasterio.open(path)
    except _READ_ERRORS as exc:
        raise UserError(
            f"{path} is not a raster GDAL can read ({_first_line(exc)}); pass a GeoTIFF, JP2, "
            "VRT or another GDAL raster"
        ) from None
    if ds.count == 0:
        ds.close()
        raise UserError(f"{path} has no raster bands; pass a multispectral raster")
    if ds.width < 1 or ds.height < 1:
        ds.close()
        raise UserError(f"{path} is empty ({ds.width} x {ds.height} pixels)")
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
