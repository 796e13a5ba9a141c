"""Band names and band mapping: which raster bands feed which model bands.

Every name is brought to one canonical form, the Sentinel-2 band name: ``B04``, ``b4``,
``red``, ``Red``, ``red (B4)`` and ``Band 4 (red)`` are all ``B4``; ``nir``, ``Near infrared``
and ``nir (B8)`` are ``B8``; ``SWIR1`` is ``B11``, ``SWIR2`` ``B12``, ``coastal`` ``B1``. A model
whose checkpoint says ``red green blue`` therefore needs ``B4 B3 B2``.

Mapping rules (:func:`map_bands`, first that applies):

1. ``explicit`` (``--bands``): raster band numbers in model band order. A raster band may
   feed only one model band unless duplicates are allowed.
2. ``descriptions``: the raster's band descriptions name bands (QGIS's generated "Band 3" is
   no name). Every model band must be named, else a ``UserError`` says which are missing.
3. ``colour-interpretation``: no descriptions, but GDAL's colour interpretation says red,
   green, blue (and possibly alpha), as in an 8-bit true-colour image.
4. ``layout-<n>``: nothing named, a documented order chosen by the band count (``LAYOUTS``),
   said in the log (``BandMapping.note``).

Pure Python: no numpy, rasterio or torch (``plan`` answers without them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from backend.core.errors import UserError

S2_L1C_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
S2_L2A_ORDER = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
TRUE_COLOUR_ORDER = ["B4", "B3", "B2"]

# Documented guesses for rasters with no band names, by band count; (order, what to log).
LAYOUTS: dict[int, tuple[list[str], str]] = {
    3: (TRUE_COLOUR_ORDER, "the true-colour order red, green, blue (B4 B3 B2)"),
    4: (["B2", "B3", "B4", "B8"], "the 10 m Sentinel-2 order B2 B3 B4 B8"),
    12: (S2_L2A_ORDER, "the Sentinel-2 L2A order B1 ... B9 B11 B12 (no B10)"),
    13: (S2_L1C_ORDER, "the Sentinel-2 L1C order B1 ... B10 B11 B12"),
}

_S2_TOKEN = re.compile(r"\bb0*(\d{1,2})(a?)\b")
_GENERIC = re.compile(r"^\s*band\s*\d+\s*$", re.IGNORECASE)
_QGIS_PREFIX = re.compile(r"^\s*band\s*\d+\s*:\s*", re.IGNORECASE)
# Word names, tried in order after a Sentinel-2 token (B4, B08, b8a) was not found.
_WORDS: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"\bcoastal\b|\baerosol\b"), "B1"),
    (re.compile(r"\bred\s*edge\b|\brededge\d*\b|\bvre\d*\b|\bre\d\b"), None),  # not "red"
    (re.compile(r"\bwater\s*vapou?r\b"), "B9"),
    (re.compile(r"\bcirrus\b"), "B10"),
    (re.compile(r"\bswir\s*1\b|\bswir16\b"), "B11"),
    (re.compile(r"\bswir\s*2\b|\bswir22\b"), "B12"),
    (re.compile(r"\bnarrow\s*nir\b|\bnir\s*narrow\b|\bnir\s*2\b|\bnir08\b"), "B8A"),
    (re.compile(r"\bnir\s*1?\b|\bnear\s*infra\s*red\b|\bnear\s*ir\b"), "B8"),
    (re.compile(r"\bred\b"), "B4"),
    (re.compile(r"\bgreen\b"), "B3"),
    (re.compile(r"\bblue\b"), "B2"),
]
COLOUR_BANDS = {"red": "B4", "green": "B3", "blue": "B2"}


def normalise_band_name(text: str | None) -> str | None:
    """A band description or model band name -> canonical Sentinel-2 name, or None.

    "B02" -> "B2", "b8a" -> "B8A", "Band 4 (red)" -> "B4", "nir (B8)" -> "B8",
    "SWIR1" -> "B11", "Near infrared" -> "B8", "coastal" -> "B1"; "Band 1", "QA10" -> None.
    """
    if not text or _GENERIC.match(text):
        return None
    low = _QGIS_PREFIX.sub("", text).lower().replace("-", " ").replace("_", " ")
    m = _S2_TOKEN.search(low)
    if m:
        number, suffix = int(m.group(1)), m.group(2).upper()
        if 1 <= number <= 12 and (not suffix or number == 8):
            return f"B{number}{suffix}"
    for pattern, band in _WORDS:
        if pattern.search(low):
            return band
    return None


def is_named(text: str | None) -> bool:
    """True when ``text`` is a real band description (not empty, not QGIS's "Band 3")."""
    return bool(text and text.strip() and not _GENERIC.match(text))


def canonical_bands(model_bands: list[str] | tuple[str, ...]) -> list[str]:
    """Model band names in canonical form ("red" -> "B4"); unknown names stay as they are."""
    return [normalise_band_name(b) or b for b in model_bands]


def parse_bands_option(text: str) -> list[int]:
    """``"2,3,4,8"`` -> [2, 3, 4, 8] (1-based band numbers). Raises UserError on bad syntax."""
    try:
        values = [int(v) for v in re.split(r"[,\s;]+", text.strip()) if v]
    except ValueError:
        raise UserError(
            f"--bands {text!r} is not a list of band numbers; write e.g. --bands 2,3,4,8"
        ) from None
    if not values:
        raise UserError("--bands is empty; write e.g. --bands 2,3,4,8")
    return values


_FILE_NAME_BANDS = re.compile(r"(?:^|[_\-. ])((?:B0?\d{1,2}A?){2,13})$", re.IGNORECASE)


def bands_in_file_name(path: str, count: int) -> tuple[str, ...]:
    """Band names a file name lists in order, as exports often do ("scene_B2B3B4.jpg",
    "tile_B04B03B02.tif"): canonical names when there are exactly ``count`` of them, else ()."""
    stem = Path(str(path)).stem
    match = _FILE_NAME_BANDS.search(stem)
    if not match:
        return ()
    names = [
        f"B{int(n)}{a.upper()}" for n, a in re.findall(r"B0?(\d{1,2})(A?)", match.group(1), re.I)
    ]
    if (
        len(names) != count
        or len(set(names)) != count
        or any(not 1 <= int(n[1:].rstrip("A")) <= 12 for n in names)
    ):
        return ()
    return tuple(names)


@dataclass(frozen=True)
class RasterBands:
    """What band mapping needs to know about a raster (from the file or from the dock).

    ``descriptions[i]`` and ``colour_interp[i]`` ("red", "alpha", "gray", ...) belong to band
    i + 1; ``dtype`` is the numpy name of band 1's type ("uint8", "uint16", ...).
    """

    count: int
    descriptions: tuple[str | None, ...] = ()
    colour_interp: tuple[str, ...] = ()
    dtype: str = ""
    file_name_bands: tuple[str, ...] = ()  # from the file name, e.g. "x_B2B3B4.jpg"

    def names(self) -> dict[str, int]:
        """Canonical band name -> first raster band (1-based) whose description names it."""
        found: dict[str, int] = {}
        for i, text in enumerate(self.descriptions, start=1):
            name = normalise_band_name(text)
            if name and name not in found:
                found[name] = i
        return found

    def has_descriptions(self) -> bool:
        return any(is_named(d) for d in self.descriptions)

    def colour_names(self) -> dict[str, int]:
        """B4/B3/B2 -> band when the colour interpretation is exactly red, green, blue
        (+ alpha): an RGB or RGBA image. Empty otherwise."""
        ci = [c.lower() for c in self.colour_interp]
        colours = [c for c in ci if c != "alpha"]
        if sorted(colours) != ["blue", "green", "red"] or len(ci) != self.count:
            return {}
        return {COLOUR_BANDS[c]: ci.index(c) + 1 for c in colours}

    def data_bands(self) -> int:
        """Bands that are not alpha."""
        return self.count - sum(1 for c in self.colour_interp if c.lower() == "alpha")

    def held(self) -> tuple[dict[str, int], str]:
        """(canonical band -> raster band, rule) by the first rule that names anything:
        descriptions, colour interpretation, then the layout of this band count."""
        if self.has_descriptions():
            return self.names(), "descriptions"
        if self.file_name_bands:
            return {b: i for i, b in enumerate(self.file_name_bands, start=1)}, "file-name"
        colours = self.colour_names()
        if colours:
            return colours, "colour-interpretation"
        layout = LAYOUTS.get(self.count)
        if layout is not None and (self.count != 3 or self.dtype == "uint8"):
            return {b: i for i, b in enumerate(layout[0], start=1)}, f"layout-{self.count}"
        return {}, "none"


@dataclass(frozen=True)
class BandMapping:
    """1-based raster band indexes in model band order, the rule that chose them, and a note
    for the log when the mapping is a guess ("" otherwise)."""

    indexes: list[int]
    rule: str  # "explicit" | "descriptions" | "file-name" | "colour-interpretation" | "layout-<n>"
    note: str = ""
    warnings: list[str] = field(default_factory=list)


DUPLICATE_WHY = (
    "a raster band may feed only one model band: duplicating one makes a 4-band model see a "
    "fake NIR band (99.99 % water was observed); list distinct bands, or pass "
    "--allow-duplicate-bands if you really mean it"
)


def map_bands(
    model_bands: list[str],
    count: int,
    descriptions: list[str | None] | tuple[str | None, ...] = (),
    explicit: list[int] | None = None,
    *,
    colour_interp: list[str] | tuple[str, ...] = (),
    dtype: str = "",
    allow_duplicates: bool = False,
) -> BandMapping:
    """Choose the raster bands that feed the model (rules in the module docstring)."""
    raster = RasterBands(count, tuple(descriptions), tuple(colour_interp), dtype)
    return map_raster_bands(model_bands, raster, explicit, allow_duplicates=allow_duplicates)


def map_raster_bands(
    model_bands: list[str],
    raster: RasterBands,
    explicit: list[int] | None = None,
    *,
    allow_duplicates: bool = False,
    strict: bool = False,
) -> BandMapping:
    """:func:`map_bands` on a :class:`RasterBands`. ``strict``: an RGB(A) colour
    interpretation is taken at its word (no fallback to the band-count layout)."""
    count = raster.count
    need = " ".join(model_bands)
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
        dupes = sorted({b for b in explicit if explicit.count(b) > 1})
        if dupes and not allow_duplicates:
            raise UserError(
                f"--bands {','.join(map(str, explicit))} uses raster band "
                f"{', '.join(map(str, dupes))} more than once: {DUPLICATE_WHY}"
            )
        return BandMapping(list(explicit), "explicit")

    wanted = canonical_bands(model_bands)
    held, rule = raster.held()
    missing = [m for m, w in zip(model_bands, wanted, strict=True) if w not in held]
    if rule == "descriptions":
        if missing:
            named = ", ".join(d or "''" for d in raster.descriptions)
            raise UserError(
                f"missing {', '.join(missing)}: no band description ({named}) names it, and the "
                f"model needs {need}; pass --bands with the raster band numbers of {need} in "
                "that order"
            )
        return BandMapping([held[w] for w in wanted], rule)
    if rule == "file-name" and not missing:
        note = (
            f"no band descriptions: the file name lists its bands as "
            f"{' '.join(raster.file_name_bands)}; pass --bands if that is wrong"
        )
        return BandMapping([held[w] for w in wanted], rule, note)
    if rule == "colour-interpretation" and not missing:
        return BandMapping([held[w] for w in wanted], rule)
    if rule.startswith("layout-") and not missing:
        layout_text = LAYOUTS[count][1]
        note = f"no band descriptions: assuming {layout_text}; pass --bands if that is wrong"
        return BandMapping([held[w] for w in wanted], rule, note)
    if rule == "colour-interpretation":
        layout = LAYOUTS.get(count)
        if not strict and layout is not None and all(w in layout[0] for w in wanted):
            # GDAL marks every new 4-band 8-bit GeoTIFF RGBA: the colour interpretation may
            # be a default nobody chose, so the band-count layout still applies, said loudly.
            note = (
                f"colour interpretation {', '.join(raster.colour_interp)} but the model needs "
                f"{need}: no band descriptions, assuming {layout[1]}; pass --bands if wrong"
            )
            return BandMapping([layout[0].index(w) + 1 for w in wanted], f"layout-{count}", note)
        raise UserError(
            f"the raster is a red/green/blue image (GDAL colour interpretation) without "
            f"{', '.join(missing)}, which the model needs ({need}); pass --bands with the "
            f"raster band numbers of {need} in that order, or use a model for RGB images"
        )
    if count < len(model_bands):
        raise UserError(
            f"the raster has {count} band(s) but the model needs {len(model_bands)} ({need}); "
            f"missing {', '.join(missing if held else model_bands[count:])}; pass a raster "
            "with these bands or --bands"
        )
    example = ",".join(str(i) for i in range(1, len(model_bands) + 1))
    raise UserError(
        f"cannot tell which of the raster's {count} {raster.dtype} bands are {need} (no band "
        f"descriptions, no known layout); pass --bands with their numbers in that order, e.g. "
        f"--bands {example}"
    )
