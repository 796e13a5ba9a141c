"""Streaming segmentation in blocks of tiles: read a block, infer, blend, emit finished rows.

The raster is read in blocks one tile high and ``BLOCK_TILES`` tiles wide, so the input held
in memory does not grow with the raster width. Blending keeps one tile row of weighted sums
(two float32 rows of ``tile`` x width: 21 MB for a 10980-wide scene): it is what joins the
blocks, left to right within a tile row and across tile rows below. No full-scene float array
is ever held. While the model runs on one block, a reader thread already reads the next one
(GDAL releases the GIL).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.contract import output_path
from backend.core.errors import Cancelled, UserError
from backend.segment.blending import StripAccumulator, tile_weight
from backend.segment.shoreline import ContourBuilder, build_shoreline
from backend.segment.tiling import TileGrid
from backend.segment.writers import (
    MASK_NODATA,
    WATER_COLOURS,
    RasterRowWriter,
    mask_from_probability,
)

L2A_OFFSET = -1000.0


class ArrayReader:
    """In-memory reader (tests, benchmarks): ``array`` (C, H, W), ``valid`` (H, W) bool."""

    def __init__(self, array: np.ndarray, valid: np.ndarray | None = None):
        self.array = array
        self.valid = valid
        self.height, self.width = array.shape[1:]

    def read_window(
        self, row0: int, row1: int, col0: int, col1: int
    ) -> tuple[np.ndarray, np.ndarray]:
        raw = self.array[:, row0:row1, col0:col1]
        if self.valid is None:
            valid = np.ones(raw.shape[1:], bool)
        else:
            valid = self.valid[row0:row1, col0:col1].copy()
        if raw.dtype.kind == "f":
            valid &= np.all(np.isfinite(raw), axis=0)
        return raw, valid


@dataclass
class RowBlock:
    """Finished rows ``[row0, row0 + h)``: ``prob`` float32 (h, W) (NaN = nodata / no
    prediction) and ``valid`` bool (h, W)."""

    row0: int
    prob: np.ndarray
    valid: np.ndarray


# Tiles per read block along a tile row: wide enough that a block's GDAL read is efficient,
# narrow enough that the input held does not grow with the raster width (8 tiles of 256 px
# with a 25 % overlap are 1600 columns).
BLOCK_TILES = 8


def _fill_invalid(x: np.ndarray, valid: np.ndarray) -> None:
    """Replace the nodata pixels of one normalised tile x (C, T, T) by the band means of the
    tile's valid pixels, in place, so nodata does not look like dark water to the model. The
    fill depends on the tile alone, not on how the raster is read."""
    if valid.all():
        return
    inv = ~valid
    for c in range(x.shape[0]):
        band = x[c]
        band[inv] = float(band[valid].mean()) if valid.any() else 0.0


def read_blocks(xs: list[int], tile: int, width: int) -> list[tuple[int, int, list[int]]]:
    """The read blocks of one tile row: ``(col0, col1, tile origins)``, ``BLOCK_TILES`` tiles
    each, left to right; neighbouring blocks share the tiles' overlap columns.

    >>> read_blocks([0, 192, 384, 544], 256, 800)[0][:2]
    (0, 800)
    """
    return [
        (group[0], min(group[-1] + tile, width), group)
        for group in (xs[i : i + BLOCK_TILES] for i in range(0, len(xs), BLOCK_TILES))
    ]


def iter_probability_rows(
    reader,
    predictor: Callable[[np.ndarray], np.ndarray],
    normalise: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int = 256,
    overlap: float = 0.25,
    cancelled: Callable[[], bool] | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
    prefetch: bool = True,
) -> Iterator[RowBlock]:
    """Stream blended water probabilities of the raster behind ``reader`` top to bottom.

    ``reader.read_window(row0, row1, col0, col1)`` -> (raw (C, h, w), valid (h, w) bool);
    ``normalise(raw)`` -> float32 (C, h, w), pixel by pixel; ``predictor(tiles (N, C, T, T))``
    -> (N, T, T) probabilities. Tiles whose pixels are all nodata are skipped. Batches are the
    consecutive tiles of one tile row, so the result does not depend on the read blocks.
    ``on_tiles(done, total)`` reports progress; ``cancelled()`` returning True raises
    ``Cancelled`` between blocks and batches.
    """
    height, width = reader.height, reader.width
    grid = TileGrid(height, width, tile, overlap)
    ys = grid.ys
    blocks = read_blocks(grid.xs, tile, width)
    reads = [(y, block) for y in ys for block in blocks]
    total, done = grid.count, 0
    acc = StripAccumulator(tile, max(width, tile))
    batch_size = int(getattr(predictor, "batch_size", 8))
    pool = (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="waterseg-read") if prefetch else None
    )

    def read(i: int):
        y, (col0, col1, _) = reads[i]
        return reader.read_window(y, min(y + tile, height), col0, col1)

    def check() -> None:
        if cancelled is not None and cancelled():
            raise Cancelled()

    batch: list[tuple[int, np.ndarray]] = []

    def run_batch(y: int) -> None:
        nonlocal done
        check()
        probs = predictor(np.stack([t for _, t in batch]))
        for (x0, _), p in zip(batch, probs, strict=True):
            w = tile_weight(tile, overlap, y == 0, y + tile >= height, x0 == 0, x0 + tile >= width)
            acc.add(p, w, y, x0)
        done += len(batch)
        batch.clear()
        if on_tiles:
            on_tiles(done, total)

    try:
        i = 0
        pending = pool.submit(read, 0) if pool else None
        for k, y in enumerate(ys):
            check()
            h = min(y + tile, height) - y
            row_valid = np.zeros((h, width), bool)
            for col0, col1, origins in blocks:
                check()
                raw, valid = pending.result() if pool else read(i)
                i += 1
                if pool and i < len(reads):
                    pending = pool.submit(read, i)
                row_valid[:, col0:col1] = valid
                if not valid.any():
                    done += len(origins)
                    continue
                x = normalise(raw)
                pad = ((0, tile - h), (0, max(0, tile - (col1 - col0))))
                if any(p for _, p in pad):
                    x = np.pad(x, ((0, 0), *pad), mode="symmetric")
                    valid = np.pad(valid, pad, mode="symmetric")
                for x0 in origins:
                    v = valid[:, x0 - col0 : x0 - col0 + tile]
                    if not v.any():
                        done += 1
                        continue
                    t = x[:, :, x0 - col0 : x0 - col0 + tile].copy()
                    _fill_invalid(t, v)
                    batch.append((x0, t))
                    if len(batch) == batch_size:
                        run_batch(y)
                del raw, x  # before the next block's arrays exist
            if batch:
                run_batch(y)
            if on_tiles:
                on_tiles(done, total)
            end = ys[k + 1] if k + 1 < len(ys) else height
            n = end - y
            prob = acc.emit(n)[:, :width]
            rows_valid = row_valid[:n]
            prob[~rows_valid] = np.nan
            yield RowBlock(y, prob, rows_valid)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)


def predict_array(
    array: np.ndarray,
    model,
    *,
    tile: int = 256,
    overlap: float = 0.25,
    valid: np.ndarray | None = None,
    device: str = "cpu",
    batch_size: int = 4,
    **predictor_options: Any,
) -> np.ndarray:
    """Whole-array convenience (tests, benchmarks): float input (C, H, W), already normalised ->
    blended probability float32 (H, W), NaN at nodata. ``predictor_options`` go to
    ``TilePredictor`` (``fuse``, ``channels_last``, ``autocast``)."""
    from backend.segment.inference import TilePredictor

    predictor = TilePredictor(model, device, batch_size, **predictor_options)
    out = np.empty(array.shape[1:], np.float32)
    for block in iter_probability_rows(
        ArrayReader(array, valid),
        predictor,
        lambda raw: raw.astype(np.float32, copy=True),
        tile=tile,
        overlap=overlap,
    ):
        out[block.row0 : block.row0 + block.prob.shape[0]] = block.prob
    return out


@dataclass
class SegmentOptions:
    """What the segment command should produce (see docs/segment.md for the defaults)."""

    overlap: float = 0.25
    threshold: float = 0.5
    probability: bool = False
    shoreline: str = "gpkg"  # gpkg | shp | both | none
    min_length: float = 20.0  # metres (two 10 m pixels)
    smooth: int = 0  # Chaikin iterations
    simplify: float = 0.0  # map units
    polygons: bool = False
    quicklook: bool = False
    l2a_offset: bool = False
    overwrite: bool = False
    tile_size: int | None = None  # None: the checkpoint's


@dataclass
class OutputPlan:
    """Final output paths of one input, by kind (mask, probability, shoreline_gpkg, ...)."""

    stem: str
    out_dir: Path
    paths: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def for_input(cls, input_path: Path, out_dir: Path, opts: SegmentOptions) -> OutputPlan:
        stem = input_path.stem
        kinds = ["mask"]
        kinds += ["probability"] if opts.probability else []
        kinds += ["shoreline_gpkg"] if opts.shoreline in ("gpkg", "both") else []
        kinds += ["shoreline_shp"] if opts.shoreline in ("shp", "both") else []
        kinds += ["polygons_gpkg"] if opts.polygons else []
        kinds += ["quicklook"] if opts.quicklook else []
        plan = cls(stem, out_dir, {k: output_path(out_dir, stem, k) for k in kinds})
        return plan

    def existing(self) -> list[Path]:
        return [p for p in self.paths.values() if p.exists()]


class Staging:
    """A hidden temporary folder in the output folder; ``commit()`` renames its files into
    place, ``discard()`` (on error or cancel) removes everything.

    The folder, ``.waterseg-<stem>-XXXXXXXX``, records the PID and host of the process that
    owns it, so that a later run can remove what a killed one left behind
    (:meth:`remove_stale`), also when batch workers on several machines share the folder.
    """

    OWNER = ".owner"

    def __init__(self, out_dir: Path, stem: str):
        self.dir = Path(tempfile.mkdtemp(prefix=f".waterseg-{stem}-", dir=out_dir))
        owner = f"{os.getpid()}@{socket.gethostname()}"
        (self.dir / self.OWNER).write_text(owner, encoding="ascii")
        self.out_dir = out_dir

    def path(self, final: Path) -> Path:
        return self.dir / final.name

    def commit(self) -> None:
        for f in sorted(self.dir.iterdir()):
            if f.name != self.OWNER:
                os.replace(f, self.out_dir / f.name)
        (self.dir / self.OWNER).unlink(missing_ok=True)
        self.dir.rmdir()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def remove_stale(cls, out_dir: Path) -> list[Path]:
        """Remove staging folders in ``out_dir`` whose owner process is gone (a ``kill -9``
        or a power cut mid-run); returns them. Folders of live processes are left alone."""
        removed = []
        for folder in sorted(Path(out_dir).glob(".waterseg-*")):
            if folder.is_dir() and not _owner_alive(folder / cls.OWNER):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed


# A staging folder whose owner runs on another machine (batch workers sharing an output
# folder) cannot be checked from here; it counts as alive until it is this old.
REMOTE_STAGING_MAX_AGE_S = 24 * 3600


def _owner_alive(owner_file: Path) -> bool:
    """Whether the process named in ``owner_file`` (``PID@host``; a bare PID from older
    versions means this host) may still be writing. A folder without the file (created a
    moment ago, or by an older version) counts as alive for an hour; one owned by another
    host, for :data:`REMOTE_STAGING_MAX_AGE_S`."""

    def younger_than(seconds: float) -> bool:
        try:
            return time.time() - owner_file.parent.stat().st_mtime < seconds
        except OSError:
            return False

    try:
        pid_text, _, host = owner_file.read_text(encoding="ascii").strip().partition("@")
        pid = int(pid_text)
    except (OSError, ValueError):
        return younger_than(3600)
    if host and host != socket.gethostname():
        return younger_than(REMOTE_STAGING_MAX_AGE_S)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def tile_rate_and_eta(done: int, total: int, elapsed_s: float) -> tuple[float | None, float | None]:
    """Tiles per second so far and the seconds left for the rest at that rate, rounded; (None,
    None) before the first tile is done."""
    if done <= 0 or elapsed_s <= 0:
        return None, None
    rate = done / elapsed_s
    return round(rate, 2), round(max(total - done, 0) / rate, 1)


# A result beyond these water fractions is more often a wrong input than a real scene.
MOSTLY_WATER = 0.95


def implausible_water_fraction(fraction: float) -> str | None:
    """A one-line warning when a result is nearly all water or has no water at all, which
    usually means wrong bands, wrong scaling or the wrong processing level; else None."""
    if fraction > MOSTLY_WATER:
        return (
            f"{fraction:.1%} of the valid pixels are water; if the scene is not open water, "
            "check the band mapping (--bands), the scaling (--l2a-offset) and the product level"
        )
    if fraction == 0.0:
        return (
            "no water found at all; if the scene has water, check the band mapping (--bands), "
            "the scaling (--l2a-offset) and the product level"
        )
    return None


@dataclass
class _Tally:
    """What the streamed rows added up to: valid and water pixels."""

    valid_pixels: int = 0
    water_pixels: int = 0


@dataclass
class _SourceRun:
    """One input's way through :func:`segment_source`, one method per step: plan, read +
    predict + blend (streamed rows), write, shoreline, report. Holds what the steps share:
    the input, the options, the staging folder and its open writers, the clock."""

    source: Any  # an opened RasterSource
    predictor: Any  # tiles (N, C, T, T) -> probabilities (N, T, T)
    spec: Any  # the checkpoint's InputSpec (normalisation, tile size)
    opts: SegmentOptions
    outputs: OutputPlan
    reporter: Any
    cancelled: Callable[[], bool] | None = None
    t0: float = field(default_factory=time.monotonic)
    staging: Staging | None = None
    writers: list[RasterRowWriter] = field(default_factory=list)
    contours: ContourBuilder | None = None

    def __post_init__(self) -> None:
        self.georef = self.source.georef
        self.device = getattr(self.predictor, "device", "cpu")
        self.tile = int(self.opts.tile_size or self.spec.tile_size)
        self.grid = TileGrid(self.georef.height, self.georef.width, self.tile, self.opts.overlap)

    # ---------------------------------------------------------------- steps

    def plan(self, index: int, count: int, model_name: str) -> None:
        """Announce the input (``start`` event and log line), remove what interrupted runs
        left behind and open the staging folder."""
        source = self.source
        self.reporter.event(
            "start",
            input=str(source.path),
            index=index,
            count=count,
            device=self.device,
            model=model_name,
            width=self.georef.width,
            height=self.georef.height,
            tiles=self.grid.count,
            bands=list(source.indexes),
            band_rule=source.mapping.rule,
        )
        self.reporter.log(
            f"{source.path.name}: bands {source.indexes} ({source.mapping.rule}), "
            f"device {self.device}"
        )
        for stale in Staging.remove_stale(self.outputs.out_dir):
            self.reporter.log(f"removed {stale.name}, left behind by an interrupted run")
        self.staging = Staging(self.outputs.out_dir, self.outputs.stem)

    def probability_rows(self) -> Iterator[RowBlock]:
        """Read, predict and blend: the blended water probability, streamed top to bottom
        (:func:`iter_probability_rows`), with ``infer`` progress."""
        extra = L2A_OFFSET if self.opts.l2a_offset else 0.0

        def on_tiles(done: int, total: int) -> None:
            self.progress("infer", done / max(total, 1), done, total, force=done == total)

        return iter_probability_rows(
            self.source,
            self.predictor,
            lambda raw: self.spec.normalise(raw, extra_offset=extra),
            tile=self.tile,
            overlap=self.opts.overlap,
            cancelled=self.cancelled,
            on_tiles=on_tiles,
        )

    def write(self, rows: Iterator[RowBlock]) -> _Tally:
        """Write the mask (and the probability) row block by row block into the staging
        folder, feed the shoreline's contours, and count valid and water pixels."""
        opts, paths = self.opts, self.outputs.paths
        mask_w = self._open_writer("mask", "uint8", MASK_NODATA)
        mask_w.set_colormap(WATER_COLOURS)
        mask_w.set_description("water (1) / land (0) / nodata (255)")
        prob_w = None
        if "probability" in paths:
            prob_w = self._open_writer("probability", "float32", float("nan"))
            prob_w.set_description("water probability")
        if opts.shoreline != "none":
            self.contours = ContourBuilder(self.georef.width, opts.threshold)
        tally = _Tally()
        terrain = getattr(self.source, "terrain", None)  # --dem: steep slopes are land
        for block in rows:
            if terrain is not None:
                terrain.apply(block)
            tally.valid_pixels += int(block.valid.sum())
            mask = mask_from_probability(block.prob, block.valid, opts.threshold)
            tally.water_pixels += int(np.count_nonzero(mask == 1))
            mask_w.write(block.row0, mask)
            if prob_w is not None:
                prob_w.write(block.row0, block.prob)
            if self.contours is not None:
                self.contours.add_rows(block.row0, block.prob)
        for w in self.writers:
            w.close()
        return tally

    def check(self, tally: _Tally) -> tuple[float, str | None]:
        """The water fraction and its warning (logged), or a UserError when no pixel was
        valid."""
        source = self.source
        if tally.valid_pixels == 0:
            cloud = getattr(source, "cloud", None)
            if cloud is not None:
                raise UserError(
                    f"{source.path} has no valid pixels left after the cloud mask "
                    f"({cloud.describe()}); pass --cloud-mask none to segment it anyway"
                )
            if getattr(source, "zero_is_nodata", False):
                raise UserError(
                    f"{source.path} has no valid pixels: every pixel is 0 in every band, which "
                    "reads as nodata in a raster without a nodata value (the black border of "
                    "many exports); pass a raster with data there, or --zero-is-data if 0 is a "
                    "real value"
                )
            nodata = self.georef.nodata
            what = "masked (an alpha or mask band)" if nodata is None else f"nodata ({nodata:g})"
            raise UserError(
                f"{source.path} has no valid pixels (every pixel is {what} or NaN); check the "
                "raster's nodata value (gdalinfo shows it, gdal_edit.py -a_nodata sets it) or "
                "pass another raster"
            )
        water_fraction = tally.water_pixels / tally.valid_pixels
        warning = implausible_water_fraction(water_fraction)
        if warning:
            self.reporter.log(f"warning: {source.path.name}: {warning}")
        return water_fraction, warning

    def shoreline(self) -> list[np.ndarray]:
        """Build the shoreline from the contours and write its files (none when
        ``--shoreline none``); returns its lines, in map coordinates."""
        if self.contours is None:
            return []
        from backend.segment.writers import write_lines

        count = self.grid.count
        self.progress("shoreline", 0.0, count, count, force=True)
        shore = build_shoreline(
            self.contours.lines(),
            self.georef,
            min_length_m=self.opts.min_length,
            smooth=self.opts.smooth,
            simplify_tolerance=self.opts.simplify,
        )
        for kind, driver in (("shoreline_gpkg", "GPKG"), ("shoreline_shp", "ESRI Shapefile")):
            if kind in self.outputs.paths:
                self._check_cancel()
                write_lines(
                    self._staged(kind),
                    driver,
                    shore.lines,
                    shore.lengths_m,
                    self.georef,
                    str(self.source.path),
                )
        return shore.lines

    def write_derived(self, lines: list[np.ndarray]) -> None:
        """Write the outputs made from the finished mask: water polygons and the quicklook."""
        count = self.grid.count
        self.progress("write", 1.0, count, count, force=True)
        if "polygons_gpkg" in self.outputs.paths:
            from backend.segment.writers import polygonize_water

            polygonize_water(
                self._staged("mask"), self._staged("polygons_gpkg"), str(self.source.path)
            )
        if "quicklook" in self.outputs.paths:
            from backend.segment.quicklook import write_quicklook

            write_quicklook(self.source, self._staged("mask"), lines, self._staged("quicklook"))

    def commit(self) -> None:
        """Move the staged files into place, unless the run was cancelled; then remove what
        runs killed while this one ran left behind (a batch worker killed mid-scene whose
        segment process was still exiting when the retry of that scene started)."""
        self._check_cancel()
        self.staging.commit()
        for stale in Staging.remove_stale(self.outputs.out_dir):
            self.reporter.log(f"removed {stale.name}, left behind by an interrupted run")

    def discard(self) -> None:
        """On any error or cancel: close the writers and remove the staging folder."""
        for w in self.writers:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - already failing; cleanup must continue
                pass
        if self.staging is not None:
            self.staging.discard()

    def report(
        self, tally: _Tally, water_fraction: float, warning: str | None, n_lines: int
    ) -> dict[str, Any]:
        """One ``output`` event per file; returns the ``done`` event fields."""
        src = str(self.source.path)
        for kind, path in self.outputs.paths.items():
            self.reporter.event("output", input=src, kind=kind, path=str(path))
        return {
            "input": src,
            "outputs": {k: str(p) for k, p in self.outputs.paths.items()},
            "elapsed_s": round(time.monotonic() - self.t0, 3),
            "shoreline_features": n_lines,
            "water_fraction": round(water_fraction, 6),
            "valid_pixels": tally.valid_pixels,
            "warnings": [warning] if warning else [],
        }

    # ---------------------------------------------------------------- helpers

    def progress(self, stage: str, fraction: float, done: int, total: int, force: bool) -> None:
        elapsed = time.monotonic() - self.t0
        rate, eta = tile_rate_and_eta(done, total, elapsed)
        self.reporter.progress(
            force=force,
            input=str(self.source.path),
            stage=stage,
            fraction=round(fraction, 4),
            tiles_done=done,
            tiles_total=total,
            elapsed_s=round(elapsed, 3),
            tiles_per_s=rate,
            eta_s=eta,
            device=self.device,
        )

    def _staged(self, kind: str) -> Path:
        return self.staging.path(self.outputs.paths[kind])

    def _open_writer(self, kind: str, dtype: str, nodata: float) -> RasterRowWriter:
        writer = RasterRowWriter(self._staged(kind), self.georef, dtype, nodata)
        self.writers.append(writer)
        return writer

    def _check_cancel(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled()


def segment_source(
    source,
    predictor,
    spec,
    opts: SegmentOptions,
    plan: OutputPlan,
    reporter,
    *,
    index: int = 0,
    count: int = 1,
    model_name: str = "",
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Segment one opened ``RasterSource`` into the files of ``plan``, atomically.

    Returns the ``done`` event fields. On any error or cancel no file of this input remains.
    """
    run = _SourceRun(source, predictor, spec, opts, plan, reporter, cancelled)
    run.plan(index, count, model_name)
    try:
        tally = run.write(run.probability_rows())  # read, predict, blend -> write
        water_fraction, warning = run.check(tally)
        lines = run.shoreline()
        run.write_derived(lines)
        run.commit()
    except BaseException:
        run.discard()
        raise
    return run.report(tally, water_fraction, warning, len(lines))
