"""Train and validate the multispectral v2 model: the pretrained Lite0 U-Net with NIR and SWIR.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/train_ms.py --train-sites bracciano \\
        --eval-sites tevere
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/train_ms.py --train-sites tevere \\
        --eval-sites bracciano
    # recipe v2b: the same with --p-strokes 0.5 --name v2b-train-<site>
    .venv/bin/python scripts/train_ms.py --tables     # the results file as markdown tables

**Model.** ``lite0_unet`` (backend/models/lite_unet.py) with five input bands, B4 B3 B2 B8
B11 (:data:`BANDS`): the true-colour channels the EfficientNet-Lite0 stem knows, in its red,
green, blue order, plus NIR and SWIR as extra stem channels. ``--init rgb-v2`` (default)
starts from the bundled RGB v2 model (resources/models/waterseg-rgb.pt: the ImageNet Lite0
encoder fine-tuned on all 48 ESW scenes) with the extra stem kernels at zero
(:func:`backend.models.efficientnet_lite.widen_stem`), so the network starts as the RGB model
exactly; ``--init imagenet`` starts from the ImageNet encoder alone.

**Scaling** (stored in the checkpoint, so ``segment --model`` reads it): reflectance =
value / 10000, as for every multispectral model of the engine (L1C and L2A alike; newer L2A
products need ``--l2a-offset``). The RGB channels are then normalised as the RGB model's
8-bit input would be if 0.3 reflectance were rendered white, ``(255 r / 0.3 - 127) / 128``;
NIR and SWIR by a mean and spread of the SEN2DWATER scenes (:data:`NORMALISATION`).

**Missing bands** are zeros after normalisation, i.e. the band at its normalisation mean
everywhere in the tile, without a flag channel (the engine feeds raster bands only). Band
dropout teaches the network that a flat NIR or SWIR says nothing: every ESW crop has both
missing, and each SEN2DWATER crop drops NIR and SWIR with probability ``p_drop_nir`` and
``p_drop_swir``. The engine itself always needs B8 and B11 in the raster for this model.

**Training data** (read in place from ../shared/data, never copied):

- ``esw-rgb``: the 48 hand-labelled ESW renders through train_rgb's random rendering
  (:class:`train_rgb.CropSampler`), turned into reflectance by a random white point
  (0.2-0.45), NIR and SWIR missing (``esw_fraction`` of the crops);
- ``sen2dwater``: every date of the ``--train-sites``, labelled by the engine itself: the
  real ``segment --method mixed-adaptive --probability`` (per-scene edge-Otsu threshold of
  the NDWI/MNDWI mean after dark-object haze removal; clouds masked as ``--cloud-mask auto``
  masks them: s2cloudless here, or QA60) gives p = sigmoid(10 (index - t)); a pixel is
  water where the index is at least ``margin`` above its threshold, land where it is that
  far below, and ignored (255) in the band between, under the cloud mask and outside the data
  (:func:`pseudo_labels`). Crops get flips and rotations, a brightness gain, and with
  probability ``p_dehaze`` a random part of the date's dark object removed (L1C towards
  surface reflectance); with probability ``p_strokes`` (0 in the first recipe), river-like
  strokes of the date's own water pixels painted across land (:func:`paint_strokes`).
- The five SNOWED samples are never trained on: they validate across sources.

**Validation** (never on a training scene): on each ``--eval-sites`` site, the temporal
benchmark of scripts/temporal_bench.py (its stable reference, per-date false and missed
water) for this model and for ``auto`` through the real ``segment`` command, scored on the
pixels both left valid; on SNOWED, IoU water / land / mean of this model and of
``mixed-adaptive`` on every pixel (and of this model without NIR and SWIR). Results are
merged into ``--results`` (docs/results/ms-v2.json) under the run's name; the model stays in
``--runs`` (not bundled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import peers  # noqa: E402
import temporal_bench as tb  # noqa: E402
import train_rgb  # noqa: E402

from backend.core.checkpoint import (  # noqa: E402
    InputSpec,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from backend.core.water_indices import (  # noqa: E402
    DARK_OBJECT_FLOOR,
    dark_object_haze,
    edge_otsu_threshold,
    method_bands,
    method_index,
)
from backend.datasets.augment import flip_rot90, random_crop  # noqa: E402
from backend.datasets.snowed import band_indices  # noqa: E402
from backend.losses import dice_loss  # noqa: E402
from backend.models import create_model  # noqa: E402
from backend.segment.indices import DEFAULT_SHARPNESS  # noqa: E402
from backend.segment.pipeline import predict_array  # noqa: E402
from backend.segment.writers import MASK_NODATA  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
ARCH = "lite0_unet"
BANDS = ["B4", "B3", "B2", "B8", "B11"]
RGB_WHITE = 0.3  # reflectance rendered as 255 by the RGB model's (x - 127) / 128
NORMALISATION = {  # band -> (mean, std) of reflectance; SEN2DWATER medians and spreads
    **{b: (127 / 255 * RGB_WHITE, 128 / 255 * RGB_WHITE) for b in BANDS[:3]},
    "B8": (0.20, 0.12),
    "B11": (0.17, 0.10),
}
NIR, SWIR = BANDS.index("B8"), BANDS.index("B11")
TILE = 256  # the engine's default tile (inference)
IGNORE = 255  # label of pixels the loss leaves out (backend.losses' ignore_index)
AUTO_METHOD = "mixed-adaptive"  # what --method auto runs on a raster with B3 B8 B11


@dataclass
class Config:
    """Everything that decides a run; stored in the checkpoint and the results file."""

    train_sites: str = "bracciano"  # SEN2DWATER sites whose pseudo-labels are trained on
    eval_sites: str = "tevere"  # held-out sites for the temporal benchmark ("": none)
    name: str = ""  # run name in the results file (default: train-<sites>)
    init: str = "rgb-v2"  # rgb-v2 | imagenet | random
    width: float = 0.5
    steps: int = 500
    batch_size: int = 8
    crop: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    dice_weight: float = 1.0
    esw_fraction: float = 0.4  # share of crops from the ESW RGB scenes (NIR, SWIR missing)
    p_drop_nir: float = 0.15
    p_drop_swir: float = 0.15
    p_dehaze: float = 0.5
    p_strokes: float = 0.0  # share of SEN2DWATER crops with river-like strokes of water painted in
    brightness: float = 1.25  # gain drawn log-uniformly from [1/b, b], the same for all bands
    margin: float = 0.15  # pseudo-labels: |index - threshold| below this is ignored
    seed: int = 0
    threads: int = 1
    esw: str = str(SHARED / "esw-rgb")
    sen2dwater: str = str(SHARED / "sen2dwater")
    snowed: str = str(SHARED / "snowed-sample" / "SNOWED")
    runs: str = str(REPO / "runs" / "ms-v2")
    results: str = str(REPO / "docs" / "results" / "ms-v2.json")

    @property
    def run_name(self) -> str:
        return self.name or "train-" + "+".join(sites(self.train_sites))

    def input_spec(self) -> InputSpec:
        return InputSpec(
            bands=list(BANDS),
            scale=1e-4,
            offset=0.0,
            mean=[NORMALISATION[b][0] for b in BANDS],
            std=[NORMALISATION[b][1] for b in BANDS],
            tile_size=TILE,
        )

    def arch_kwargs(self) -> dict:
        return {"width": self.width, "in_channels": len(BANDS), "num_classes": 2}


def sites(text: str) -> list[str]:
    return [s for s in text.split(",") if s]


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# ---------------------------------------------------------------- pseudo-labels


def pseudo_labels(
    prob: np.ndarray, mask: np.ndarray, margin: float, sharpness: float = DEFAULT_SHARPNESS
) -> np.ndarray:
    """The engine's index outputs of one raster -> uint8 (H, W) labels 1 water / 0 land /
    :data:`IGNORE`.

    ``prob`` float32 (H, W) is ``segment --probability`` of an index method, sigmoid(k (index
    - t)) with k = ``sharpness`` (NaN at nodata); ``mask`` uint8 (H, W) its water mask (255:
    nodata or cloud). Water where index - t >= ``margin``, land where it is <= -``margin``;
    the band around the threshold, the cloud mask and nodata are ignored.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = (np.log(prob) - np.log1p(-prob)) / np.float32(sharpness)
    labels = np.full(prob.shape, IGNORE, np.uint8)
    known = np.isfinite(prob) & (mask != MASK_NODATA)
    labels[known & (distance >= margin)] = 1
    labels[known & (distance <= -margin)] = 0
    return labels


