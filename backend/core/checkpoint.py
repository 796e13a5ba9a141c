"""Self-describing checkpoints: everything inference and resuming need, in one file.

A checkpoint is a plain dict saved with ``torch.save`` and read with
``torch.load(..., weights_only=True)``, so a file from the internet cannot run code. It holds
only tensors, numbers, strings, lists, dicts and None.

Keys (format version 1):

``format``            "waterseg-checkpoint"
``format_version``    1
``arch``              {"name": "munet", "kwargs": {"width": "half", "in_channels": 4, "heads": 2}}
                      -> ``backend.models.build_model(name, kwargs)``; the index layer's
                      options are one dict, ``kwargs["spectral"]`` (older files: flat keys,
                      read by ``backend.models.upgrade_kwargs``)
``state_dict``        model weights (fp32 or fp16; loading casts to fp32)
``bands``             input band names in model order, e.g. ["B2", "B3", "B4", "B8"]
``scale``, ``offset`` reflectance = raw * scale + offset (Sentinel-2 L2A x 10000: 1e-4, 0.0)
``mean``, ``std``     optional per-band normalisation applied after scaling (lists or None)
``tile_size``         256
``classes``           ["land", "water"] (class 1 = water everywhere)
``loss``              loss name used for training, e.g. "seg+edge"
``config``            the training config (dict)
``split``             {"seed": ..., "train": [ids], "val": [ids], "test": [ids], ...} or None
``metrics``           validation/test metrics (dict), e.g. {"val": {"iou_mean": 0.95, ...}}
``epoch``             last completed epoch (training checkpoints)
``optimizer``, ``scheduler``, ``scaler``, ``rng``  optional, for ``--resume``
``created``           ISO timestamp; ``torch_version``; ``waterseg_version``

Saving is atomic (temporary file in the same folder, fsync, rename), so a kill at any moment
leaves either the old file or the new one, never a torn one. Rebuilding the network of a
checkpoint needs the model registry, one layer up: :mod:`backend.models.loading`
(``load_model``, ``unpack_checkpoint``, ``model_from_checkpoint``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.errors import UserError

FORMAT = "waterseg-checkpoint"
FORMAT_VERSION = 1
DEFAULT_BANDS = ["B2", "B3", "B4", "B8"]
CLASSES = ["land", "water"]


@dataclass
class InputSpec:
    """How raw raster values become model input; stored in the checkpoint.

    ``reflectance = raw * scale + offset``, then ``(reflectance - mean) / std`` per band when
    mean/std are given.
    """

    bands: list[str] = field(default_factory=lambda: list(DEFAULT_BANDS))
    scale: float = 1e-4
    offset: float = 0.0
    mean: list[float] | None = None
    std: list[float] | None = None
    tile_size: int = 256

    def normalise(self, raw: np.ndarray, extra_offset: float = 0.0) -> np.ndarray:
        """Raw values (C, H, W) or (N, C, H, W), any dtype -> float32 model input, same shape.

        ``extra_offset`` is added to the raw values first (e.g. -1000 for Sentinel-2 L2A
        products of processing baseline 04.00 and newer, whose digital numbers carry
        BOA_ADD_OFFSET = -1000).
        """
        x = raw.astype(np.float32, copy=True)
        if extra_offset:
            x += np.float32(extra_offset)
        x *= np.float32(self.scale)
        if self.offset:
            x += np.float32(self.offset)
        if self.mean is not None and self.std is not None:
            shape = (-1, 1, 1)
            x -= np.asarray(self.mean, np.float32).reshape(shape)
            x /= np.asarray(self.std, np.float32).reshape(shape)
        return x

    def to_dict(self) -> dict[str, Any]:
        return {
            "bands": list(self.bands),
            "scale": float(self.scale),
            "offset": float(self.offset),
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "tile_size": int(self.tile_size),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            bands=list(d.get("bands", DEFAULT_BANDS)),
            scale=float(d.get("scale", 1e-4)),
            offset=float(d.get("offset", 0.0)),
            mean=d.get("mean"),
            std=d.get("std"),
            tile_size=int(d.get("tile_size", 256)),
        )


def build_checkpoint(
    model,
    arch_name: str,
    arch_kwargs: dict[str, Any],
    input_spec: InputSpec,
    *,
    loss: str | None = None,
    config: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    epoch: int | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a checkpoint dict. ``model`` may be wrapped in DDP (``.module`` is used);
    values of ``arch_kwargs`` with a ``to_dict()`` (``SpectralOptions``) are stored as their
    dict."""
    import torch

    from backend import __version__

    net = getattr(model, "module", model)
    # Options objects (SpectralOptions) are stored as their plain dict: weights_only loading.
    kwargs = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in arch_kwargs.items()}
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": {"name": arch_name, "kwargs": kwargs},
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        **input_spec.to_dict(),
        "classes": list(CLASSES),
        "loss": loss,
        "config": config or {},
        "split": split,
        "metrics": metrics or {},
        "epoch": epoch,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
        "waterseg_version": __version__,
    }
    if extra:
        ckpt.update(extra)
    return ckpt


def save_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temp file + fsync + rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(ckpt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint dict (weights_only). Raises UserError with a fix."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"model file not found: {path}; pass --model PATH to a WaterSeg .pt checkpoint"
        )
    if expected_sha256 is not None:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise UserError(
                f"model file {path} is corrupt (SHA-256 {actual[:12]}... != expected "
                f"{expected_sha256[:12]}...); reinstall WaterSeg or restore the file"
            )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
    ) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot read model file {path}: not a valid WaterSeg checkpoint or truncated "
            f"({first[:160]}); pass a checkpoint written by 'python -m backend train'"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path} is not a WaterSeg checkpoint (no format tag); pass a checkpoint written by "
            "'python -m backend train'"
        )
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise UserError(
            f"{path} uses checkpoint format {ckpt['format_version']}, newer than this WaterSeg "
            f"understands ({FORMAT_VERSION}); update WaterSeg"
        )
    for key in ("arch", "state_dict", "bands"):
        if key not in ckpt:
            raise UserError(
                f"{path} is missing '{key}', so the checkpoint is incomplete; pass a checkpoint "
                "written by 'python -m backend train'"
            )
    return ckpt
