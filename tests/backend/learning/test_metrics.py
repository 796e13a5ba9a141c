"""Metrics: confusion matrix, scores, per-image mean, DDP reduce, shoreline distance.

Expected values are worked out by hand in the comments.
"""

import math
import sys

import numpy as np
import pytest
import torch

from backend.learning.metrics import (
    ConfusionMatrix,
    PerImageMean,
    confusion_matrix,
    edge_pixels,
    scores_from_matrix,
    shoreline_distance,
    shoreline_distances_px,
)

# truth / prediction of one 3 x 3 image; (2, 0) is ignored.
T = np.array([[1, 1, 0], [1, 0, 0], [255, 0, 0]], dtype=np.int64)
P = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=np.int64)
# (truth, pred) per valid pixel, row-major: (1,1) (1,0) (0,0) / (1,1) (0,1) (0,0) / -- (0,1) (0,0)
# TP = 2 [(0,0), (1,0)], FN = 1 [(0,1)], FP = 2 [(1,1), (2,1)], TN = 3 [(0,2), (1,2), (2,2)]
M = np.array([[3, 2], [1, 2]])


def test_confusion_matrix_by_hand_numpy_and_torch():
    assert confusion_matrix(P, T).tolist() == M.tolist()
    assert confusion_matrix(torch.from_numpy(P), torch.from_numpy(T)).tolist() == M.tolist()
    assert confusion_matrix(P, T).dtype == np.int64


def test_scores_by_hand():
    s = scores_from_matrix(M)
    assert s["f1_water"] == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN) = 4 / 7
    assert s["iou_water"] == pytest.approx(2 / 5)  # TP / (TP + FP + FN) = 2 / 5
    assert s["iou_land"] == pytest.approx(1 / 2)  # TN / (TN + FN + FP) = 3 / 6
    assert s["iou_mean"] == pytest.approx(0.45)  # (0.4 + 0.5) / 2
    assert s["accuracy"] == pytest.approx(5 / 8)  # (2 + 3) / 8
    assert s["precision_water"] == pytest.approx(1 / 2)  # 2 / 4
    assert s["recall_water"] == pytest.approx(2 / 3)  # 2 / 3
    assert s["pixels"] == 8


def test_accumulates_over_batches_and_merges():
    cm = ConfusionMatrix()
    cm.update(torch.from_numpy(P)[None], torch.from_numpy(T)[None])  # (1, 3, 3) torch
    cm.update(P, T)  # numpy
    assert cm.matrix.tolist() == (2 * M).tolist()
    other = ConfusionMatrix()
    other.update(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))  # 4 TP
    cm.merge(other)
    assert cm.matrix.tolist() == [[6, 4], [2, 8]]
    # scores depend on ratios only: 2 * M gives the same as M
    assert ConfusionMatrix().compute()["pixels"] == 0
    cm.reset()
    assert cm.matrix.sum() == 0


def test_empty_class_is_nan_by_default_or_zero_division():
    land = np.zeros((3, 3), np.int64)
    s = scores_from_matrix(confusion_matrix(land, land))  # [[9, 0], [0, 0]]
    assert math.isnan(s["iou_water"]) and math.isnan(s["f1_water"])
    assert math.isnan(s["iou_mean"])
    assert s["iou_land"] == 1.0 and s["accuracy"] == 1.0
    s1 = scores_from_matrix(confusion_matrix(land, land), zero_division=1.0)
    assert s1["iou_water"] == 1.0 and s1["iou_mean"] == 1.0
    # a water pixel predicted where there is none: IoU water = 0 / 1 = 0, not NaN
    pred = land.copy()
    pred[0, 0] = 1
    assert scores_from_matrix(confusion_matrix(pred, land))["iou_water"] == 0.0
    everything_ignored = np.full((2, 2), 255)
    assert math.isnan(
        scores_from_matrix(confusion_matrix(land[:2, :2], everything_ignored))["accuracy"]
    )


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(P, T[:2])
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(P * 2, T)
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(P, np.where(T == 255, 7, T))
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(P.astype(np.float32), T)
    # a prediction of 255 at an ignored pixel is fine
    p = P.copy()
    p[2, 0] = 255
    assert confusion_matrix(p, T).tolist() == M.tolist()


def test_per_image_mean_skips_undefined_scores():
    land = np.zeros((3, 3), np.int64)
    pim = PerImageMean()
    pim.update(torch.from_numpy(np.stack([P, land])), torch.from_numpy(np.stack([T, land])))
    r = pim.compute()
    assert r["images"] == 2
    assert r["iou_water"] == pytest.approx(0.4) and r["iou_water_images"] == 1
    assert r["iou_land"] == pytest.approx((0.5 + 1.0) / 2) and r["iou_land_images"] == 2
    assert r["accuracy"] == pytest.approx((5 / 8 + 1.0) / 2)
    other = PerImageMean()
    other.update(P, T)  # a single (H, W) image
    pim.merge(other)
    assert pim.compute()["iou_water"] == pytest.approx(0.4)
    assert pim.compute()["images"] == 3


