"""A synthetic but realistic Sentinel-2 L2A demo scene with its true water mask, made in code.

The demo must run on a fresh clone without downloading anything, and must be able to say how
good the result is, so the scene is generated together with its truth. It imitates a
Sentinel-2 Level-2A 10 m product (surface reflectance x 10000, uint16, nodata 0) in
WGS 84 / UTM zone 33N (EPSG:32633), and holds:

- a sea in the west with a wavy coast, sandy beaches (dry and wet sand, a little surf), rocky or
  vegetated stretches without a beach, and two concrete piers of a small port;
- turbid water: a meandering river (80 - 180 m wide) with a sediment plume at its mouth and a
  turbid shallow coastal strip;
- a clear, dark lake with an island, drained by a narrow stream (40 m) into the river;
- a few small ponds;
- land: crop fields, pasture, dry grass, bare and wet soil on a rotated parcel grid, woodland,
  a road, and a town (concrete, red-tile, dark and metal roofs, asphalt streets, building
  shadows, urban green) that reaches the sea at the port. Metal roofs and shadows have a
  slightly positive NDWI, the classical index's known weakness in built-up areas;
- a nodata triangle (all bands 0) like the edge of a Sentinel-2 swath.

Reflectances per class are typical L2A values (B2, B3, B4, B8, B11, B12): clear sea (0.060,
0.050, 0.030, 0.010, 0.004, 0.003), turbid river (0.075, 0.105, 0.100, 0.045, 0.016, 0.010),
vegetation B4 ~0.03 / B8 ~0.3-0.4 / B11 ~0.15-0.2, sand 0.18-0.40, urban 0.10-0.30 and flat.
Water absorbs short-wave infrared, so B11/B12 are near zero over water but not over roofs,
which is what MNDWI = (B3 - B11) / (B3 + B11) exploits; shadows stay dark in every band. The
20 m bands B11 and B12 hold one value per 2 x 2 pixels, as in a 10 m Sentinel-2 stack. Each class gets parcel-level and pixel-level texture;
water/land boundaries are mixed pixels (area-weighted spectra); sensor noise is added last.
The truth mask is 1 where at least half the pixel is water.

Deterministic for a given seed and size; a 1024 x 1024 scene takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]
EPSG = 32633
PIXEL_SIZE = 10.0
ORIGIN = (399960.0, 4600020.0)  # upper-left corner (easting, northing) in metres
NODATA = 0
TRUTH_NODATA = 255
WATER, LAND = 1, 0

# Surface reflectance (B2, B3, B4, B8, B11, B12) of each material, Sentinel-2 L2A.
SPECTRA: dict[str, tuple[float, ...]] = {
    "clear_sea": (0.060, 0.050, 0.030, 0.010, 0.004, 0.003),
    "lake": (0.035, 0.042, 0.022, 0.008, 0.003, 0.002),
    "turbid": (0.075, 0.105, 0.100, 0.045, 0.016, 0.010),
    "foam": (0.280, 0.290, 0.280, 0.240, 0.120, 0.080),
    "crop": (0.030, 0.070, 0.040, 0.380, 0.200, 0.100),
    "pasture": (0.040, 0.080, 0.060, 0.300, 0.220, 0.120),
    "dry_grass": (0.070, 0.100, 0.130, 0.240, 0.300, 0.220),
    "bare_soil": (0.070, 0.100, 0.140, 0.200, 0.300, 0.240),
    "wet_soil": (0.050, 0.070, 0.090, 0.130, 0.170, 0.120),
    "forest": (0.025, 0.045, 0.025, 0.270, 0.140, 0.060),
    "dry_sand": (0.180, 0.230, 0.280, 0.330, 0.400, 0.350),
    "wet_sand": (0.100, 0.130, 0.150, 0.160, 0.120, 0.090),
    "concrete": (0.140, 0.150, 0.160, 0.190, 0.220, 0.200),
    "asphalt": (0.070, 0.080, 0.090, 0.110, 0.120, 0.110),
    "red_roof": (0.080, 0.100, 0.170, 0.240, 0.300, 0.250),
    "dark_roof": (0.050, 0.055, 0.060, 0.075, 0.080, 0.070),
    "metal_roof": (0.110, 0.125, 0.120, 0.115, 0.130, 0.120),
    "shadow": (0.030, 0.032, 0.028, 0.031, 0.025, 0.020),
}
_NAMES = list(SPECTRA)
_TABLE = np.array([SPECTRA[n] for n in _NAMES], dtype=np.float32)  # (K, 6)
_ID = {n: i for i, n in enumerate(_NAMES)}


@dataclass
class SyntheticScene:
    """A generated scene.

    image: (6, H, W) uint16, reflectance x 10000, bands B2 B3 B4 B8 B11 B12, 0 = nodata.
    truth: (H, W) uint8, 1 water / 0 land / 255 nodata.
    transform: affine (a, b, c, d, e, f) as rasterio.Affine; crs: "EPSG:32633".
    """

    image: np.ndarray
    truth: np.ndarray
    transform: object
    crs: str
    bands: list[str]
    seed: int


def _upsample(grid: np.ndarray, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth (smoothstep-weighted bilinear) upsampling of a coarse (gh, gw) grid to (H, W), one grid cell = ``cell`` px."""
    h, w = shape
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0 = ys.astype(np.int64)
    x0 = xs.astype(np.int64)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    fy = fy * fy * (3 - 2 * fy)  # smoothstep: no kinks at grid nodes
    fx = fx * fx * (3 - 2 * fx)
    rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy  # (H, gw)
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _noise2d(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[float, ...]
) -> np.ndarray:
    """Fractal value noise (H, W) float32, roughly zero mean and unit-ish amplitude."""
    out = np.zeros(shape, np.float32)
    amp = 1.0
    for cell in cells:
        gh = int(shape[0] / cell) + 2
        gw = int(shape[1] / cell) + 2
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * _upsample(grid, shape, cell)
        amp *= 0.5
    return out


