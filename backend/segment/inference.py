"""Batched model inference on tiles: device choice, autocast on CUDA, water probability out."""

from __future__ import annotations

import os
from contextlib import nullcontext

import numpy as np

from backend.errors import UserError


def choose_device(requested: str = "auto") -> str:
    """ "auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda" without a GPU is a UserError."""
    import torch

    requested = (requested or "auto").lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {requested} but this torch ({torch.__version__}) sees no CUDA GPU; "
                "use --device cpu or install a CUDA build of torch"
            )
        return requested
    if requested == "cpu":
        return "cpu"
    raise UserError(f"--device {requested!r} is not one of auto, cpu, cuda")


def default_batch_size(device: str) -> int:
    return 16 if device.startswith("cuda") else 4


def configure_cpu_threads() -> int:
    """Use every core the process may run on for intra-op parallelism; returns the count."""
    import torch

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return n


class TilePredictor:
    """Wraps a segmentation model: float32 tiles (N, C, T, T) -> water probability (N, T, T).

    The model returns logits (N, 2, T, T) (class 1 = water), a single water logit (N, 1, T, T),
    or a tuple/list whose first element is such a tensor (multi-head models: head 0 segments).
    On CUDA it runs under bf16 (or fp16) autocast; everything runs under ``inference_mode``.
    """

    def __init__(self, model, device: str = "cpu", batch_size: int | None = None):
        import torch

        self.device = device
        self.batch_size = batch_size or default_batch_size(device)
        self.model = model.eval().to(device)
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self._autocast = lambda: torch.autocast("cuda", dtype=dtype)
        else:
            self._autocast = nullcontext

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """tiles float32 (N, C, H, W) -> probability float32 (N, H, W), in batches."""
        out = np.empty((tiles.shape[0],) + tiles.shape[2:], np.float32)
        for i in range(0, tiles.shape[0], self.batch_size):
            out[i : i + self.batch_size] = self.predict_batch(tiles[i : i + self.batch_size])
        return out

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = batch.shape[2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x = torch.from_numpy(np.ascontiguousarray(batch))
        if self.device != "cpu":
            x = x.pin_memory().to(self.device, non_blocking=True)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        with torch.inference_mode(), self._autocast():
            logits = self.model(x)
            if isinstance(logits, tuple | list):
                logits = logits[0]
            logits = logits.float()
            if logits.shape[1] == 1:
                p = torch.sigmoid(logits[:, 0])
            else:
                p = torch.softmax(logits, dim=1)[:, 1]
        return p[:, :h, :w].cpu().numpy()
