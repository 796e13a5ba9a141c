"""Water/land segmentation metrics: confusion matrix, F1, IoU, shoreline distance.

Class convention: 1 = water, 0 = land; target pixels equal to ``ignore_index`` (255 by default)
are left out of every count.

Split-level scores (the paper's Table I) come from ONE confusion matrix accumulated over every
pixel of the split (:class:`ConfusionMatrix`), not from a mean of per-image scores.
:class:`PerImageMean` gives the per-image mean as a second figure.

Zero-division convention (decided here): a score whose denominator is 0 is undefined and is
reported as ``zero_division`` (NaN by default). For IoU of a class this happens only when the
class is absent from both truth and prediction; for F1 (water) when no pixel is water in truth
or prediction; for accuracy when there are no valid pixels. Pass ``zero_division=1.0`` to
count "absent and correctly predicted absent" as perfect. :class:`PerImageMean` averages with
NaNs skipped, so a pure-land image does not contribute to the water scores.

Shoreline distance (beyond the paper): :func:`shoreline_distance` measures, for every pixel
on the predicted water edge, the Euclidean distance to the nearest pixel on the true water
edge, in metres (``pixel_size`` metres per pixel; 10 m for Sentinel-2 B2/B3/B4/B8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = [
    "ConfusionMatrix",
    "evaluate_model",
    "PerImageMean",
    "confusion_matrix",
    "edge_pixels",
    "scores_from_matrix",
    "shoreline_distance",
    "shoreline_distances_px",
    "summarise_distances",
]

SCORE_KEYS = (
    "f1_water",
    "iou_water",
    "iou_land",
    "iou_mean",
    "accuracy",
    "precision_water",
    "recall_water",
)


def _as_numpy_int(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    return a


def _check_values(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
    """Raise ValueError when a valid pixel's truth or prediction is not 0 or 1."""
    bad_t = ((target < 0) | (target > 1)).any()
    bad_p = ((pred < 0) | (pred > 1)).any()
    if bool(bad_t) or bool(bad_p):
        raise ValueError(
            "metrics expect class ids 0 (land) / 1 (water) and the ignore index in the "
            "target; got other values (threshold probabilities and map nodata to ignore_index)"
        )


def _batched_counts(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    ignore_index: int,
    n_images: int,
) -> np.ndarray:
    """Confusion counts per image: int64 (n_images, 2, 2), rows truth, cols prediction.

    pred, target: int arrays (n_images, ...) with the same shape.
    """
    if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor):
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target {tuple(target.shape)}")
        p = pred.reshape(n_images, -1).long()
        t = target.reshape(n_images, -1).long()
        valid = t != ignore_index
        p, t = p.to(t.device), t
        img = torch.arange(n_images, device=t.device).unsqueeze(1).expand_as(t)
        p, t, img = p[valid], t[valid], img[valid]
        _check_values(p, t)
        idx = img * 4 + t * 2 + p
        counts = torch.bincount(idx, minlength=4 * n_images).cpu().numpy()
    else:
        p = _as_numpy_int(pred, "pred")
        t = _as_numpy_int(target, "target")
        if p.shape != t.shape:
            raise ValueError(f"pred shape {p.shape} != target {t.shape}")
        p = p.reshape(n_images, -1).astype(np.int64)
        t = t.reshape(n_images, -1).astype(np.int64)
        valid = t != ignore_index
        img = np.broadcast_to(np.arange(n_images, dtype=np.int64)[:, None], t.shape)
        p, t, img = p[valid], t[valid], img[valid]
        _check_values(p, t)
        counts = np.bincount(img * 4 + t * 2 + p, minlength=4 * n_images)
    return counts.astype(np.int64).reshape(n_images, 2, 2)