def _noise1d(rng: np.random.Generator, n: int, cells: tuple[float, ...]) -> np.ndarray:
    """Fractal value noise along one axis: (n,) float32."""
    return _noise2d(rng, (1, n), cells)[0]


def _curve_distance(coord: np.ndarray, centre: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Approximate perpendicular distance from points to a curve given as a function."""
    return np.abs(coord - centre) / np.sqrt(1.0 + slope**2)


def generate_scene(size: int = 1024, seed: int = 0) -> SyntheticScene:
    """Generate the demo scene (size x size pixels at 10 m). See the module docstring.

    Geometry scales with ``size`` (>= 128); widths of rivers, beaches and streets stay in
    metres. Returns a SyntheticScene (image (6, size, size) uint16, truth (size, size) uint8).
    """
    from rasterio.transform import from_origin

    if size < 128:
        raise ValueError(f"size must be >= 128 pixels, got {size}")
    rng = np.random.default_rng(seed)
    n = size
    s = n / 1024.0  # geometry scale
    r = np.arange(n, dtype=np.float32)[:, None]  # row
    c = np.arange(n, dtype=np.float32)[None, :]  # column
    rows = np.arange(n, dtype=np.float32)
    cols = np.arange(n, dtype=np.float32)

    # --- Water bodies as signed distances in pixels (negative = inside water) -----------
    # Coast: sea west of coast_x(row).
    coast_x = (
        0.27 * n
        + 45 * s * _noise1d(rng, n, (300 * s, 90 * s, 30 * s))
        + 35 * s * np.sin(2 * np.pi * rows / (0.9 * n) + rng.uniform(0, 6.28))
    )
    coast_slope = np.gradient(coast_x)
    sd_coast = ((c - coast_x[:, None]) / np.sqrt(1 + coast_slope[:, None] ** 2)).astype(np.float32)

    # River: from the east edge to the coast, row = river_y(col), meandering.
    mouth_r = 0.62 * n + rng.uniform(-0.03, 0.03) * n
    src_r = 0.52 * n
    mouth_c = float(np.interp(mouth_r, rows, coast_x))
    t = np.clip((cols - mouth_c) / (n - mouth_c), 0, 1)
    phase = rng.uniform(0, 6.28)
    river_y = (
        mouth_r
        + (src_r - mouth_r) * t
        + 38 * s * np.sin(2 * np.pi * cols / (230 * s) + phase) * np.clip(t * 4, 0, 1)
        + 8 * s * _noise1d(rng, n, (120 * s, 40 * s))
    )
    river_slope = np.gradient(river_y)
    river_w = 18 - 10 * t + 1.5 * _noise1d(rng, n, (60 * s,))  # pixels: 180 m -> 80 m
    d_river = _curve_distance(r, river_y[None, :], river_slope[None, :])
    sd_river = d_river - river_w[None, :] / 2
    sd_river = np.where(c >= mouth_c - 30, sd_river, np.inf).astype(np.float32)

    # Lake with an island.
    lr, lc, lrad = 0.30 * n, 0.70 * n, 105 * s
    rho = np.sqrt((r - lr) ** 2 + (c - lc) ** 2)
    theta = np.arctan2(r - lr, c - lc)
    p = rng.uniform(0, 6.28, 3)
    radius = lrad * (
        1
        + 0.16 * np.sin(3 * theta + p[0])
        + 0.09 * np.sin(5 * theta + p[1])
        + 0.05 * np.sin(8 * theta + p[2])
    )
    sd_lake = rho - radius
    ir, ic = lr - 0.25 * lrad, lc + 0.2 * lrad
    sd_island = 11 * s - np.sqrt((r - ir) ** 2 + ((c - ic) / 1.6) ** 2)
    sd_lake = np.maximum(sd_lake, sd_island).astype(np.float32)
    lake_bottom = lr + lrad * 0.75

    # Stream from the lake down to the river, 40 m wide.
    river_at_lc = float(np.interp(lc, cols, river_y))
    stream_x = lc + 25 * s * np.sin(rows / (45 * s)) + 6 * s * _noise1d(rng, n, (50 * s,))
    stream_slope = np.gradient(stream_x)
    sd_stream = _curve_distance(c, stream_x[:, None], stream_slope[:, None]) - 2.0
    in_range = (r > lake_bottom - 20 * s) & (r < river_at_lc)
    sd_stream = np.where(in_range, sd_stream, np.inf).astype(np.float32)

    # Small ponds (ellipses) on land.
    sd_ponds = np.full((n, n), np.inf, np.float32)
    for pr, pc, pa in ((0.12, 0.45, 7), (0.85, 0.55, 9), (0.40, 0.92, 5), (0.80, 0.38, 6)):
        a = pa * s + 2
        sd_ponds = np.minimum(
            sd_ponds, (np.sqrt(((r - pr * n) / a) ** 2 + ((c - pc * n) / (1.5 * a)) ** 2) - 1) * a
        )

    # Port: two piers (land) sticking into the sea north of the river mouth.
    sd_piers = np.full((n, n), -np.inf, np.float32)
    for k in range(2):
        pr0 = mouth_r - (70 + 45 * k) * s
        pc1 = float(np.interp(pr0, rows, coast_x)) + 4
        pc0 = pc1 - 45 * s
        inside = np.minimum(np.minimum(r - pr0, pr0 + 4 - r), np.minimum(c - pc0, pc1 - c))
        sd_piers = np.maximum(sd_piers, inside)

    sd_sea = np.maximum(sd_coast, sd_piers)
    sd_water = np.minimum.reduce([sd_sea, sd_river, sd_lake, sd_stream, sd_ponds])
    fraction = np.clip(0.5 - sd_water, 0.0, 1.0).astype(np.float32)  # water area per pixel
    water = sd_water < 0

    # --- Water colour ------------------------------------------------------------------
    dist_mouth = np.sqrt((r - mouth_r) ** 2 + (c - mouth_c) ** 2)
    turbidity = np.maximum.reduce(
        [
            np.where(np.isfinite(sd_river) & (sd_river < 3), 0.85, 0.0),
            0.9
            * np.exp(-dist_mouth / (110 * s))
            * (1 + 0.3 * _noise2d(rng, (n, n), (40 * s, 12 * s))),
            np.where(sd_coast < 0, 0.45 * np.exp(np.minimum(sd_coast, 0) / (22 * s)), 0.0),
            np.where(np.isfinite(sd_stream) & (sd_stream < 3), 0.4, 0.0),
        ]
    ).astype(np.float32)
    turbidity = np.clip(turbidity, 0, 1)
    sea = (sd_lake >= 0) & (sd_ponds >= 0)
    clear = np.where(
        sea[None], _TABLE[_ID["clear_sea"]][:, None, None], _TABLE[_ID["lake"]][:, None, None]
    )
    water_refl = (
        clear * (1 - turbidity[None]) + _TABLE[_ID["turbid"]][:, None, None] * turbidity[None]
    )
    waves = 1 + 0.05 * _noise2d(rng, (n, n), (6 * s, 2))
    water_refl = water_refl * waves[None]
    # Surf: a little foam just off the beaches.
    beach_w = np.clip(8 + 9 * _noise1d(rng, n, (120 * s, 30 * s)), 0, 20)[:, None]
    surf = (sd_coast > -5) & (sd_coast < -1) & (beach_w > 4)
    foam_frac = np.where(surf, np.clip(0.25 + 0.2 * rng.standard_normal((n, n)), 0, 0.5), 0.0)
    water_refl = (
        water_refl * (1 - foam_frac[None]) + _TABLE[_ID["foam"]][:, None, None] * foam_frac[None]
    )

    # --- Land cover ----------------------------------------------------------------------
    angle = rng.uniform(0.2, 0.5)
    u = c * np.cos(angle) + r * np.sin(angle)
    v = -c * np.sin(angle) + r * np.cos(angle)
    pu = np.floor(u / (38 * s + 6)).astype(np.int64) % 97
    pv = np.floor(v / (26 * s + 4)).astype(np.int64) % 89
    field_types = np.array(
        [_ID[k] for k in ("crop", "pasture", "dry_grass", "bare_soil", "wet_soil")]
    )
    parcel_class = rng.choice(field_types, size=(97, 89), p=[0.32, 0.26, 0.17, 0.17, 0.08])
    parcel_gain = rng.uniform(0.82, 1.18, size=(97, 89)).astype(np.float32)
    cls = parcel_class[pu, pv]
    gain = parcel_gain[pu, pv]

    forest = _noise2d(rng, (n, n), (160 * s, 50 * s)) > 0.9
    cls = np.where(forest, _ID["forest"], cls)

    road = np.abs(v - 0.55 * n) < 1.0
    cls = np.where(road, _ID["asphalt"], cls)

    town_r, town_c = mouth_r - 60 * s, mouth_c + 110 * s
    town_shape = ((r - town_r) / (150 * s)) ** 2 + ((c - town_c) / (140 * s)) ** 2
    town = (town_shape + 0.25 * _noise2d(rng, (n, n), (60 * s, 20 * s))) < 1.0
    street = (np.mod(r + 3, 14) < 2) | (np.mod(c + 5, 16) < 2)
    block = (np.floor(r / 14).astype(np.int64) % 64) * 64 + np.floor(c / 16).astype(np.int64) % 64
    roof_types = np.array(
        [_ID[k] for k in ("concrete", "red_roof", "dark_roof", "metal_roof", "pasture")]
    )
    block_class = rng.choice(roof_types, size=64 * 64, p=[0.40, 0.28, 0.10, 0.08, 0.14])
    roof = block_class[block]
    # Tall buildings cast a one-pixel shadow onto the street north of them (sun from the south).
    tall = (rng.random(64 * 64) < 0.3)[block] & (block_class[block] != _ID["pasture"])
    roof = np.where(tall & (np.mod(r + 3, 14) == 2), _ID["shadow"], roof)
    # Buildings within blocks: pixels vary between roofs and courtyards.
    courtyard = rng.random((n, n)) < 0.2
    town_cls = np.where(street, _ID["asphalt"], np.where(courtyard, _ID["concrete"], roof))
    cls = np.where(town, town_cls, cls)
    cls = np.where(sd_piers > 0, _ID["concrete"], cls)

    # Beaches along the sea (not in town): dry sand, wet sand at the waterline.
    beach = (sd_coast >= 0) & (sd_coast < beach_w) & ~town & (sd_river > 4)
    cls = np.where(beach, _ID["dry_sand"], cls)
    cls = np.where(beach & (sd_coast < 2.5), _ID["wet_sand"], cls)

    land_refl = _TABLE[cls].transpose(2, 0, 1)  # (6, H, W)
    texture = 1 + 0.08 * _noise2d(rng, (n, n), (25 * s, 6 * s, 2))
    gain = np.where(town | beach, 1.0, gain)
    urban_var = np.where(town, 1 + 0.18 * rng.standard_normal((n, n)), 1.0)
    land_refl = land_refl * (gain * texture * urban_var)[None]

    # --- Mix, sensor noise, quantise, nodata -----------------------------------------------
    refl = fraction[None] * water_refl + (1 - fraction[None]) * land_refl
    # B11 and B12 are 20 m bands: in a 10 m stack each 2 x 2 block holds one value.
    swir = [BANDS.index("B11"), BANDS.index("B12")]
    h2, w2 = n - n % 2, n - n % 2
    block = refl[swir, :h2, :w2].reshape(2, h2 // 2, 2, w2 // 2, 2).mean(axis=(2, 4))
    refl[swir, :h2, :w2] = block.repeat(2, axis=1).repeat(2, axis=2)
    refl = refl + rng.normal(0.0, 0.0025, size=refl.shape) * (0.4 + refl)
    dn = np.clip(np.rint(refl * 10000.0), 1, 65535).astype(np.uint16)

    nodata = (c + 0.6 * r) > 1.35 * n  # a swath edge in the south-east corner
    dn[:, nodata] = NODATA
    truth = np.where(water, WATER, LAND).astype(np.uint8)
    truth[nodata] = TRUTH_NODATA

    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL_SIZE, PIXEL_SIZE)
    return SyntheticScene(dn, truth, transform, f"EPSG:{EPSG}", list(BANDS), seed)


def write_scene(scene: SyntheticScene, image_path: str | Path, truth_path: str | Path) -> None:
    """Write the image (4-band uint16 GeoTIFF, nodata 0, band descriptions B2 B3 B4 B8) and
    the truth (1-band uint8 GeoTIFF, nodata 255) with the scene's CRS and transform."""
    import rasterio

    _, h, w = scene.image.shape
    common = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "crs": scene.crs,
        "transform": scene.transform,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(
        image_path, "w", count=len(scene.bands), dtype="uint16", nodata=NODATA, **common
    ) as dst:
        dst.write(scene.image)
        for i, name in enumerate(scene.bands, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(
            WATERSEG_SYNTHETIC=f"seed={scene.seed}",
            DESCRIPTION="synthetic Sentinel-2 L2A-like scene, surface reflectance x 10000",
        )
    with rasterio.open(
        truth_path, "w", count=1, dtype="uint8", nodata=TRUTH_NODATA, **common
    ) as dst:
        dst.write(scene.truth, 1)
        dst.set_band_description(1, "water")


def make_demo_scene(out_dir: str | Path, size: int = 1024, seed: int = 0) -> tuple[Path, Path]:
    """Generate and write ``out_dir/synthetic_s2_scene.tif`` and ``..._truth.tif``; return both."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path = out_dir / "synthetic_s2_scene.tif"
    truth_path = out_dir / "synthetic_s2_scene_truth.tif"
    write_scene(generate_scene(size, seed), image_path, truth_path)
    return image_path, truth_path
