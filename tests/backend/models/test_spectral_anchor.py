"""SpectralOptions("ndwi-anchored"): a fixed NDWI decision plus a bounded correction from the
network (backend.models.spectral.WithSpectralIndices with ``anchor``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
from backend.models import create_model
from backend.models.loading import load_model

KWARGS = {"width": 0.0625, "in_channels": 4, "num_classes": 2, "heads": 1}


def _reflectance(seed: int, side: int = 32) -> torch.Tensor:
    """(2, 4, side, side) reflectances in [0.0001, 0.4]: NDWI of both signs."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 4, side, side, generator=g) * 0.4 + 1e-4


def _ndwi(x: torch.Tensor) -> torch.Tensor:
    """NDWI with the layer's eps (1e-3 reflectance)."""
    return (x[:, 1] - x[:, 3]) / (x[:, 1] + x[:, 3] + 1e-3)


def _wild(model: nn.Module, scale: float = 50.0) -> nn.Module:
    """Make the network's own logits huge (as an over-fitted net could): the bound must hold."""
    with torch.no_grad():
        model.net.head.heads[0].weight.normal_(0, scale, generator=torch.Generator().manual_seed(9))
        model.net.head.heads[0].bias.copy_(torch.tensor([-scale, scale]))
    return model


@pytest.mark.parametrize("bound", [0.25, 1.5])
def test_the_net_moves_the_logit_difference_by_less_than_twice_the_bound(bound):
    torch.manual_seed(0)
    model = _wild(
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-anchored", "anchor_bound": bound})
    )
    model.eval()
    x = _reflectance(1)
    with torch.no_grad():
        logits = model(x)
    diff = logits[:, 1] - logits[:, 0]
    correction = diff - 10.0 * _ndwi(x)
    assert float(correction.abs().max()) < 2 * bound + 1e-5
    assert float(correction.abs().max()) > 1.9 * bound  # the wild net does push to the bound
    # wherever NDWI is clear (|10 NDWI| > 2 bound) the decision is NDWI's
    clear = (10.0 * _ndwi(x)).abs() > 2 * bound
    assert clear.float().mean() > 0.5
    assert torch.equal((diff > 0)[clear], (_ndwi(x) > 0)[clear])
    # the anchor has nothing to learn: only the network's parameters train
    names = {n for n, p in model.named_parameters()}
    assert names and all(n.startswith("net.") for n in names)
    assert {"anchor_weight", "anchor_bias", "anchor_bound"} <= set(model.state_dict())


def test_two_heads_keep_the_second_head_unbounded():
    torch.manual_seed(1)
    model = create_model("unet", **{**KWARGS, "heads": 2}, spectral={"mode": "ndwi-anchored"})
    model.eval()
    with torch.no_grad():
        seg, edge = model(_reflectance(2))
    assert seg.shape == edge.shape == (2, 2, 32, 32)


def test_gain_and_bound_come_back_from_a_checkpoint_and_scale_with_a_temperature(tmp_path):
    torch.manual_seed(2)
    kwargs = {**KWARGS, "spectral": {"mode": "ndwi-anchored", "anchor_bound": 0.5}}
    model = _wild(create_model("unet", **kwargs), scale=2.0).eval()
    x = _reflectance(3)
    with torch.no_grad():
        ref = model(x)
    # divide gain, bound and the net's head by T: the logits are divided by T exactly
    temperature = 2.5
    state = model.state_dict()
    for key in (
        "anchor_weight",
        "anchor_bias",
        "anchor_bound",
        "net.head.heads.0.weight",
        "net.head.heads.0.bias",
    ):
        state[key].div_(temperature)
    path = save_checkpoint(build_checkpoint(model, "unet", kwargs, InputSpec()), tmp_path / "a.pt")
    loaded, _, _ = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ref / temperature, rtol=1e-5, atol=1e-5)
    assert float(loaded.anchor_bound) == pytest.approx(0.5 / temperature)


def test_bad_anchor_settings_are_refused():
    with pytest.raises(ValueError, match="must be positive"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-anchored", "anchor_bound": 0})
    with pytest.raises(ValueError, match="two different band indices"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-anchored", "index_pair": (2, 2)})
    with pytest.raises(ValueError, match="not among the spectral pairs"):
        create_model("unet", **KWARGS, spectral={"mode": "ndwi-anchored", "index_pair": (2, 7)})


def test_fit_anchor_learns_the_index_rule_of_the_labels():
    """Labels are water exactly where (B2 - B8) / (B2 + B8) > 0.1, a rule no single index
    with threshold 0 gives: the fitted anchor alone (the net's head zeroed) reproduces it on
    new pixels; nothing in the net changes."""
    from backend.models.spectral import fit_anchor

    torch.manual_seed(3)
    model = create_model("unet", **KWARGS, spectral={"mode": "anchored"}).eval()
    assert float(model.anchor_weight.abs().sum()) == 0  # starts undecided
    net_before = {k: v.clone() for k, v in model.net.state_dict().items()}
    x = _reflectance(7, side=64)
    index = (x[:, 0] - x[:, 3]) / (x[:, 0] + x[:, 3] + 1e-3)
    labels = (index > 0.1).long()
    labels[0, :2, :2] = 255  # ignored
    result = fit_anchor(model, x, labels)
    assert result["accuracy"] > 0.98 and result["pixels"] == labels.numel() - 4
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, net_before[key])
    assert float(model.anchor_bias) < 0  # the threshold 0.1 needs a negative bias
    with torch.no_grad():
        model.net.head.heads[0].weight.zero_()
        model.net.head.heads[0].bias.zero_()
        new = _reflectance(8, side=64)
        truth = (new[:, 0] - new[:, 3]) / (new[:, 0] + new[:, 3] + 1e-3) > 0.1
        logits = model(new)
    water = logits[:, 1] > logits[:, 0]
    assert (water == truth).float().mean() > 0.98
    assert not torch.equal(water, _ndwi(new) > 0)
    with pytest.raises(ValueError, match="both water and land"):
        fit_anchor(model, x, torch.zeros_like(labels))
    with pytest.raises(ValueError, match="anchor"):
        fit_anchor(create_model("unet", **KWARGS, spectral={"mode": "all"}), x, labels)
