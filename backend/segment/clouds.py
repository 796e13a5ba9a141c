"""``--cloud-mask auto|none``: clouds as nodata, from the product's own flags or s2cloudless.

Clouds and, above all, cloud shadows are the main source of false water in optical imagery (a
shadow is dark in NIR and SWIR, like water). With ``auto`` (the default) the pixels flagged by
the first of these that applies are read as nodata: the mask writes 255 there, no shoreline is
drawn along their edges, and the log says what was used and what share of the raster was masked
(:func:`choose_cloud_mask`).

1. ``SCL``, a band so described: the Sentinel-2 L2A scene classification (Sen2Cor). Masked
   classes: 3 cloud shadow, 8 cloud (medium probability), 9 cloud (high probability), 10 thin
   cirrus (:data:`SCL_MASKED`).
2. s2cloudless (:mod:`backend.segment.s2cloudless`), on a raster that holds the L1C bands B1 B2
   B4 B5 B8 B8A B9 B10 B11 B12 (by band description, or the 13-band L1C order of an unnamed
   13-band raster) and is not 8-bit: Sinergise's LightGBM model, run once per raster on a grid
   of about 160 m cells (:class:`CloudGrid`). It comes before QA60 where it can run: QA60's
   60 m flags are blocky and miss small cumulus (a cloudy Tiber date: QA60 3.7 %, s2cloudless
   11.3 %) or call a field of cumulus 40 % cirrus (s2cloudless: 4.3 %), and products from
   January 2022 on leave QA60 empty.
3. ``QA60`` that flags anything: the Sentinel-2 L1C/L2A 60 m quality band of the older products
   and of Google Earth Engine exports. Masked bits: 10 opaque cloud, 11 cirrus
   (:data:`QA60_BITS`). It has no shadow flag.
4. Otherwise an empty QA60 band is used as it is, and a raster with neither band nor the
   s2cloudless inputs is not cloud-masked; the log says so once, and why s2cloudless did not run
   (bands missing, or lightgbm / the model file not installed: ``make setup``). An index or a
   model then sees clouds and shadows as they are.

A mask that would leave no pixel (haze or thin cirrus flagged over the whole raster) is not
applied when water/land edges still show through it: ``segment`` then says so and flags the
result (:func:`backend.segment.cli`'s haze check).

Numpy here; s2cloudless brings lightgbm and scipy, imported only when it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.segment import s2cloudless, shadows

SCL_MASKED: dict[int, str] = {
    3: "cloud shadow",
    8: "cloud (medium probability)",
    9: "cloud (high probability)",
    10: "thin cirrus",
}
QA60_BITS: dict[int, str] = {10: "opaque cloud", 11: "cirrus"}
CHOICES = ("auto", "none")
MAX_GRID_CELLS = 1_000_000  # s2cloudless grid: 160 x 160 km at 160 m, ~30 s on 2 cores
FINE_M = 40.0
"""Cell size of the fine grid: s2cloudless's second, small-cloud pass and the shadow search."""
FINE_THRESHOLD = 0.7
"""The fine pass flags a cell whose probability, averaged over a disk of radius 1 cell, is above
this (dilated by 1 cell): only confident clouds, since a lake's whiting or glint reaches 0.4-0.6
at 10-40 m (Bracciano 2021-06-22), where the 160 m averaging keeps it clear."""
EMPTY_QA60 = "the QA60 band flags nothing (products from January 2022 on leave it empty)"
QA60_GIVES_WAY = "used instead of the QA60 band, whose 60 m flags are blocky and miss small clouds"


@dataclass(frozen=True)
class CloudBand:
    """The band of a raster that flags clouds: 1-based ``index`` and ``kind`` (SCL or QA60)."""

    index: int
    kind: str

    def flagged(self, values: np.ndarray) -> np.ndarray:
        """Bool array: pixels of this band's ``values`` that are cloud or cloud shadow."""
        if self.kind == "SCL":
            return np.isin(np.rint(values).astype(np.int64), list(SCL_MASKED))
        bits = np.rint(values).astype(np.int64)
        return np.any([(bits >> b) & 1 == 1 for b in QA60_BITS], axis=0)

    def describe(self) -> str:
        flags = SCL_MASKED if self.kind == "SCL" else QA60_BITS
        what = "classes" if self.kind == "SCL" else "bits"
        listed = ", ".join(f"{k} {v}" for k, v in flags.items())
        return f"{self.kind} band {self.index} ({what} {listed})"


def find_cloud_band(descriptions: list[str | None] | tuple[str | None, ...]) -> CloudBand | None:
    """The raster's SCL band (preferred, it also flags shadows) or QA60 band, by its
    description ("SCL", "scl", "QA60", "qa_60" ...), else None."""
    found: dict[str, int] = {}
    for i, text in enumerate(descriptions, start=1):
        key = (text or "").strip().upper().replace("_", "").replace(" ", "")
        if key in ("SCL", "QA60") and key not in found:
            found[key] = i
    for kind in ("SCL", "QA60"):
        if kind in found:
            return CloudBand(found[kind], kind)
    return None