def confusion_matrix(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    ignore_index: int = 255,
) -> np.ndarray:
    """2 x 2 confusion matrix of one set of pixels.

    Args:
        pred: int class ids (any shape), 0 land / 1 water; torch or numpy.
        target: int class ids, same shape; pixels equal to ``ignore_index`` are skipped.

    Returns:
        int64 numpy (2, 2), rows = truth, columns = prediction: [[TN, FP], [FN, TP]] with
        water as the positive class.
    """
    return _batched_counts(pred, target, ignore_index, 1)[0]


def scores_from_matrix(matrix: np.ndarray, zero_division: float = float("nan")) -> dict:
    """Scores of a 2 x 2 confusion matrix (rows truth, cols prediction; 1 = water).

    Returns a dict of floats: f1_water, iou_water, iou_land, iou_mean, accuracy,
    precision_water, recall_water, and ``pixels`` (int, number of counted pixels). A score
    whose denominator is 0 is ``zero_division``; iou_mean is the mean of the two IoUs (NaN if
    either is NaN).
    """
    m = np.asarray(matrix, dtype=np.int64)
    tn, fp, fn, tp = (int(v) for v in m.ravel())

    def ratio(num: int, den: int) -> float:
        return num / den if den > 0 else float(zero_division)

    iou_water = ratio(tp, tp + fp + fn)
    iou_land = ratio(tn, tn + fn + fp)
    return {
        "f1_water": ratio(2 * tp, 2 * tp + fp + fn),
        "iou_water": iou_water,
        "iou_land": iou_land,
        "iou_mean": (iou_water + iou_land) / 2,
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "precision_water": ratio(tp, tp + fp),
        "recall_water": ratio(tp, tp + fn),
        "pixels": tp + tn + fp + fn,
    }


def _all_reduce_sum(array: np.ndarray, group: Any = None) -> np.ndarray:
    """Sum a numpy array over all ranks when torch.distributed is initialised; else identity."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return array
    backend = torch.distributed.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    t = torch.as_tensor(np.ascontiguousarray(array), device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM, group=group)
    return t.cpu().numpy().astype(array.dtype)


class ConfusionMatrix:
    """Water/land confusion matrix accumulated over batches.

    ``matrix`` is int64 numpy (2, 2), rows = truth, columns = prediction, class 1 = water.

    Example::

        cm = ConfusionMatrix()
        for logits, target in batches:
            cm.update(logits.argmax(1), target)   # (B, H, W) each
        cm.reduce_()                               # sum over DDP ranks (no-op otherwise)
        scores = cm.compute()
    """

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.matrix = np.zeros((2, 2), dtype=np.int64)

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add a batch: int class ids of the same shape (torch on any device, or numpy)."""
        self.matrix += confusion_matrix(pred, target, self.ignore_index)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one (in place); returns self."""
        if other.ignore_index != self.ignore_index:
            raise ValueError("cannot merge confusion matrices with different ignore_index")
        self.matrix += other.matrix
        return self

    def reduce_(self, group: Any = None) -> ConfusionMatrix:
        """Sum the counts over all ranks of torch.distributed (in place); returns self.

        Every rank must call it (it is a collective). Without an initialised process group it
        does nothing. With the NCCL backend the counts travel through the current CUDA device.
        """
        self.matrix = _all_reduce_sum(self.matrix, group)
        return self

    def reset(self) -> None:
        """Set all counts to zero."""
        self.matrix[:] = 0

    def compute(self, zero_division: float = float("nan")) -> dict:
        """Scores of the accumulated counts; see :func:`scores_from_matrix`."""
        return scores_from_matrix(self.matrix, zero_division)


class PerImageMean:
    """Mean over images of per-image scores (a second figure beside the split-level matrix).

    Each image's scores come from its own confusion matrix; undefined scores (NaN, e.g.
    iou_water of a pure-land image predicted all land) are skipped in that score's mean.
    ``compute()`` also returns ``images`` (images seen) and ``<key>_images`` (images that
    counted for each score).
    """

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index
        self.sums = np.zeros(len(SCORE_KEYS), dtype=np.float64)
        self.counts = np.zeros(len(SCORE_KEYS), dtype=np.int64)
        self.images = 0

    def update(self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> None:
        """Add a batch of images: int class ids (B, H, W) each (or (H, W) for one image)."""
        if pred.ndim == 2:
            pred, target = pred[None], target[None]
        n = int(target.shape[0])
        for m in _batched_counts(pred, target, self.ignore_index, n):
            s = scores_from_matrix(m)
            vals = np.array([s[k] for k in SCORE_KEYS], dtype=np.float64)
            ok = ~np.isnan(vals)
            self.sums[ok] += vals[ok]
            self.counts += ok
        self.images += n

    def merge(self, other: PerImageMean) -> PerImageMean:
        """Add another accumulator's images (in place); returns self."""
        self.sums += other.sums
        self.counts += other.counts
        self.images += other.images
        return self

    def reduce_(self, group: Any = None) -> PerImageMean:
        """Sum over torch.distributed ranks (collective; no-op without a process group)."""
        self.sums = _all_reduce_sum(self.sums, group)
        self.counts = _all_reduce_sum(self.counts, group)
        self.images = int(_all_reduce_sum(np.array([self.images], dtype=np.int64), group)[0])
        return self

    def compute(self) -> dict:
        """Dict: each score key -> mean over images (NaN if no image counted), plus counts."""
        out: dict = {}
        for k, s, c in zip(SCORE_KEYS, self.sums, self.counts, strict=True):
            out[k] = float(s / c) if c > 0 else float("nan")
            out[f"{k}_images"] = int(c)
        out["images"] = self.images
        return out


