"""SpectralOptions("ndwi-init"): a residual model that starts exactly at NDWI > 0
(backend.models.spectral.init_from_index, create_model's option)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
from backend.core.water_indices import ndwi_water_mask
from backend.models import create_model
from backend.models.loading import load_model
from backend.models.spectral import DEFAULT_INIT_GAIN, NDWI_PAIR, init_from_index
from backend.segment.inference import fuse_for_inference
from tests.backend.rasters import randomise_batchnorm

KWARGS = {"width": 0.0625, "in_channels": 4, "num_classes": 2, "heads": 1}


def _reflectance(seed: int, side: int = 32) -> torch.Tensor:
    """(2, 4, side, side) reflectances in [0.0001, 0.4]: NDWI of both signs, about half water."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 4, side, side, generator=g) * 0.4 + 1e-4
    return x


def _ndwi(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 1] - x[:, 3]) / (x[:, 1] + x[:, 3])


@pytest.mark.parametrize("heads", [1, 2])
def test_untrained_model_predicts_exactly_ndwi_above_zero(heads):
    torch.manual_seed(0)
    model = create_model("unet", **{**KWARGS, "heads": heads}, spectral={"mode": "ndwi-init"})
    x = _reflectance(1)
    x[0, :, 0, 0] = torch.tensor([0.1, 0.05, 0.1, 0.05])  # NDWI exactly 0: land, as NDWI > 0
    for mode in (model.train, model.eval):  # BatchNorm in either mode: head 0 is zero
        mode()
        with torch.no_grad():
            out = model(x)
        logits = out[0] if heads == 2 else out
        water = logits.argmax(1) == 1
        assert torch.equal(water, _ndwi(x) > 0)
        assert torch.equal(torch.softmax(logits, 1)[:, 1] > 0.5, _ndwi(x) > 0)
        assert 0.2 < water.float().mean() < 0.8  # both classes present: the test can fail
    # the same decision as the project's NDWI baseline on the raw digital numbers
    raw = np.rint(x[1].numpy() * 1e4).astype(np.uint16)
    with torch.no_grad():
        out = model(torch.from_numpy(raw.astype(np.float32) * 1e-4)[None])
    pred = (out[0] if heads == 2 else out)[0].argmax(0).numpy().astype(np.uint8)
    assert np.array_equal(pred, ndwi_water_mask(raw, nodata_value=None))
    # logit(water) - logit(land) = k x NDWI (the layer's NDWI, with its eps = 1e-3)
    ndwi_eps = (x[:, 1] - x[:, 3]) / (x[:, 1] + x[:, 3] + 1e-3)
    diff = logits[:, 1] - logits[:, 0]
    torch.testing.assert_close(diff, DEFAULT_INIT_GAIN * ndwi_eps, atol=1e-5, rtol=1e-5)
    head = model.net.head.heads[0]
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    assert float(model.index_head.weight.detach().abs().sum()) == pytest.approx(DEFAULT_INIT_GAIN)


def test_pair_and_gain_are_parameters_and_bad_ones_are_refused():
    torch.manual_seed(0)
    x = _reflectance(2)
    # reversed pair (B8, B3): water where NIR > green, i.e. the opposite decision
    model = create_model(
        "unet", **KWARGS, spectral={"mode": "ndwi-init", "index_pair": (3, 1), "index_gain": 20}
    ).eval()
    with torch.no_grad():
        logits = model(x)
    assert torch.equal(logits.argmax(1) == 1, _ndwi(x) < 0)
    ndwi_eps = (x[:, 1] - x[:, 3]) / (x[:, 1] + x[:, 3] + 1e-3)
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], -20 * ndwi_eps, atol=1e-5, rtol=1e-5)
    # (B2, B8) on a 3-band input is (0, 2)
    model3 = create_model(
        "unet",
        **{**KWARGS, "in_channels": 3},
        spectral={"mode": "ndwi-init", "index_pair": (0, 2)},
    ).eval()
    x3 = x[:, [0, 1, 3]]
    with torch.no_grad():
        assert torch.equal(model3(x3).argmax(1) == 1, x3[:, 0] > x3[:, 2])
    assert NDWI_PAIR == (1, 3)
    with pytest.raises(ValueError, match="not among the spectral pairs"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-init", "index_pair": (1, 4)})
    with pytest.raises(ValueError, match="two different band indices"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-init", "index_pair": (1, 1)})
    with pytest.raises(ValueError, match="gain must be positive"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-init", "index_gain": 0})
    with pytest.raises(ValueError, match="residual index head"):
        init_from_index(create_model("unet", **KWARGS, spectral={"mode": "all"}))


def test_every_member_of_an_ensemble_starts_at_ndwi():
    torch.manual_seed(0)
    model = create_model("unet", **KWARGS, spectral={"mode": "ndwi-init"}, members=2).eval()
    x = _reflectance(3)
    with torch.no_grad():
        assert torch.equal(model(x).argmax(1) == 1, _ndwi(x) > 0)


def test_training_moves_away_from_the_start_and_checkpoint_round_trips(tmp_path):
    """Gradients reach the zeroed head and, through it, the network; the trained weights
    (not the NDWI start) come back from a checkpoint."""
    torch.manual_seed(4)
    kwargs = {**KWARGS, "spectral": {"mode": "ndwi-init"}}
    model = create_model("unet", **kwargs)
    x = _reflectance(4)
    target = (x[:, 0] > 0.2).long()  # a rule NDWI does not know
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first_conv = next(m for m in model.net.modules() if isinstance(m, nn.Conv2d))
    w0 = first_conv.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        opt.step()
    assert model.net.head.heads[0].weight.abs().sum() > 0
    assert not torch.equal(first_conv.weight, w0)
    model.eval()
    path = save_checkpoint(build_checkpoint(model, "unet", kwargs, InputSpec()), tmp_path / "n.pt")
    loaded, _, _ = load_model(path)  # rebuilt with the NDWI start, then the trained weights
    with torch.no_grad():
        out = model(x)
        assert torch.equal(loaded(x), out)
        assert not torch.equal(out.argmax(1) == 1, _ndwi(x) > 0)


@pytest.mark.parametrize("mode", ["ndwi-init", "ndwi-anchored", "anchored"])
def test_fused_inference_matches_within_1e_4(mode):
    """Also for the anchored modes (tests/backend/models/test_spectral_anchor.py): BatchNorm folding
    leaves the anchor buffers and the bounded correction as they are."""
    torch.manual_seed(5)
    model = create_model("unet", **KWARGS, spectral={"mode": mode})
    randomise_batchnorm(model)  # trained-like: non-trivial BatchNorm and a non-zero head 0
    with torch.no_grad():
        model.net.head.heads[0].weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    fused = fuse_for_inference(model)
    assert fused.folded_bn > 0
    x = _reflectance(6, side=64)
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
    assert not torch.equal(ref.argmax(1) == 1, _ndwi(x) > 0)  # head 0 does contribute