def cloud_band_for(mode: str, descriptions) -> CloudBand | None:
    """The cloud band ``--cloud-mask mode`` uses for a raster with these band descriptions."""
    if mode not in CHOICES:
        raise ValueError(f"unknown --cloud-mask {mode!r}; valid: {', '.join(CHOICES)}")
    return find_cloud_band(descriptions) if mode == "auto" else None


@dataclass(frozen=True, eq=False)
class CloudGrid:
    """Cloud flags computed once per raster on a coarse grid, bool ``flags`` (gh, gw) spread
    evenly over the whole raster; ``what`` names their source for the log.

    A raster pixel takes the flag of the cell its centre falls in, whatever window or
    resampled read it comes from: its flag never depends on the strip layout."""

    flags: np.ndarray
    what: str

    def flags_in(
        self, row0: int, row1: int, col0: int, col1: int, shape: tuple[int, int]
    ) -> np.ndarray:
        """Bool (row1 - row0, col1 - col0): the flags of rows [row0, row1) and columns
        [col0, col1) of the raster read at ``shape`` (its full height and width, or the
        out_shape of a resampled whole-raster read)."""
        gh, gw = self.flags.shape
        rows = ((2 * np.arange(row0, row1, dtype=np.int64) + 1) * gh) // (2 * shape[0])
        cols = ((2 * np.arange(col0, col1, dtype=np.int64) + 1) * gw) // (2 * shape[1])
        return self.flags[np.ix_(np.clip(rows, 0, gh - 1), np.clip(cols, 0, gw - 1))]

    @property
    def fraction(self) -> float:
        """Share of the raster flagged (each cell covers an equal share)."""
        return float(self.flags.mean())

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True, eq=False)
class CloudAndShadow:
    """A cloud mask (band or grid) and the shadows its clouds cast (:mod:`shadows`), both read
    as nodata; their shares are reported apart."""

    cloud: CloudBand | CloudGrid
    shadow: CloudGrid
    kind = "cloud and shadow"

    def describe(self) -> str:
        return f"{self.cloud.describe()}, with {self.shadow.describe()}"


@dataclass(frozen=True)
class CloudChoice:
    """What ``--cloud-mask`` uses for a raster: a band, a grid or nothing (``mask``), and why
    s2cloudless did not run when that is worth a log line (``why_not_s2cloudless``)."""

    mask: CloudBand | CloudGrid | CloudAndShadow | None = None
    why_not_s2cloudless: str = ""


def s2cloudless_bands(held: dict[str, int]) -> tuple[list[int], list[str]]:
    """(1-based raster bands in :data:`s2cloudless.MODEL_BANDS` order, names missing) from
    ``held``, canonical band name -> raster band (descriptions or the 13-band L1C layout)."""
    missing = [b for b in s2cloudless.MODEL_BANDS if b not in held]
    return ([] if missing else [held[b] for b in s2cloudless.MODEL_BANDS]), missing


def pixel_metres(georef) -> float | None:
    """A raster's pixel size in metres at its centre, measured as the shoreline measures its
    lengths (:func:`backend.segment.shoreline.lengths_m`, geodesic on the CRS's ellipsoid):
    the geometric mean of one pixel's width and height. None without a CRS."""
    if georef.crs is None:
        return None
    from backend.segment.shoreline import lengths_m

    c, r = georef.width / 2, georef.height / 2
    x, y = georef.pixel_to_map(np.array([c, c + 1, c]), np.array([r, r, r + 1]))
    across = np.stack([x[:2], y[:2]], axis=1)
    down = np.stack([x[[0, 2]], y[[0, 2]]], axis=1)
    width, height = lengths_m([across, down], georef)
    return math.sqrt(width * height)


def choose_cloud_mask(
    mode: str, source: Any, held: dict[str, int], extra_offset: float = 0.0
) -> CloudChoice:
    """The cloud mask ``--cloud-mask mode`` uses for ``source`` (a RasterSource), by the order
    in the module docstring. ``held``: canonical band name -> raster band; ``extra_offset``:
    -1000 with --l2a-offset (added to the DN before s2cloudless)."""
    band = cloud_band_for(mode, source.descriptions)
    if band is not None and band.kind == "SCL":
        return CloudChoice(band)
    if mode == "none":
        return CloudChoice(None)
    flags_any = band is not None and source.band_flag_fraction(band) > 0
    indexes, missing = s2cloudless_bands(held)
    if source.dtype == np.uint8:
        why = "s2cloudless needs L1C reflectance, not an 8-bit image"
    elif missing:
        why = f"s2cloudless needs the L1C bands {' '.join(s2cloudless.MODEL_BANDS)}, and "
        why += f"{' '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    else:
        why = s2cloudless.available()
        why = f"s2cloudless cannot run: {why}" if why else ""
    if why:
        if flags_any:
            return CloudChoice(with_shadows(source, band, held))
        empty_qa60 = EMPTY_QA60 if band else ""
        return CloudChoice(band, f"{empty_qa60} and {why}" if band else why)
    qa60 = "" if band is None else (QA60_GIVES_WAY if flags_any else EMPTY_QA60)
    grid = s2cloudless_grid(source, indexes, extra_offset, qa60)
    return CloudChoice(with_shadows(source, grid, held))


