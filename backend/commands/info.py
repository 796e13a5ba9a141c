"""Diagnostics: ``python -m backend info [--json]`` and ``python -m backend model-info CKPT [--json]``.

The QGIS plugin runs ``info --json`` to show which interpreter, torch build and device the
backend would use, and ``model-info --json`` to fill its band mapping from a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from backend.core.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message}; see 'python -m backend {self.prog.split()[-1]} --help'")


def environment_info() -> dict[str, Any]:
    """Interpreter, torch, CUDA devices, chosen device and the bundled models' state."""
    from backend import __version__
    from backend.core.checkpoint import sha256_of
    from backend.core.paths import DEFAULT_MODEL, bundled_models, bundled_sha256
    from backend.core.threads import current_policy

    info: dict[str, Any] = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "torch": None,
        "cuda_available": False,
        "cuda_devices": [],
        "device": "cpu",
        "default_model": str(DEFAULT_MODEL),
        "default_model_ok": False,
        "waterseg_version": __version__,
        "threads": current_policy().threads,
        "thread_policy": current_policy().describe(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        from backend.core.device import choose_device

        info["device"] = choose_device("auto")
        if torch.cuda.is_available():
            info["cuda_available"] = True
            info["cuda_devices"] = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
    except ImportError as exc:
        info["torch_error"] = str(exc)
    info["bundled_models"] = {}
    for model in bundled_models():
        expected = bundled_sha256(model)
        if not model.is_file():
            state = "file missing"
        elif expected is not None and sha256_of(model) != expected:
            state = "SHA-256 does not match the recorded checksum"
        else:
            state = "ok"
        info["bundled_models"][model.name] = state
        if model == DEFAULT_MODEL:
            info["default_model_ok"] = state == "ok"
            if state != "ok":
                info["default_model_error"] = state
    return info


def main(argv: list[str]) -> int:
    """``info [--json]``."""
    p = _Parser(prog="python -m backend info", description="report the backend environment")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args(argv)
    info = environment_info()
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:18} {value}")
    return 0


def checkpoint_info(path: Path) -> dict[str, Any]:
    """Describe a checkpoint without building its model (weights_only load)."""
    from backend.core.checkpoint import read_checkpoint
    from backend.core.paths import bundled_sha256

    ckpt = read_checkpoint(path, bundled_sha256(path))
    arch = ckpt.get("arch", {})
    kwargs = arch.get("kwargs", {})
    params = 0
    for name, tensor in ckpt["state_dict"].items():
        if not name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            params += int(tensor.numel())
    return {
        "path": str(path),
        "arch": arch.get("name"),
        "width": kwargs.get("width", "base"),
        "heads": kwargs.get("heads", 1),
        "bands": list(ckpt.get("bands", [])),
        "tile_size": int(ckpt.get("tile_size", 256)),
        "loss": ckpt.get("loss"),
        "metrics": ckpt.get("metrics", {}),
        "parameters": params,
        "scale": float(ckpt.get("scale", 1e-4)),
        "offset": float(ckpt.get("offset", 0.0)),
    }


def model_info_main(argv: list[str]) -> int:
    """``model-info [CKPT] [--json]`` (default: the bundled model)."""
    from backend.core.paths import DEFAULT_MODEL

    p = _Parser(prog="python -m backend model-info", description="describe a checkpoint")
    p.add_argument("checkpoint", nargs="?", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = p.parse_args(argv)
    info = checkpoint_info(args.checkpoint)
    if args.json:
        print(json.dumps(info, default=str))
    else:
        for key, value in info.items():
            if key == "metrics":
                for name, score in headline_metrics(value):
                    print(f"{'metrics':11} {name} {score * 100:.2f} %")
            else:
                print(f"{key:11} {value}")
    return 0


HEADLINE = ("f1_water", "iou_mean")


def headline_metrics(metrics, prefix: str = "") -> list[tuple[str, float]]:
    """The F1 (water) and IoU mean leaves of a nested metrics dict, as ("a.b.iou_mean", value)
    pairs in their stored order; for a readable ``model-info`` (``--json`` keeps everything)."""
    found: list[tuple[str, float]] = []
    if not isinstance(metrics, dict):
        return found
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found += headline_metrics(value, name + ".")
        elif key in HEADLINE and isinstance(value, int | float):
            found.append((name, float(value)))
    return found
