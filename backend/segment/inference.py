"""Batched model inference on tiles: device choice, autocast on CUDA, water probability out."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np

from backend.core.device import choose_device  # noqa: F401 - the engine's name for it


def default_batch_size(device: str) -> int:
    """Tiles per forward pass: 32 on CUDA (a 256 px tile row of a 10980 px scene has 57 tiles),
    2 on CPU (measured on 2 cores: 1-2 tiles per pass are fastest, 4 are 0.6-0.9x as fast --
    the activations of a small batch stay in cache; see docs/segment.md, Benchmarks)."""
    return 32 if device.startswith("cuda") else 2


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (SMT siblings counted once)."""
    from backend.core.threads import affinity_cpus
    from backend.core.threads import physical_cores as cores_of

    return cores_of(affinity_cpus())


def configure_cpu_threads() -> int:
    """Set torch's intra-op thread count and return it: the count the thread policy chose
    (backend/core/threads.py: ``--threads``, ``WATERSEG_THREADS``, ``OMP_NUM_THREADS``), else one
    thread per physical core this process may run on.

    oneDNN convolutions gain nothing from SMT siblings (they share the FMA units) and lose to
    their synchronisation; eager inference runs no inter-op parallel work, so the inter-op
    pool is left alone.
    """
    import torch

    from backend.core.threads import configured_threads

    n = configured_threads() or physical_cores()
    torch.set_num_threads(n)
    return n


def fold_conv_bn(conv, bn) -> None:
    """Fold an eval-mode BatchNorm2d into the preceding Conv2d's weight and bias, in place.

    y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta becomes a single conv with
    weight * s (s = gamma / sqrt(var + eps) per output channel) and bias (b - mean) * s + beta.
    Computed in float64, stored in the conv's dtype.
    """
    import torch

    with torch.no_grad():
        w = conv.weight.detach().double()
        mean, var = bn.running_mean.double(), bn.running_var.double()
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
        s = gamma / torch.sqrt(var + bn.eps)
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
        dtype = conv.weight.dtype
        conv.weight.copy_((w * s.reshape(-1, *([1] * (w.dim() - 1)))).to(dtype))
        bias = ((b - mean) * s + beta).to(dtype)
        if conv.bias is None:
            conv.bias = torch.nn.Parameter(bias, requires_grad=False)
        else:
            conv.bias.copy_(bias)


def _foldable(conv, bn) -> bool:
    from torch import nn

    return (
        type(conv) is nn.Conv2d
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
        and bn.num_features == conv.out_channels
    )


def fuse_for_inference(model, *, inplace: bool = False):
    """Eval-mode copy of ``model`` with every Conv2d -> BatchNorm2d pair folded into one conv.

    Pairs are found generically: two consecutive children of any ``nn.Sequential`` (ConvBNReLU,
    the AMM's spatial branch, MixFormer's depthwise conv...), the conv directly followed by the
    BatchNorm in execution order, which a Sequential guarantees. The BatchNorm is replaced by
    ``nn.Identity`` (indices and the other layers stay). Convs and BatchNorms outside a
    Sequential, or with something in between, are left alone. Outputs equal the unfused eval
    model's within float rounding (about 1e-6 relative). ``inplace=False`` deep-copies first,
    so the caller's model is untouched. Returns the (copied) model in eval mode; the number of
    folded pairs is in its ``folded_bn`` attribute.
    """
    from torch import nn

    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    folded = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, conv), (name, bn) in zip(children, children[1:], strict=False):
            if _foldable(conv, bn):
                fold_conv_bn(conv, bn)
                setattr(module, name, nn.Identity())
                folded += 1
    model.folded_bn = folded
    return model