def fine_grid_shape(source) -> tuple[tuple[int, int], float | None]:
    """((gh, gw), cell size in metres or None without a CRS) of the fine grid: about
    :data:`FINE_M` cells, coarser on rasters too large for :data:`MAX_GRID_CELLS`."""
    metres = pixel_metres(source.georef)
    step = max(1, round(FINE_M / (metres or 10.0)), source.overview_factor(MAX_GRID_CELLS))
    shape = (max(1, math.ceil(source.height / step)), max(1, math.ceil(source.width / step)))
    return shape, (metres * source.height / shape[0] if metres else None)


def with_shadows(source, cloud: CloudBand | CloudGrid, held: dict[str, int]):
    """``cloud`` and the shadows of its clouds (:mod:`backend.segment.shadows`, on the fine
    grid; red B4 and NIR B8 are read to find them), or ``cloud`` alone when the raster lacks
    those bands or no shadow is found."""
    if "B4" not in held or "B8" not in held:
        return cloud
    (gh, gw), cell_m = fine_grid_shape(source)
    raw, valid = source.read_bands_and_validity([held["B4"], held["B8"]], gh, gw)
    if isinstance(cloud, CloudGrid):
        flags = cloud.flags_in(0, gh, 0, gw, (gh, gw))
    else:
        flags = cloud.flagged(source.read_bands_decimated([cloud.index], gh, gw)[0])
    red, nir = raw.astype(np.float32) * np.float32(1e-4)
    size = cell_m or 10.0 * source.height / gh
    azimuth = shadows.sun_azimuth(source.tags())
    away = None if azimuth is None else (azimuth + 180.0) % 360.0
    offset = shadows.shadow_offset(flags, nir, red, valid, size, bearing=away)
    found = shadows.shadow_flags(flags, nir, red, valid, offset)
    if offset is None or not found.any():
        return cloud
    how = (
        "found from the image"
        if azimuth is None
        else f"searched away from the sun, azimuth {azimuth:.0f} degrees in the metadata"
    )
    what = (
        f"their shadows (the clouds moved {offset.metres(size) / 1000:.1f} km toward "
        f"{offset.bearing():.0f} degrees, the offset that darkens the land most, {how}; "
        f"dark land there, red above NIR, on {size:.0f} m cells)"
    )
    return CloudAndShadow(cloud, CloudGrid(found, what))


def s2cloudless_grid(
    source: Any, indexes: list[int], extra_offset: float, qa60: str = ""
) -> CloudGrid:
    """Run s2cloudless once on ``source`` read at about 160 m (bands ``indexes``)."""
    metres = pixel_metres(source.georef)
    step = s2cloudless.grid_step(metres or 10.0)
    step = max(step, source.overview_factor(MAX_GRID_CELLS))  # huge mosaics: coarser cells
    gh, gw = max(1, math.ceil(source.height / step)), max(1, math.ceil(source.width / step))
    raw, valid = source.read_bands_and_validity(indexes, gh, gw)
    flags = s2cloudless.cloud_flags(raw, valid, extra_offset)

    def cells(h: int) -> str:
        if metres:
            return f"{metres * source.height / h:.0f} m cells"
        return f"{source.height / h:.0f}-pixel cells (no CRS: 10 m pixels assumed)"

    what = (
        f"s2cloudless (Sinergise's LightGBM model, CC BY-SA 4.0: cloud probability averaged over "
        f"a disk of {s2cloudless.AVERAGE_OVER} cells, > {s2cloudless.THRESHOLD}, dilated by "
        f"{s2cloudless.DILATION_SIZE} cells, on a {gh} x {gw} grid of {cells(gh)}"
    )
    (fh, fw), _ = fine_grid_shape(source)
    if fh > gh:  # small cumulus vanish in the 160 m average: a second, confident pass
        raw, valid = source.read_bands_and_validity(indexes, fh, fw)
        fine = s2cloudless.cloud_flags(
            raw, valid, extra_offset, threshold=FINE_THRESHOLD, average_over=1, dilation_size=1
        )
        flags = CloudGrid(flags, "").flags_in(0, fh, 0, fw, (fh, fw)) | fine
        what += (
            f", and small clouds on {cells(fh)} (> {FINE_THRESHOLD} averaged over 1 cell, "
            "dilated by 1)"
        )
    return CloudGrid(flags, what + f"{'; ' + qa60 if qa60 else ''})")
