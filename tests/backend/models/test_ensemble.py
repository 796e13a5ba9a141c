"""Seed ensembles (backend/models/ensemble.py): create_model(..., members=K)."""

from __future__ import annotations

import pytest
import torch

from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
from backend.models import create_model
from backend.models.ensemble import Ensemble, ensemble_checkpoint, ensemble_state_dict
from backend.models.loading import load_model, model_from_checkpoint
from backend.segment.inference import fuse_for_inference

KW = {"width": 0.0625, "spectral": {"mode": "residual"}}


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm layers and the zero-initialised index head non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if "index_head" in name:
                p.copy_(torch.randn(p.shape, generator=g))


def test_members_1_is_the_plain_model():
    torch.manual_seed(0)
    plain = create_model("unet", **KW)
    torch.manual_seed(0)
    one = create_model("unet", **KW, members=1)
    assert type(one) is type(plain)
    assert not isinstance(one, Ensemble)
    assert list(one.state_dict()) == list(plain.state_dict())
    for k, v in plain.state_dict().items():
        assert torch.equal(one.state_dict()[k], v)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_members_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="members"):
        create_model("unet", width=0.0625, members=bad)


def test_k2_output_is_mean_of_member_logits():
    torch.manual_seed(1)
    ens = create_model("unet", **KW, members=2)
    assert isinstance(ens, Ensemble) and len(ens.members) == 2
    assert ens.size_multiple == 16
    assert all(k.startswith(("members.0.", "members.1.")) for k in ens.state_dict())
    for i, m in enumerate(ens.members):
        _randomise_bn(m, i)
    ens.eval()
    x = torch.rand(2, 4, 32, 32)
    with torch.no_grad():
        a, b = (m(x) for m in ens.members)
        out = ens(x)
    assert out.shape == (2, 2, 32, 32)
    assert not torch.allclose(a, b, atol=1e-3)  # independent members
    torch.testing.assert_close(out, (a + b) / 2, rtol=0, atol=1e-6)


def test_k2_two_heads_average_per_head():
    torch.manual_seed(2)
    ens = create_model("munet", width=0.0625, heads=2, members=2).eval()
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        (a0, a1), (b0, b1) = (m(x) for m in ens.members)
        out = ens(x)
    assert isinstance(out, tuple) and len(out) == 2
    torch.testing.assert_close(out[0], (a0 + b0) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1], (a1 + b1) / 2, rtol=0, atol=1e-6)


def _single_ckpt(seed: int) -> dict:
    torch.manual_seed(seed)
    model = create_model("unet", **KW).eval()
    _randomise_bn(model, seed)
    return build_checkpoint(
        model,
        "unet",
        {
            "width": 0.0625,
            "in_channels": 4,
            "num_classes": 2,
            "heads": 1,
            "spectral": {"mode": "residual"},
        },
        InputSpec(),
        config={"seed": seed},
        epoch=20,
    )


def test_ensemble_checkpoint_round_trip(tmp_path):
    members = [_single_ckpt(0), _single_ckpt(1), _single_ckpt(2)]
    ckpt = ensemble_checkpoint(members)
    assert ckpt["arch"]["kwargs"]["members"] == 3
    assert [m["seed"] for m in ckpt["ensemble_members"]] == [0, 1, 2]
    path = save_checkpoint(ckpt, tmp_path / "ens.pt")
    model, spec, meta = load_model(path)
    assert isinstance(model, Ensemble) and len(model.members) == 3
    assert meta["arch"]["kwargs"]["members"] == 3
    x = torch.rand(1, 4, 32, 32)
    singles = [model_from_checkpoint(c) for c in members]
    with torch.no_grad():
        want = torch.stack([m(x) for m in singles]).mean(0)
        got = model(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_ensemble_checkpoint_rejects_mixed_architectures():
    other = _single_ckpt(1)
    other["arch"] = {**other["arch"], "kwargs": {**other["arch"]["kwargs"], "width": 0.125}}
    with pytest.raises(ValueError, match="architecture"):
        ensemble_checkpoint([_single_ckpt(0), other])
    with pytest.raises(ValueError, match="keys"):
        ensemble_state_dict([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])


def test_fuse_for_inference_on_ensemble():
    torch.manual_seed(3)
    ens = create_model("unet", **KW, members=3)
    for i, m in enumerate(ens.members):
        _randomise_bn(m, 10 + i)
    ens.eval()
    fused = fuse_for_inference(ens)
    assert fused.folded_bn > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.rand(2, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ens(x), rtol=0, atol=1e-4)
