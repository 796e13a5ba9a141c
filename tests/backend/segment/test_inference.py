"""Batched inference: tuple outputs, single logits and size multiples; the optimisations
(BatchNorm folding, channels_last, thread count) keep the results."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from backend.models import create_model, list_models
from backend.segment.inference import (
    TilePredictor,
    configure_cpu_threads,
    fold_conv_bn,
    fuse_for_inference,
    physical_cores,
)
from backend.segment.pipeline import predict_array
from tests.backend.rasters import randomise_batchnorm


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on one thread: on a loaded 2-core machine every parallel op of a second
    thread waits for a scheduler slot, which makes these small forwards 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _heads(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def test_fold_conv_bn_by_hand():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    bn = nn.BatchNorm2d(2, eps=0.0).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        bn.running_mean.copy_(torch.tensor([1.0, 3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([3.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, -2.0]))
    fold_conv_bn(conv, bn)
    # s = gamma / sqrt(var) = [1.5, 2]; w' = w * s = [3, -2]; b' = -mean * s + beta = [-1, -8]
    assert conv.weight.flatten().tolist() == [3.0, -2.0]
    assert conv.bias.tolist() == [-1.0, -8.0]
    x = torch.tensor([[[[2.0]]]])  # conv(x) = [4, -2] -> BN: [3*(4-1)/2+0.5, (-2-3)/0.5-2]
    assert conv(x).flatten().tolist() == [5.0, -12.0]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("heads", [1, 2])
def test_fusion_keeps_every_head_and_leaves_the_original_alone(name, heads):
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model(name, width=0.125, heads=heads))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fused = fuse_for_inference(model)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.folded_bn > 0 and left == n_bn - fused.folded_bn
    if name != "munet":  # MU-Net keeps the BNs that follow a gate or sit outside a Sequential
        assert left == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_bn  # not mutated
    side = max(64, model.size_multiple)
    x = torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, out = _heads(model(x)), _heads(fused(x))
    assert len(ref) == len(out) == heads
    for a, b in zip(ref, out, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    assert fuse_for_inference(fused).folded_bn == 0  # idempotent: nothing left to fold


@pytest.mark.parametrize("name", list_models())
def test_optimised_pipeline_matches_the_plain_model(name):
    """Probabilities of fused + channels_last inference equal the plain eval model's (1e-4),
    per tile and after tiling and blending of a small raster."""
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model(name, width=0.125))
    tile = 128
    rng = np.random.default_rng(0)
    tiles = rng.normal(0.2, 0.1, size=(3, 4, tile, tile)).astype(np.float32)
    with torch.inference_mode():
        ref = torch.softmax(model(torch.from_numpy(tiles)), dim=1)[:, 1].numpy()
    variants = {
        (fuse, cl): TilePredictor(model, "cpu", 2, fuse=fuse, channels_last=cl)
        for fuse in (False, True)
        for cl in (False, True)
    }
    for (fuse, cl), pred in variants.items():
        got = pred(tiles)
        assert got.dtype == np.float32 and got.shape == (3, tile, tile)
        np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=f"fuse={fuse} cl={cl}")
    assert variants[(True, True)].model.folded_bn > 0
    assert variants[(True, True)].model is not model  # a fused copy; the caller's model stays
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    raster = rng.normal(0.2, 0.1, size=(4, 200, 230)).astype(np.float32)
    plain = predict_array(raster, model, tile=tile, fuse=False, channels_last=False)
    fast = predict_array(raster, model, tile=tile, fuse=True, channels_last=True)
    assert np.isfinite(plain).all()
    np.testing.assert_allclose(fast, plain, atol=1e-4)


def test_channels_last_model_and_input():
    model = randomise_batchnorm(create_model("senet", width=0.125))
    pred = TilePredictor(model, "cpu", 2, channels_last=True)
    conv = next(
        m for m in pred.model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1
    )
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()  # really NHWC, not a 1x1 layout coincidence
    seen = []
    pred.model.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    pred(np.zeros((1, 4, 64, 64), np.float32))
    assert seen[0].is_contiguous(memory_format=torch.channels_last)


def test_thread_count_is_the_physical_cores_available(monkeypatch):
    monkeypatch.delenv("WATERSEG_THREADS", raising=False)
    try:
        logical = len(os.sched_getaffinity(0))
    except AttributeError:
        logical = os.cpu_count() or 1
    n = physical_cores()
    assert 1 <= n <= logical
    before = torch.get_num_threads()
    try:
        assert configure_cpu_threads() == n
        assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_predictor_matches_cpu():
    model = randomise_batchnorm(create_model("unet", width=0.125))
    tiles = np.random.default_rng(0).normal(0.2, 0.1, size=(5, 4, 128, 128)).astype(np.float32)
    cpu = TilePredictor(model, "cpu", 2)(tiles)
    exact = TilePredictor(model, "cuda", 2, autocast=False)
    np.testing.assert_allclose(exact(tiles), cpu, atol=1e-3)  # TF32 convs allowed
    np.testing.assert_allclose(exact(tiles[:1]), cpu[:1], atol=1e-3)  # pinned buffer reuse
    mixed = TilePredictor(model, "cuda", 4)(tiles)  # bf16/fp16 autocast
    assert np.abs(mixed - cpu).max() < 0.05


def test_cpu_bf16_autocast_is_opt_in_and_close():
    model = randomise_batchnorm(create_model("senet", width=0.125))
    tiles = np.random.default_rng(0).normal(0.2, 0.1, size=(2, 4, 64, 64)).astype(np.float32)
    exact = TilePredictor(model, "cpu", 2)
    assert exact.autocast is False  # CPU default: float32
    bf16 = TilePredictor(model, "cpu", 2, autocast=True)
    seen = []
    bf16.model.seg_head.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    got = bf16(tiles)
    assert seen == [torch.bfloat16]
    assert got.dtype == np.float32
    assert np.abs(got - exact(tiles)).max() < 0.05


def test_predictor_handles_tuple_outputs_single_logit_and_size_multiple():
    class TwoHeads(torch.nn.Module):
        size_multiple = 16

        def forward(self, x):
            assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0
            seg = torch.zeros(x.shape[0], 2, *x.shape[2:])
            seg[:, 1] = 2.0
            return seg, torch.zeros_like(seg)

    class OneLogit(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 1, *x.shape[2:]), -1.0)

    tiles = np.zeros((3, 4, 20, 30), np.float32)
    p = TilePredictor(TwoHeads(), "cpu", 2)(tiles)
    assert p.shape == (3, 20, 30)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-2.0)), rtol=1e-6)
    np.testing.assert_allclose(TilePredictor(OneLogit())(tiles), 1 / (1 + np.exp(1.0)), rtol=1e-6)