class TilePredictor:
    """Wraps a segmentation model: float32 tiles (N, C, T, T) -> water probability (N, T, T).

    The model returns logits (N, 2, T, T) (class 1 = water), a single water logit (N, 1, T, T),
    or a tuple/list whose first element is such a tensor (multi-head models: head 0 segments).

    Inference optimisations, none of which changes the probabilities beyond float32 rounding
    (tests/backend/segment/test_inference.py checks 1e-4 on every architecture):

    - ``fuse``: an eval copy of the model with BatchNorm folded into the preceding convs
      (:func:`fuse_for_inference`; the caller's model is left as it is);
    - ``channels_last``: model weights and input tiles in NHWC memory format, the layout
      oneDNN (CPU) and cuDNN (tensor cores) convolutions run fastest in;
    - on CUDA: bf16 (or fp16) autocast unless ``autocast=False``, a reusable pinned host
      buffer with a non-blocking host-to-device copy, cuDNN autotuning (tiles have one size).
      ``autocast=True`` on CPU runs bf16 autocast there too (opt-in: faster where the CPU has
      bf16 instructions, but not within float32 tolerance).

    Everything runs under ``inference_mode``.
    """

    def __init__(
        self,
        model,
        device: str = "cpu",
        batch_size: int | None = None,
        *,
        fuse: bool = True,
        channels_last: bool = True,
        autocast: bool | None = None,
    ):
        import torch

        self.device = device
        self.batch_size = batch_size or default_batch_size(device)
        self.size_multiple = int(getattr(model, "size_multiple", 1) or 1)
        model = fuse_for_inference(model) if fuse else model.eval()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.memory_format)
        self._pinned = None
        cuda = device.startswith("cuda")
        self.autocast = cuda if autocast is None else bool(autocast)
        if self.autocast and cuda:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            self._autocast = lambda: torch.autocast("cuda", dtype=dtype)
        elif self.autocast:
            # Opt-in only: about 2x faster on CPUs with AVX512-BF16, but probabilities move by
            # up to ~5e-3 (measured), beyond float32 tolerance.
            self._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            self._autocast = nullcontext
        if cuda:
            torch.backends.cudnn.benchmark = True

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """tiles float32 (N, C, H, W) -> probability float32 (N, H, W), in batches."""
        out = np.empty((tiles.shape[0],) + tiles.shape[2:], np.float32)
        for i in range(0, tiles.shape[0], self.batch_size):
            out[i : i + self.batch_size] = self.predict_batch(tiles[i : i + self.batch_size])
        return out

    def _to_device(self, batch: np.ndarray):
        """float32 (n, C, H, W) numpy -> tensor on the device (CPU: shares the numpy memory)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.device == "cpu":
            return x
        pinned = self._pinned
        if pinned is None or pinned.shape[1:] != x.shape[1:] or pinned.shape[0] < x.shape[0]:
            shape = (max(self.batch_size, x.shape[0]),) + tuple(x.shape[1:])
            self._pinned = torch.empty(shape, dtype=torch.float32).pin_memory()
        staged = self._pinned[: x.shape[0]]
        staged.copy_(x)
        # The copy is finished before the buffer is reused: predict_batch waits for its result.
        return staged.to(self.device, non_blocking=True)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """float32 (n, C, H, W) -> probability float32 (n, H, W); H, W padded to the model's
        ``size_multiple`` internally (reflect) and cropped back."""
        import torch
        import torch.nn.functional as F

        h, w = batch.shape[2:]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x = self._to_device(batch)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        x = x.contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            logits = self.model(x)
            if isinstance(logits, tuple | list):
                logits = logits[0]
            logits = logits[:, :, :h, :w].float()
            if logits.shape[1] == 1:
                p = torch.sigmoid(logits[:, 0])
            elif logits.shape[1] == 2:
                # softmax(l)[1] of two classes = sigmoid(l1 - l0): one pass, no (n, 2, H, W) temp
                p = torch.sigmoid(logits[:, 1] - logits[:, 0])
            else:
                p = torch.softmax(logits, dim=1)[:, 1]
        return p.cpu().numpy()