def run_segment(files: list[Path], out_dir: Path, args: list[str]) -> float:
    """``python -m backend segment FILES --out-dir OUT ARGS`` in one process (one thread);
    if it stops on bad input (exit 2: a date the cloud mask covers whole), each date again
    on its own, as scripts/temporal_bench.py does. Returns the seconds it took."""
    opts = ["--out-dir", str(out_dir), "--shoreline", "none", "--progress", "none"]
    opts += ["--overwrite", *args]
    env = {**os.environ, "WATERSEG_THREADS": "1"}
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "backend", "segment", *map(str, files), *opts]
    done = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    if done.returncode == 2:
        for f in files:
            one = [sys.executable, "-m", "backend", "segment", str(f), *opts]
            subprocess.run(
                one, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    elif done.returncode != 0:
        raise RuntimeError(f"segment failed (exit {done.returncode}): {' '.join(cmd[:6])} ...")
    return time.monotonic() - t0


def engine_pseudo_labels(files: list[Path], out_dir: Path, margin: float) -> dict[str, np.ndarray]:
    """Date stem -> :func:`pseudo_labels` of the real ``segment --method mixed-adaptive``
    (cloud mask as the engine decides) on each of ``files``; a date it could not segment is
    left out."""
    import rasterio

    run_segment(files, out_dir, ["--method", AUTO_METHOD, "--probability"])
    out = {}
    for f in files:
        prob_path, mask_path = (
            out_dir / f"{f.stem}_probability.tif",
            out_dir / f"{f.stem}_water.tif",
        )
        if not (prob_path.is_file() and mask_path.is_file()):
            continue
        with rasterio.open(prob_path) as p, rasterio.open(mask_path) as m:
            out[f.stem] = pseudo_labels(p.read(1), m.read(1), margin)
    return out


# ---------------------------------------------------------------- data


@dataclass
class LabelledDate:
    """One SEN2DWATER date: ``raw`` uint16 (5, H, W) of :data:`BANDS` (reflectance x 1e4),
    ``labels`` uint8 (H, W) pseudo-labels, ``dark`` float32 (5,) each band's dark object
    (0.1 percentile of the data pixels) minus the floor a surface reflectance keeps,
    ``water`` the spectra of (up to :data:`WATER_SPECTRA`) pixels labelled water."""

    name: str
    raw: np.ndarray
    labels: np.ndarray
    dark: np.ndarray
    water: np.ndarray | None = None  # uint16 (N, 5): spectra of confidently water pixels


WATER_SPECTRA = 20_000  # the most water pixels a date keeps for painting strokes


def dark_objects(refl: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 (C,) of :data:`BANDS` reflectance (C, H, W): the 0.1 percentile of each band's
    ``valid`` pixels above the dark-object floor of backend.core.water_indices (0.005 for
    the visible bands it does not list), at least 0."""
    if not valid.any():
        return np.zeros(len(BANDS), np.float32)
    dark = [
        np.percentile(refl[i][valid], 0.1) - DARK_OBJECT_FLOOR.get(b, 0.005)
        for i, b in enumerate(BANDS)
    ]
    return np.maximum(np.array(dark, np.float32), 0.0)


def load_dates(root: Path, site_names: list[str], runs: Path, margin: float) -> list[LabelledDate]:
    """Every date of ``site_names`` with its engine pseudo-labels (cached in ``runs``)."""
    import rasterio

    dates = []
    for site in site_names:
        files = sorted((root / site).glob("*.tif"))
        labels = engine_pseudo_labels(files, runs / "pseudo" / site, margin)
        for f in files:
            if f.stem not in labels:
                continue
            with rasterio.open(f) as ds:
                raw = ds.read(tb.band_index(f, BANDS))
            refl = raw.astype(np.float32) * np.float32(1e-4)
            water = raw[:, labels[f.stem] == 1].T
            if len(water) > WATER_SPECTRA:
                water = water[np.random.default_rng(0).choice(len(water), WATER_SPECTRA, False)]
            dark = dark_objects(refl, raw.any(axis=0))
            dates.append(LabelledDate(f"{site}/{f.stem}", raw, labels[f.stem], dark, water))
    return dates


def river_strokes(
    shape: tuple[int, int], rng: np.random.Generator, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random meandering strokes across an (H, W) crop, 2-10 px wide -> bool (H, W)
    core and bool (H, W) one-pixel ring around it."""
    from scipy import ndimage

    h, w = shape
    line = np.zeros(shape, bool)
    t = np.linspace(-1.0, 1.0, 8 * (h + w))
    for _ in range(count):
        along = t * 0.75 * (h + w)
        wave = rng.uniform(0.05, 0.3) * (h + w) / 2
        across = wave * np.sin(2 * np.pi * t * rng.uniform(0.3, 2.0) + rng.uniform(0, 2 * np.pi))
        across += rng.uniform(-0.3, 0.3) * min(h, w)
        a = rng.uniform(0, np.pi)
        ys = h / 2 + along * np.sin(a) + across * np.cos(a)
        xs = w / 2 + along * np.cos(a) - across * np.sin(a)
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        line[ys[inside].astype(int), xs[inside].astype(int)] = True
    if not line.any():
        return line, line.copy()
    distance = ndimage.distance_transform_edt(~line)
    half = np.float32(rng.uniform(1.0, 5.0))
    core = distance <= half
    return core, (distance <= half + 1) & ~core


def paint_strokes(
    raw: np.ndarray, labels: np.ndarray, water: np.ndarray, rng: np.random.Generator
) -> None:
    """Copy-paste (Ghiasi et al., CVPR 2021) of water as rivers: 1-3 :func:`river_strokes`
    in ``raw`` float (C, H, W) get spectra drawn pixel by pixel from ``water`` (N, C) of the
    same date, label 1; their ring is half water and ignored. In place. So that dark NIR and
    SWIR mean water whatever its shape, not only in the shape of the training site's lake."""
    core, ring = river_strokes(labels.shape, rng, int(rng.integers(1, 4)))
    raw[:, core] = water[rng.integers(len(water), size=int(core.sum()))].T
    mixed = water[rng.integers(len(water), size=int(ring.sum()))].T
    raw[:, ring] = 0.5 * (raw[:, ring] + mixed)
    labels[core] = 1
    labels[ring] = IGNORE


def label_stats(dates: list[LabelledDate]) -> dict:
    """Shares of water, land and ignored pixels over the training dates."""
    n = sum(d.labels.size for d in dates)
    count = {
        k: sum(int((d.labels == v).sum()) for d in dates)
        for k, v in (("water", 1), ("land", 0), ("ignored", IGNORE))
    }
    return {"dates": len(dates), "pixels": n, **{k: v / n for k, v in count.items()}}


class MixedSampler:
    """Training batches: ESW crops (RGB only) and SEN2DWATER crops (all five bands), each
    normalised as the checkpoint says, with band dropout (see the module docstring)."""

    def __init__(self, dates: list[LabelledDate], esw: list, cfg: Config, rng: np.random.Generator):
        self.dates, self.cfg, self.rng = dates, cfg, rng
        self.spec = cfg.input_spec()
        self.esw = None
        if esw and cfg.esw_fraction > 0:
            rgb_cfg = train_rgb.Config(
                **{**asdict(train_rgb.Config()), **train_rgb.VERSIONS["v2"], "crop": cfg.crop}
            )
            self.esw = train_rgb.CropSampler(esw, rgb_cfg, rng)
        self.mean = np.array([NORMALISATION[b][0] for b in BANDS], np.float32).reshape(-1, 1, 1)
        self.std = np.array([NORMALISATION[b][1] for b in BANDS], np.float32).reshape(-1, 1, 1)

    def esw_crop(self) -> tuple[torch.Tensor, torch.Tensor]:
        rgb, mask = self.esw.crop()  # float 0..1 (3, S, S), a random rendering
        white = float(self.rng.uniform(0.2, 0.45))
        x = torch.zeros((len(BANDS), *rgb.shape[1:]))
        x[:3] = (rgb * white - torch.from_numpy(self.mean[:3])) / torch.from_numpy(self.std[:3])
        return x, mask  # NIR and SWIR missing: 0 after normalisation

    def date_crop(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, rng = self.cfg, self.rng
        d = self.dates[int(rng.integers(len(self.dates)))]
        image, mask = random_crop(
            torch.from_numpy(d.raw.astype(np.float32)),
            torch.from_numpy(d.labels.astype(np.int64)),
            cfg.crop,
            rng,
        )
        if d.water is not None and len(d.water) and rng.random() < cfg.p_strokes:
            paint_strokes(image.numpy(), mask.numpy(), d.water, rng)
        refl = image.numpy() * np.float32(1e-4)
        if rng.random() < cfg.p_dehaze:  # part of the path radiance removed: towards L2A
            refl = refl - d.dark.reshape(-1, 1, 1) * np.float32(rng.uniform(0.0, 1.0))
        gain = np.exp(rng.uniform(-np.log(cfg.brightness), np.log(cfg.brightness)))
        x = (refl * np.float32(gain) - self.mean) / self.std
        if rng.random() < cfg.p_drop_nir:
            x[NIR] = 0.0
        if rng.random() < cfg.p_drop_swir:
            x[SWIR] = 0.0
        x = torch.from_numpy(np.ascontiguousarray(x))
        if x.shape[-2:] != (cfg.crop, cfg.crop):  # a date smaller than the crop: pad, ignored
            ph, pw = cfg.crop - x.shape[-2], cfg.crop - x.shape[-1]
            x = F.pad(x, (0, pw, 0, ph))
            mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE)
        return flip_rot90(x, mask, int(rng.integers(0, 4)), bool(rng.integers(0, 2)))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x float32 (B, 5, S, S), labels int64 (B, S, S) with IGNORE)."""
        crops = [
            self.esw_crop()
            if self.esw is not None
            and (not self.dates or self.rng.random() < self.cfg.esw_fraction)
            else self.date_crop()
            for _ in range(self.cfg.batch_size)
        ]
        x, y = zip(*crops, strict=True)
        return torch.stack(x), torch.stack(y)


# ---------------------------------------------------------------- model and training


def init_from_rgb(model: torch.nn.Module, rgb_state: dict[str, torch.Tensor]) -> None:
    """Load a 3-band ``lite0_unet`` state dict (the RGB v2 model's) into the 5-band ``model``
    strictly, the stem widened with zero kernels for NIR and SWIR."""
    from backend.models.efficientnet_lite import widen_stem

    state = {k: v.float() if v.is_floating_point() else v for k, v in rgb_state.items()}
    key = "encoder.stem.conv.weight"
    state[key] = widen_stem(state[key], model.encoder.stem.conv.in_channels)
    model.load_state_dict(state, strict=True)


def build_model(cfg: Config) -> torch.nn.Module:
    """The 5-band network, initialised as ``cfg.init`` says."""
    model = create_model(ARCH, **cfg.arch_kwargs())
    if cfg.init == "rgb-v2":
        ckpt = read_checkpoint(train_rgb.BUNDLE)
        arch = ckpt["arch"]
        if arch["name"] != ARCH or float(arch["kwargs"].get("width", 0)) != cfg.width:
            raise ValueError(
                f"{train_rgb.BUNDLE} is {arch}, not {ARCH} width {cfg.width}: pass --init imagenet"
            )
        init_from_rgb(model, ckpt["state_dict"])
    elif cfg.init == "imagenet":
        from backend.models.efficientnet_lite import load_imagenet_weights

        load_imagenet_weights(model.encoder)
    elif cfg.init != "random":
        raise ValueError(f"unknown --init {cfg.init!r}; valid: rgb-v2, imagenet, random")
    return model


def train_model(dates: list[LabelledDate], esw: list, cfg: Config, tag: str) -> torch.nn.Module:
    """Train the network on mixed crops; returns it in eval mode (NCHW)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    sampler = MixedSampler(dates, esw, cfg, rng)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    t0, running, every = time.time(), 0.0, max(1, min(25, cfg.steps))
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = train_rgb.learning_rate(step, cfg.steps, cfg)
        x, y = sampler.batch()
        if not (y != IGNORE).any():
            continue
        logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, y, ignore_index=IGNORE)
        loss = loss + cfg.dice_weight * dice_loss(logits, y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()
        if (step + 1) % every == 0:
            log(
                f"{tag} step {step + 1}/{cfg.steps} loss {running / every:.4f} ({time.time() - t0:.0f} s)"
            )
            running = 0.0
    return model.to(memory_format=torch.contiguous_format).eval()


def make_checkpoint(model: torch.nn.Module, cfg: Config, split: dict, metrics: dict) -> dict:
    return build_checkpoint(
        model,
        ARCH,
        cfg.arch_kwargs(),
        cfg.input_spec(),
        loss="ce+dice (ignore 255)",
        config=asdict(cfg),
        split=split,
        metrics=metrics,
    )


# ---------------------------------------------------------------- validation


def _score_pair(
    masks: dict[str, np.ndarray], data: np.ndarray, land: np.ndarray, water: np.ndarray
) -> dict:
    """temporal_bench.score of each method on the pixels every method left valid."""
    both = np.all([m != MASK_NODATA for m in masks.values()], axis=0) & data
    out = {}
    for method, m in masks.items():
        s = tb.score(np.where(both, m, MASK_NODATA), data, land, water)
        s["own_masked"] = float((m[data] == MASK_NODATA).mean())
        out[method] = s
    return out


def temporal_rows(root: Path, site: str, model_path: Path, work: Path) -> list[dict]:
    """Per date of ``site``: false / missed water of ``auto`` and of the model (the real
    ``segment``) against temporal_bench's stable reference, on the same pixels."""
    files = sorted((root / site).glob("*.tif"))
    grid = tb.site_grid(files)
    land, water = tb.reference(files, grid)
    runs = {
        "auto": ["--method", "auto"],
        "model": ["--method", "model", "--model", str(model_path)],
    }
    for method, args in runs.items():
        seconds = run_segment(files, work / method / site, args)
        log(f"{site} {method}: {len(files)} dates in {seconds:.1f} s")
    rows = []
    for f in files:
        data = tb.read_on(f, grid).any(axis=0)
        masks = {}
        for method in runs:
            path = work / method / site / f"{f.stem}_water.tif"
            m = (
                tb.read_on(path, grid)[0]
                if path.exists()
                else np.full(data.shape, MASK_NODATA, np.uint8)
            )
            m[~data] = MASK_NODATA
            masks[method] = m
        rows.append(
            {
                "site": site,
                "date": f.stem,
                "winter": f.stem[5:7] in tb.WINTER,
                "cloudy": f.stem in tb.CLOUDY.get(site, ()),
                **_score_pair(masks, data, land, water),
            }
        )
    return rows


def temporal_summary(rows: list[dict]) -> dict:
    """Per method: means and worst dates of false and missed water over the dates both
    methods scored, and the same on the winter and the cloudy dates."""
    scored = [r for r in rows if all(r[m]["false_water"] is not None for m in ("auto", "model"))]
    out = {"dates": len(scored), "dates_not_scored": [r["date"] for r in rows if r not in scored]}
    for method in ("auto", "model"):
        fw = np.array([r[method]["false_water"] for r in scored])
        mw = np.array([r[method]["missed_water"] or 0.0 for r in scored])
        winter = [r[method]["false_water"] for r in scored if r["winter"]]
        out[method] = {
            "false_water_mean": float(fw.mean()),
            "false_water_worst": float(fw.max()),
            "false_water_worst_date": scored[int(fw.argmax())]["date"],
            "dates_over_2pct": int((fw > 0.02).sum()),
            "missed_water_mean": float(mw.mean()),
            "missed_water_worst": float(mw.max()),
            "missed_water_worst_date": scored[int(mw.argmax())]["date"],
            "winter_false_water_mean": float(np.mean(winter)) if winter else None,
            "cloudy_false_water": {
                r["date"]: r[method]["false_water"] for r in scored if r["cloudy"]
            },
        }
    return out


def auto_snowed_mask(bands: dict[str, np.ndarray]) -> np.ndarray:
    """``mixed-adaptive`` on one SNOWED sample as the engine runs it (haze check, edge-Otsu
    threshold on the whole 256 x 256 sample) -> bool (H, W) water."""
    names = method_bands(AUTO_METHOD)
    valid = np.ones(bands["B3"].shape, bool)
    haze = dark_object_haze({b: bands[b] for b in names}, valid, bands["B2"])
    index = method_index(AUTO_METHOD, {b: haze.subtract(b, bands[b]) for b in names})
    return index > edge_otsu_threshold(index).threshold


def snowed_scores(model: torch.nn.Module, spec: InputSpec, root: Path) -> dict:
    """IoU water / land / mean on every pixel of each SNOWED sample: ``auto``
    (mixed-adaptive), the model, and the model with NIR and SWIR missing."""
    per: dict[str, dict] = {"auto": {}, "model": {}, "model_rgb_only": {}}
    for sid, (bands, image, label) in peers.load_samples(root).items():
        raw = np.ascontiguousarray(image[:, :, band_indices(spec.bands)].transpose(2, 0, 1))
        x = spec.normalise(raw)
        per["auto"][sid] = peers.score(auto_snowed_mask(bands), label)
        prob = predict_array(x, model, tile=spec.tile_size, batch_size=2)
        per["model"][sid] = peers.score(prob >= 0.5, label)
        x[[NIR, SWIR]] = 0.0
        prob = predict_array(x, model, tile=spec.tile_size, batch_size=2)
        per["model_rgb_only"][sid] = peers.score(prob >= 0.5, label)
    return {m: {"per_sample": p, "mean": peers.summarise(p)} for m, p in per.items()}


def verdict(run: dict) -> dict:
    """Whether the model beats ``auto`` on every table of a run: lower or equal false and
    missed water on each held-out site, and a higher IoU mean on SNOWED."""
    checks = {}
    for site, t in run.get("sen2dwater", {}).items():
        s = t["summary"]
        checks[f"{site} false water"] = (
            s["model"]["false_water_mean"] <= s["auto"]["false_water_mean"]
        )
        checks[f"{site} missed water"] = (
            s["model"]["missed_water_mean"] <= s["auto"]["missed_water_mean"]
        )
    sn = run["snowed"]
    checks["snowed iou mean"] = sn["model"]["mean"]["iou_mean"] > sn["auto"]["mean"]["iou_mean"]
    return {"wins_all": all(checks.values()), "checks": checks}


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def markdown_tables(results: dict) -> str:
    """The results file's runs as two markdown tables: the held-out SEN2DWATER site (model vs
    ``auto`` on the same pixels) and SNOWED (IoU mean per sample, %)."""
    lines = [
        "| run | held-out site | method | false water, mean | worst date | dates > 2 % "
        "| missed water, mean (worst) | false water, winter dates | false water, cloudy dates |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for name, run in results["runs"].items():
        for site, t in run.get("sen2dwater", {}).items():
            s = t["summary"]
            for m in ("model", "auto"):
                r = s[m]
                cloudy = ", ".join(f"{d} {_pct(v, 1)}" for d, v in r["cloudy_false_water"].items())
                lines.append(
                    f"| {name} | {site} ({s['dates']} dates) | {m} | {_pct(r['false_water_mean'])} %"
                    f" | {_pct(r['false_water_worst'], 1)} % ({r['false_water_worst_date']})"
                    f" | {r['dates_over_2pct']} | {_pct(r['missed_water_mean'])} %"
                    f" ({_pct(r['missed_water_worst'], 1)} %)"
                    f" | {_pct(r['winter_false_water_mean'])} % | {cloudy or '-'} |"
                )
    samples = sorted(next(iter(results["runs"].values()))["snowed"]["auto"]["per_sample"])
    lines += [
        "",
        "| run | method | "
        + " | ".join(s.removeprefix("sample_") for s in samples)
        + " | mean | IoU water | IoU land |",
        "|---|---|" + "---:|" * (len(samples) + 3),
    ]
    labels = {"model": "model", "model_rgb_only": "model, NIR/SWIR missing", "auto": "auto"}
    for name, run in results["runs"].items():
        for m, label in labels.items():
            r = run["snowed"][m]
            cells = [_pct(r["per_sample"][s]["iou_mean"]) for s in samples]
            cells += [_pct(r["mean"][k]) for k in ("iou_mean", "iou_water", "iou_land")]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str]) -> tuple[Config, Path | None]:
    """Options -> (config, --eval-only checkpoint or None); defaults from :class:`Config`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(Config):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.add_argument("--eval-only", type=Path, help="validate this checkpoint, train nothing")
    p.add_argument("--tables", action="store_true", help="print --results as markdown, exit")
    args = vars(p.parse_args(argv))
    eval_only = args.pop("eval_only")
    if args.pop("tables"):
        print(markdown_tables(json.loads(Path(args["results"]).read_text())))
        sys.exit(0)
    return Config(**args), eval_only


def engine_version() -> dict:
    """The commit the engine ran from and the backend files that differed from it (others
    may be changing the checkout: pseudo-labels and scores come from the engine as it was)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted": git("status", "--short", "backend").splitlines(),
    }


