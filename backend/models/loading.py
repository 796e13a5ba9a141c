"""Rebuild the network a checkpoint describes: checkpoint dict or file -> model in eval mode.

The file format itself (reading, validating, saving, :class:`~backend.core.checkpoint.InputSpec`)
is :mod:`backend.core.checkpoint`; rebuilding needs the model registry
(:func:`backend.models.build_model`), so it lives here, above core, and core never imports
the models.
"""

from __future__ import annotations

import os
from typing import Any

from backend.core.checkpoint import InputSpec, read_checkpoint
from backend.core.errors import UserError
from backend.models import build_model


def model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the model of a checkpoint dict, weights loaded, in eval mode, fp32, on CPU."""
    arch = ckpt["arch"]
    try:
        model = build_model(arch["name"], dict(arch.get("kwargs", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"checkpoint architecture {arch!r} cannot be built: {exc}") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(
            f"checkpoint weights do not match architecture {arch['name']}: {first}"
        ) from None
    return model.eval()


def load_model(path: str | os.PathLike, expected_sha256: str | None = None):
    """Path -> (model in eval mode on CPU, InputSpec, checkpoint dict without state_dict)."""
    return unpack_checkpoint(read_checkpoint(path, expected_sha256))


def unpack_checkpoint(ckpt: dict[str, Any]):
    """A checkpoint dict from :func:`~backend.core.checkpoint.read_checkpoint` ->
    (model, InputSpec, meta) as :func:`load_model` returns them (for callers that look at the
    checkpoint first)."""
    model = model_from_checkpoint(ckpt)
    spec = InputSpec.from_dict(ckpt)
    meta = {
        k: v
        for k, v in ckpt.items()
        if k not in ("state_dict", "optimizer", "scheduler", "scaler", "rng")
    }
    return model, spec, meta