def edge_pixels(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """Water pixels that touch land: bool (H, W).

    A pixel is on the water edge when it is water (1) and at least one of its 8 neighbours
    inside the image is land (0). Nodata neighbours and the image border never make an edge.

    Args:
        mask: int (H, W), 1 water / 0 land / anything else nodata (255 by convention).
    """
    m = _as_numpy_int(mask, "mask")
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    water = m == 1
    land = np.pad(m == 0, 1, constant_values=False)
    h, w = m.shape
    touches_land = np.zeros_like(water)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                touches_land |= land[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return water & touches_land


def _nearest_distance_px(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """For each True pixel of ``src`` (row-major order), distance in pixels to nearest ``dst``.

    src, dst: bool (H, W); dst must have at least one True pixel.
    """
    try:
        from scipy import ndimage
    except ImportError:  # scipy is optional: brute force over edge pixels, in chunks
        ndimage = None
    if ndimage is not None:
        return ndimage.distance_transform_edt(~dst)[src].astype(np.float64)
    a = torch.from_numpy(np.argwhere(src).astype(np.float64))
    b = torch.from_numpy(np.argwhere(dst).astype(np.float64))
    out = torch.empty(len(a), dtype=torch.float64)
    chunk = max(1, 2**24 // max(1, len(b)))
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = torch.cdist(a[s : s + chunk], b).min(dim=1).values
    return out.numpy()


def shoreline_distances_px(
    pred_mask: np.ndarray | torch.Tensor, true_mask: np.ndarray | torch.Tensor
) -> np.ndarray:
    """Distances (pixels, float64 (n,)) from each predicted water-edge pixel to the true edge.

    Both masks: int (H, W), 1 water / 0 land / 255 nodata (see :func:`edge_pixels`). Returns an
    empty array when either mask has no water edge. Concatenate these over the images of a
    split and pass them to :func:`summarise_distances` for split-level figures.
    """
    pe, te = edge_pixels(pred_mask), edge_pixels(true_mask)
    if pe.shape != te.shape:
        raise ValueError(f"pred shape {pe.shape} != true shape {te.shape}")
    if not pe.any() or not te.any():
        return np.zeros(0, dtype=np.float64)
    return _nearest_distance_px(pe, te)


def summarise_distances(distances_px: np.ndarray, pixel_size: float = 10.0) -> dict:
    """Median / 90th percentile / mean of distances in metres (NaN when there are none).

    Percentiles use numpy's default linear interpolation. Returns dict median_m, p90_m,
    mean_m (floats) and edge_pixels (int, number of distances).
    """
    d = np.asarray(distances_px, dtype=np.float64) * pixel_size
    if d.size == 0:
        nan = float("nan")
        return {"median_m": nan, "p90_m": nan, "mean_m": nan, "edge_pixels": 0}
    return {
        "median_m": float(np.median(d)),
        "p90_m": float(np.percentile(d, 90)),
        "mean_m": float(d.mean()),
        "edge_pixels": int(d.size),
    }


def shoreline_distance(
    pred_mask: np.ndarray | torch.Tensor,
    true_mask: np.ndarray | torch.Tensor,
    pixel_size: float = 10.0,
) -> dict:
    """Distance from the predicted water edge to the true water edge of one image, in metres.

    Args:
        pred_mask, true_mask: int (H, W), 1 water / 0 land / 255 nodata.
        pixel_size: metres per pixel (10 for Sentinel-2 10 m bands).

    Returns:
        dict median_m, p90_m, mean_m (NaN when either mask has no water edge) and
        edge_pixels (number of predicted edge pixels measured).
    """
    return summarise_distances(shoreline_distances_px(pred_mask, true_mask), pixel_size)


# ---- a model over a data loader (training's validation and the evaluate command) ----------


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    criterion: torch.nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    shoreline: bool = False,
    pixel_size: float = 10.0,
) -> dict[str, Any]:
    """Metrics of ``model`` (head 0) on the batches of ``loader``.

    Batches are dicts with "image" float (B, C, H, W) and "mask" int64 (B, H, W). Under
    torch.distributed each rank passes its own shard and the counts are summed over ranks
    (every rank must call this). Returns the keys of ``ConfusionMatrix.compute()`` plus
    ``samples``, ``loss`` (mean per sample, NaN without ``criterion``), ``per_image_iou_mean``
    and, with ``shoreline``, ``shoreline`` = dict median_m, p90_m, mean_m, edge_pixels.
    Leaves the model in eval mode.
    """
    model.eval()
    cm, per_image = ConfusionMatrix(), PerImageMean()
    loss_sum, count = 0.0, 0
    distances: list[np.ndarray] = []
    for batch in loader:
        x = batch["image"].to(device, non_blocking=True)
        y = batch["mask"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(x)
        if isinstance(outputs, tuple | list):
            outputs = tuple(o.float() for o in outputs)
            seg = outputs[0]
        else:
            outputs = seg = outputs.float()
        if criterion is not None:
            loss_sum += float(criterion(outputs, y, x)) * len(x)
        count += len(x)
        pred = seg.argmax(1)
        cm.update(pred, y)
        per_image.update(pred, y)
        if shoreline:
            for p, t in zip(pred.cpu().numpy(), y.cpu().numpy(), strict=True):
                distances.append(shoreline_distances_px(p, t))
    cm.reduce_()
    per_image.reduce_()
    if _distributed():
        t = torch.tensor([loss_sum, count], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(device)
        dist.all_reduce(t)
        loss_sum, count = float(t[0]), int(t[1])
        if shoreline:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, distances)
            distances = [d for part in gathered for d in part]
    metrics = cm.compute()
    metrics["samples"] = int(count)
    metrics["loss"] = loss_sum / count if criterion is not None and count else float("nan")
    metrics["per_image_iou_mean"] = float(per_image.compute().get("iou_mean", float("nan")))
    if shoreline:
        all_d = np.concatenate(distances) if distances else np.zeros(0)
        metrics["shoreline"] = summarise_distances(all_d, pixel_size)
    return metrics