def write_results(path: Path, name: str, run: dict) -> None:
    """Merge ``run`` into the results file under ``name`` (other runs are kept)."""
    results = json.loads(path.read_text()) if path.is_file() else {}
    results.setdefault("about", __doc__.split("\n\n")[1].strip())
    results["bands"] = BANDS
    results["normalisation"] = NORMALISATION
    results.setdefault("runs", {})[name] = run
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    cfg, eval_only = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    runs = Path(cfg.runs) / cfg.run_name
    runs.mkdir(parents=True, exist_ok=True)
    run: dict = {
        "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/train_ms.py " + " ".join(argv),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "engine": engine_version(),
    }
    if eval_only is None:
        t0 = time.time()
        dates = load_dates(Path(cfg.sen2dwater), sites(cfg.train_sites), Path(cfg.runs), cfg.margin)
        run["pseudo_labels"] = label_stats(dates)
        log(f"pseudo-labels: {run['pseudo_labels']}")
        esw = list(train_rgb.load_scenes(cfg.esw).values()) if cfg.esw_fraction > 0 else []
        log(f"{len(dates)} SEN2DWATER dates, {len(esw)} ESW scenes ({time.time() - t0:.0f} s)")
        model = train_model(dates, esw, cfg, cfg.run_name)
        run["train_seconds"] = time.time() - t0
        split = {
            "sen2dwater_sites": sites(cfg.train_sites),
            "esw_scenes": "all 48",
            "held_out_sites": sites(cfg.eval_sites),
        }
        model_path = runs / "model.pt"
        save_checkpoint(make_checkpoint(model, cfg, split, {}), model_path)
        log(f"wrote {model_path}")
    else:
        from backend.models.loading import load_model

        model_path = eval_only
        model, _, _ = load_model(model_path)
        run["checkpoint"] = str(model_path)
    run["model"] = str(
        model_path.relative_to(REPO) if model_path.is_relative_to(REPO) else model_path
    )
    spec = cfg.input_spec()
    run["snowed"] = snowed_scores(model, spec, Path(cfg.snowed))
    log(
        "SNOWED IoU mean: "
        + ", ".join(f"{m} {100 * s['mean']['iou_mean']:.2f}" for m, s in run["snowed"].items())
    )
    run["sen2dwater"] = {}
    for site in sites(cfg.eval_sites):
        rows = temporal_rows(Path(cfg.sen2dwater), site, model_path, runs / "eval")
        run["sen2dwater"][site] = {"rows": rows, "summary": temporal_summary(rows)}
        s = run["sen2dwater"][site]["summary"]
        for m in ("auto", "model"):
            log(
                f"{site} {m}: false water {100 * s[m]['false_water_mean']:.2f} % (worst {100 * s[m]['false_water_worst']:.1f} %"
                f" {s[m]['false_water_worst_date']}), missed {100 * s[m]['missed_water_mean']:.2f} %, {s['dates']} dates"
            )
    run["verdict"] = verdict(run)
    write_results(Path(cfg.results), cfg.run_name, run)
    log(f"verdict {run['verdict']}; wrote {cfg.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