def test_reduce_without_process_group_is_a_no_op():
    cm = ConfusionMatrix()
    cm.update(P, T)
    assert cm.reduce_() is cm
    assert cm.matrix.tolist() == M.tolist()


def _ddp_worker(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    cm = ConfusionMatrix()
    if rank == 0:
        cm.update(P, T)
    else:
        cm.update(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))
    pim = PerImageMean()
    pim.update(
        P if rank == 0 else np.zeros((3, 3), np.int64),
        T if rank == 0 else np.zeros((3, 3), np.int64),
    )
    cm.reduce_()
    pim.reduce_()
    if rank == 1:
        np.save(out_file, np.concatenate([cm.matrix.ravel(), [pim.images, pim.counts[1]]]))
    dist.destroy_process_group()


def test_reduce_sums_over_two_gloo_ranks(tmp_path):
    out = tmp_path / "out.npy"
    torch.multiprocessing.spawn(
        _ddp_worker, args=(str(tmp_path / "init"), str(out)), nprocs=2, join=True
    )
    got = np.load(out)
    assert got[:4].tolist() == [3, 2, 1, 2 + 4]  # M plus 4 TP from rank 1
    assert got[4] == 2  # images over both ranks
    assert got[5] == 1  # iou_water counted for rank 0's image only


def test_edge_pixels_border_and_nodata_make_no_edge():
    assert not edge_pixels(np.ones((4, 4), np.int64)).any()  # all water: border is no edge
    m = np.array([[1, 1, 255, 0]] * 3)  # water | nodata | land: nodata separates them
    assert not edge_pixels(m).any()
    m[1, 2] = 0  # now the water pixels at column 1 touch land (diagonally for rows 0 and 2)
    assert edge_pixels(m)[:, 1].all() and edge_pixels(m).sum() == 3


# pred (5 x 5):        true:
#  1 1 0 0 0            1 1 0 0 0
#  1 1 0 0 0            1 1 0 0 0
#  1 1 1 1 0            1 1 0 0 0
#  1 1 1 1 0            1 1 0 0 0
#  1 1 1 1 0            1 1 0 0 0
# predicted edge (water with a land 8-neighbour): (0,1) (1,1) (2,1) (2,2) (2,3) (3,3) (4,3)
# [(3,2) and (4,2) have only water neighbours]; true edge: column 1.
# distances to column 1: 0 0 0 1 2 2 2 -> median 1 px; p90 at index 0.9 * 6 = 5.4 -> 2 px;
# mean 7 / 7 = 1 px.
PRED5 = np.array([[1, 1, 0, 0, 0]] * 2 + [[1, 1, 1, 1, 0]] * 3)
TRUE5 = np.array([[1, 1, 0, 0, 0]] * 5)


@pytest.mark.parametrize("scipy_available", [True, False])
def test_shoreline_distance_by_hand(scipy_available, monkeypatch):
    if not scipy_available:
        monkeypatch.setitem(sys.modules, "scipy", None)  # force the torch fallback
    expected_edge = [(0, 1), (1, 1), (2, 1), (2, 2), (2, 3), (3, 3), (4, 3)]
    assert [tuple(x) for x in np.argwhere(edge_pixels(PRED5))] == expected_edge
    assert shoreline_distances_px(PRED5, TRUE5).tolist() == [0, 0, 0, 1, 2, 2, 2]
    d = shoreline_distance(torch.from_numpy(PRED5), TRUE5, pixel_size=10.0)
    assert d == {"median_m": 10.0, "p90_m": 20.0, "mean_m": 10.0, "edge_pixels": 7}
    # Euclidean: single water pixels at opposite corners of a 4 x 4 image -> sqrt(3^2 + 3^2)
    a = np.zeros((4, 4), np.int64)
    b = a.copy()
    a[0, 0] = 1
    b[3, 3] = 1
    assert shoreline_distance(a, b, pixel_size=20.0)["median_m"] == pytest.approx(
        20 * math.sqrt(18)
    )


def test_shoreline_distance_without_edges_is_nan():
    d = shoreline_distance(np.ones((3, 3), np.int64), TRUE5[:3, :3])
    assert math.isnan(d["median_m"]) and math.isnan(d["p90_m"]) and d["edge_pixels"] == 0
