"""Build the two multispectral bundled models: the RGB water network fused with fixed indices.

    .venv/bin/python scripts/build_fusion.py [--rgb resources/models/waterseg-rgb.pt]

Why: a network trained on five multispectral tiles learns their quirks, and a rule fitted to
them does not transfer to other scenes. The RGB network (``waterseg-rgb``) learned water from
48 hand-labelled scenes of 16 acquisitions worldwide; NDWI and MNDWI are physics. The fused
model (``backend/models/fusion.py``) adds them with a handful of weights, and those weights
are the only thing this script fits on multispectral data.

Steps, top to bottom:

1. The render gain (reflectance -> 0..1 display value of the true-colour input) is set,
   without labels, so that the 95th percentile of the SNOWED images' brightness matches that
   of the ESW renders the RGB network learned from.
2. Evidence on the five real SNOWED samples (12-band L2A): the RGB network's water logit and
   the indices, per pixel.
3. Leave-one-sample-out: fit the weights on four samples (logistic regression), score the
   fifth (IoU water / land / mean), for the 6-band variant (NDWI + MNDWI: bands B2 B3 B4 B8
   B11 B12) and the 4-band one (NDWI: B2 B3 B4 B8); beside NDWI > 0, MNDWI > 0 and the RGB
   network alone, on the same pixels.
4. With ``--bundle``: fit on all five and write ``resources/models/waterseg-default.pt`` and
   ``waterseg-rgbn.pt`` (+ ``.sha256``, fp16), the results to
   ``resources/models/results-fusion.json`` and the model cards from
   ``resources/models/MODEL_CARD-fusion.md.in``. Without it, only the validation is written,
   to ``docs/results/fusion-snowed.json``.

Result so far (docs/results/fusion-snowed.json): the fusion does not beat MNDWI > 0 on these
samples, so the bundled models were not replaced and ``segment --method auto`` uses the index
(README, "How good is it?").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import string
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.core.checkpoint import (  # noqa: E402
    InputSpec,
    build_checkpoint,
    read_checkpoint,
    save_checkpoint,
    sha256_of,
)
from backend.datasets.esw import list_scenes, read_scene_arrays  # noqa: E402
from backend.datasets.snowed import ALL_BANDS, list_samples, load_sample_arrays  # noqa: E402
from backend.learning.metrics import ConfusionMatrix  # noqa: E402
from backend.models import build_model  # noqa: E402
from backend.models.loading import unpack_checkpoint  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MODELS = REPO / "resources" / "models"
RESULTS = MODELS / "results-fusion.json"
VALIDATION = REPO / "docs" / "results" / "fusion-snowed.json"
TEMPLATE = MODELS / "MODEL_CARD-fusion.md.in"
VARIANTS = {
    # bundled file: (bands, indices, card)
    "waterseg-default.pt": (
        ["B2", "B3", "B4", "B8", "B11", "B12"],
        ["ndwi", "mndwi"],
        "MODEL_CARD.md",
    ),
    "waterseg-rgbn.pt": (["B2", "B3", "B4", "B8"], ["ndwi"], "MODEL_CARD-rgbn.md"),
}
L2_WEIGHT = 1e-3
PIXELS_PER_SAMPLE = 20000  # fitting subsample (seeded); scoring uses every pixel


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# ---------------------------------------------------------------- 1. render gain
def render_gain(esw: Path, samples: list[Path], percentile: float = 95.0) -> float:
    """Gain so that a high percentile of the SNOWED true-colour reflectances lands where the
    same percentile of the ESW renders does. A high percentile, not the median: it follows
    the bright land that a display stretch is set by, and not how much dark water a scene
    holds."""
    esw_values = []
    for scene in list_scenes(esw):
        image, _, _ = read_scene_arrays(esw, scene)
        esw_values.append(image[:, ::8, ::8].ravel().astype(np.float32) / 255.0)
    snowed_values = []
    for sample in samples:
        image, _ = load_sample_arrays(sample)
        rgb = image[..., [ALL_BANDS.index(b) for b in ("B4", "B3", "B2")]] * 1e-4
        snowed_values.append(rgb[::4, ::4].ravel())
    esw_level = np.percentile(np.concatenate(esw_values), percentile)
    return float(esw_level / np.percentile(np.concatenate(snowed_values), percentile))


# ---------------------------------------------------------------- 2. evidence
def fusion_model(rgb_meta: dict, rgb_state: dict, bands, indices, gain: float):
    kwargs = {
        "bands": list(bands),
        "rgb_arch": rgb_meta["arch"],
        "rgb_mean": list(rgb_meta["mean"]),
        "rgb_std": list(rgb_meta["std"]),
        "gain": gain,
        "indices": list(indices),
    }
    model = build_model("fusion", kwargs)
    model.net.load_state_dict(rgb_state)
    return model.eval(), kwargs


def evidence(model, samples: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sample: (features (1 + K, H*W) float32, labels (H*W,) uint8)."""
    out = []
    pos = [ALL_BANDS.index(b) for b in model.bands]
    for sample in samples:
        image, label = load_sample_arrays(sample)
        x = torch.from_numpy(image[..., pos].transpose(2, 0, 1).astype(np.float32) * 1e-4)
        with torch.inference_mode():
            ev = model.evidence(x[None])[0]
        out.append((ev.reshape(ev.shape[0], -1).numpy(), label.reshape(-1)))
    return out


# ---------------------------------------------------------------- 3. fit and score
def fit_weights(data: list[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> np.ndarray:
    """Logistic regression on the evidence of some samples -> [w_net, w_index..., bias]."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for f, y in data:
        pick = rng.choice(y.size, min(PIXELS_PER_SAMPLE, y.size), replace=False)
        feats.append(f[:, pick])
        labels.append(y[pick])
    x = torch.from_numpy(np.concatenate(feats, 1).T.copy())
    y = torch.from_numpy(np.concatenate(labels).astype(np.float32))
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logit = x @ w[:-1] + w[-1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        loss = loss + L2_WEIGHT * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()


def score(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    cm = ConfusionMatrix()
    cm.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(label.astype(np.int64)))
    s = cm.compute()
    return {k: round(100 * float(s[k]), 2) for k in ("iou_water", "iou_land", "iou_mean")}


def leave_one_out(data, ids: list[str]) -> dict:
    """Per held-out sample: the fused model fitted on the others, and the references."""
    rows = {}
    for i, sample_id in enumerate(ids):
        weights = fit_weights([d for j, d in enumerate(data) if j != i])
        f, y = data[i]
        fused = f.T @ weights[:-1] + weights[-1] > 0
        rows[sample_id] = {
            "fused": score(fused, y),
            "rgb_net": score(f[0] > 0, y),
            "ndwi": score(f[1] > 0, y),
            "weights": [round(float(v), 4) for v in weights],
        }
        if f.shape[0] > 2:
            rows[sample_id]["mndwi"] = score(f[2] > 0, y)
    means = {
        k: round(float(np.mean([r[k]["iou_mean"] for r in rows.values()])), 2)
        for k in ("fused", "rgb_net", "ndwi", "mndwi")
        if all(k in r for r in rows.values())
    }
    return {"per_sample": rows, "mean_iou_mean": means}


# ---------------------------------------------------------------- 4. bundle
def bundle(model, kwargs: dict, weights: np.ndarray, name: str, config: dict, metrics: dict):
    with torch.no_grad():
        model.weights.copy_(torch.from_numpy(weights[:-1]))
        model.bias.fill_(float(weights[-1]))
    spec = InputSpec(bands=list(kwargs["bands"]), scale=1e-4, offset=0.0, tile_size=256)
    ckpt = build_checkpoint(model, "fusion", kwargs, spec, config=config, metrics=metrics)
    ckpt["state_dict"] = {
        k: v.half() if v.is_floating_point() and not k.startswith(("weights", "bias")) else v
        for k, v in ckpt["state_dict"].items()
    }
    path = save_checkpoint(ckpt, MODELS / name)
    (MODELS / f"{name}.sha256").write_text(f"{sha256_of(path)}  {name}\n")
    return path


def render_card(results: dict, name: str) -> str:
    variant = results["variants"][name]
    loo = variant["leave_one_out"]
    lines = [
        "| sample | fused | NDWI > 0 |"
        + (" MNDWI > 0 |" if "mndwi" in loo["mean_iou_mean"] else "")
        + " RGB network alone |",
        "|---|---:|---:|" + ("---:|" if "mndwi" in loo["mean_iou_mean"] else "") + "---:|",
    ]
    for sample_id, row in loo["per_sample"].items():
        cells = [row["fused"]["iou_mean"], row["ndwi"]["iou_mean"]]
        if "mndwi" in row:
            cells.append(row["mndwi"]["iou_mean"])
        cells.append(row["rgb_net"]["iou_mean"])
        lines.append(f"| {sample_id} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    m = loo["mean_iou_mean"]
    cells = [m["fused"], m["ndwi"]] + ([m["mndwi"]] if "mndwi" in m else []) + [m["rgb_net"]]
    lines.append("| **mean** | " + " | ".join(f"**{c:.2f}**" for c in cells) + " |")
    fields = {
        "file": name,
        "bands": " ".join(variant["bands"]),
        "indices": ", ".join(i.upper() for i in variant["indices"]),
        "weights": ", ".join(f"{w:+.3f}" for w in variant["weights"]),
        "gain": f"{results['gain']:.2f}",
        "rgb_model": results["rgb_model"],
        "rgb_sha256": results["rgb_sha256"],
        "loo_table": "\n".join(lines),
        "command": results["command"],
        "created": results["created"],
        "sha256": variant["sha256"],
    }
    return string.Template(TEMPLATE.read_text()).substitute(fields)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="scripts/build_fusion.py", description=__doc__.split("\n")[0])
    p.add_argument("--rgb", default=str(MODELS / "waterseg-rgb.pt"), help="the RGB checkpoint")
    p.add_argument("--snowed", default=str(SHARED / "snowed-sample" / "SNOWED"))
    p.add_argument("--esw", default=str(SHARED / "esw-rgb"))
    p.add_argument(
        "--gains",
        default="matched,2.5,3.5",
        help="render gains to validate: numbers, or 'matched' (step 1); the first is bundled",
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="also replace the bundled multispectral models and their cards (default: only "
        f"validate, writing {VALIDATION.relative_to(REPO)})",
    )
    args = p.parse_args(argv)
    torch.manual_seed(0)

    samples = [Path(args.snowed) / s for s in list_samples(args.snowed)]
    ids = [s.name for s in samples]
    gains = []
    for g in args.gains.split(","):
        gains.append(render_gain(Path(args.esw), samples) if g == "matched" else float(g))
    rgb_net, _, rgb_meta = unpack_checkpoint(read_checkpoint(args.rgb))
    rgb_state = rgb_net.state_dict()

    results = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python scripts/build_fusion.py " + " ".join(argv),
        "rgb_model": os.path.relpath(args.rgb, REPO),
        "rgb_sha256": sha256_of(args.rgb),
        "gain": gains[0],
        "gains": {},
        "samples": ids,
        "variants": {},
    }
    for gain in gains:
        log(f"render gain {gain:.3f}")
        per_gain = {}
        for name, (bands, indices, card) in VARIANTS.items():
            model, kwargs = fusion_model(rgb_meta, rgb_state, bands, indices, gain)
            data = evidence(model, samples)
            loo = leave_one_out(data, ids)
            log(f"{name}: leave-one-sample-out mean IoU {loo['mean_iou_mean']}")
            for sample_id, row in loo["per_sample"].items():
                log(f"  {sample_id} " + " ".join(f"{k} {v['iou_mean']:.2f}" for k, v in row.items()
                                                  if isinstance(v, dict)))  # fmt: skip
            weights = fit_weights(data)
            variant = {
                "bands": bands,
                "indices": indices,
                "weights": [float(w) for w in weights],
                "leave_one_out": loo,
            }
            per_gain[name] = variant
            if gain == gains[0]:
                results["variants"][name] = variant
            if args.bundle and gain == gains[0]:
                config = {"gain": gain, "rgb_model": results["rgb_model"], "l2": L2_WEIGHT}
                metrics = {"leave_one_sample_out": loo["mean_iou_mean"]}
                path = bundle(model, kwargs, weights, name, config, metrics)
                variant["sha256"] = sha256_of(path)
                (MODELS / card).write_text(render_card(results, name))
                log(f"wrote {path} and {card}")
        results["gains"][f"{gain:.3f}"] = per_gain
    out = RESULTS if args.bundle else VALIDATION
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
