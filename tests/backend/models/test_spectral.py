"""The fixed spectral-index input layer (backend/models/spectral.py) and create_model's option."""

from __future__ import annotations

import pytest
import torch

from backend.core.checkpoint import InputSpec, build_checkpoint, read_checkpoint, save_checkpoint
from backend.models import create_model, list_models
from backend.models.loading import load_model
from backend.models.spectral import (
    SpectralIndices,
    SpectralOptions,
    WithSpectralIndices,
    all_pairs,
)

EPS = 1e-3


def _pixel(*bands: float) -> torch.Tensor:
    return torch.tensor(bands, dtype=torch.float32).view(1, len(bands), 1, 1)


def test_all_pairs_of_four_bands():
    assert all_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert SpectralIndices(4).out_channels == 10
    assert SpectralIndices(3).out_channels == 6


def test_hand_computed_normalised_differences_on_one_pixel():
    # B2 0.06, B3 0.05, B4 0.03, B8 0.01: clear water
    out = SpectralIndices(4)(_pixel(0.06, 0.05, 0.03, 0.01))
    assert out.shape == (1, 10, 1, 1)
    got = out.flatten().tolist()
    assert got[:4] == pytest.approx([0.06, 0.05, 0.03, 0.01])  # raw bands pass through
    expected = [
        (0.06 - 0.05) / (0.11 + EPS),  # B2, B3
        (0.06 - 0.03) / (0.09 + EPS),  # B2, B4
        (0.06 - 0.01) / (0.07 + EPS),  # B2, B8
        (0.05 - 0.03) / (0.08 + EPS),  # B3, B4
        (0.05 - 0.01) / (0.06 + EPS),  # B3, B8 = NDWI: 0.04 / 0.061 = 0.6557
        (0.03 - 0.01) / (0.04 + EPS),  # B4, B8
    ]
    assert got[4:] == pytest.approx(expected, rel=1e-5)
    assert got[8] == pytest.approx(0.655738, rel=1e-5)


def test_chosen_pairs_and_brightness_invariance():
    layer = SpectralIndices(4, pairs=[[1, 3], [3, 1]])  # NDWI and its negative
    x = _pixel(0.02, 0.30, 0.10, 0.10)
    ndwi = layer(x)[0, 4:, 0, 0]
    assert ndwi.tolist() == pytest.approx([0.2 / 0.401, -0.2 / 0.401], rel=1e-5)
    # 3 x brighter: the index barely moves (only through eps), the raw bands scale
    brighter = layer(3 * x)[0, 4:, 0, 0]
    assert brighter.tolist() == pytest.approx([0.6 / 1.201, -0.6 / 1.201], rel=1e-5)
    assert abs(brighter[0] - ndwi[0]) < 1e-3


def test_zeros_negatives_nan_and_inf_give_finite_indices_in_range():
    x = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # nodata filled with 0: every index 0
            [-0.05, 0.02, 0.0, -0.01],  # negatives clamped to 0
            [float("nan"), 0.02, float("inf"), float("-inf")],
            [5.0, 0.0, 1e-9, 0.3],  # saturated / tiny values
        ]
    ).T.reshape(1, 4, 1, 4)
    idx = SpectralIndices(4).indices(x)
    assert torch.isfinite(idx).all() and idx.abs().max() <= 1
    assert idx[0, :, 0, 0].tolist() == [0.0] * 6
    # pixel 1 -> (0, 0.02, 0, 0): B3 against the others is 0.02 / 0.021, B2/B4/B8 pairs are 0
    assert idx[0, :, 0, 1].tolist() == pytest.approx(
        [-0.02 / 0.021, 0, 0, 0.02 / 0.021, 0.02 / 0.021, 0], abs=1e-6
    )
    # pixel 2 -> NaN and +-inf become 0: (0, 0.02, 0, 0), the same as pixel 1
    assert idx[0, :, 0, 2].tolist() == pytest.approx(idx[0, :, 0, 1].tolist())


def test_gradient_is_finite_even_at_zero_and_nodata():
    x = torch.tensor([0.0, 0.05, -0.01, 0.2, 0.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 2)
    x.requires_grad_(True)
    SpectralIndices(4)(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_layer_has_no_weights_and_checks_its_input():
    layer = SpectralIndices(4)
    assert list(layer.parameters()) == [] and layer.state_dict() == {}
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        layer(torch.zeros(1, 3, 4, 4))
    for bad in ([[0, 0]], [[0, 4]], [[1]], []):
        with pytest.raises(ValueError, match="pair"):
            SpectralIndices(4, pairs=bad)
    with pytest.raises(ValueError, match="eps"):
        SpectralIndices(4, eps=0)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_accepts_the_option(name):
    torch.manual_seed(0)
    plain = create_model(name, width=0.125)
    model = create_model(name, width=0.125, spectral=SpectralOptions(), heads=2)
    assert isinstance(model, WithSpectralIndices)
    assert model.size_multiple == plain.size_multiple and model.arch_name == name
    # only the first layer grows: 6 more input channels
    extra = sum(p.numel() for p in model.parameters()) - sum(
        p.numel() for p in create_model(name, width=0.125, heads=2).parameters()
    )
    assert extra > 0
    side = max(32, model.size_multiple)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 4, side, side) * 0.3)
    assert isinstance(out, tuple) and len(out) == 2
    assert all(o.shape == (1, 2, side, side) and torch.isfinite(o).all() for o in out)
    assert not isinstance(create_model(name, width=0.125, spectral=None), WithSpectralIndices)


def test_explicit_pairs_and_three_bands():
    model = create_model("unet", width=0.0625, in_channels=3, spectral={"pairs": [[0, 2]]})
    assert model.spectral.pairs == [(0, 2)] and model.spectral.out_channels == 4
    first_conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 4
    with pytest.raises(ValueError, match="pair"):
        create_model("unet", width=0.0625, in_channels=3, spectral={"pairs": [[0, 3]]})


def test_checkpoint_round_trip_rebuilds_the_spectral_layer(tmp_path):
    torch.manual_seed(1)
    kwargs = {"width": 0.0625, "in_channels": 4, "num_classes": 2, "heads": 1}
    kwargs["spectral"] = SpectralOptions().to_dict()
    model = create_model("unet", **kwargs).eval()
    path = save_checkpoint(build_checkpoint(model, "unet", kwargs, InputSpec()), tmp_path / "s.pt")
    ckpt = read_checkpoint(path)  # weights_only=True inside
    assert ckpt["arch"]["kwargs"]["spectral"]["mode"] == "all"
    assert all(k.startswith("net.") for k in ckpt["state_dict"])
    loaded, spec, _ = load_model(path)
    assert isinstance(loaded, WithSpectralIndices)
    x = torch.rand(2, 4, 32, 32) * 0.4
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_spectral_options_validate_and_round_trip_through_their_dict():
    options = SpectralOptions("anchored", pairs=[[0, 1], (2, 3)], anchor_bound=1)
    assert options.pairs == ((0, 1), (2, 3)) and options.anchor_bound == 1.0
    assert options.to_dict() == {
        "mode": "anchored",
        "pairs": [[0, 1], [2, 3]],
        "index_pair": [1, 3],  # NDWI of B2 B3 B4 B8
        "index_gain": 10.0,
        "anchor_bound": 1.0,
    }
    assert SpectralOptions.parse(options.to_dict()) == options
    assert SpectralOptions.parse({}) == SpectralOptions() and SpectralOptions().mode == "all"
    assert SpectralOptions.parse(None) is None and SpectralOptions.parse(options) is options
    with pytest.raises(
        ValueError, match="unknown spectral option.*'spectral_indices'.*valid: mode"
    ):
        SpectralOptions.parse({"spectral_indices": True})
    with pytest.raises(ValueError, match="must be two band indices"):
        SpectralOptions(pairs=[(0, 1, 2)])
    with pytest.raises(ValueError, match="must be two band indices"):
        SpectralOptions(index_pair=("B3", "B8"))
    with pytest.raises(ValueError, match="index_gain must be positive"):
        SpectralOptions(index_gain=-1)
    with pytest.raises(ValueError, match="anchor_bound must be positive"):
        SpectralOptions(anchor_bound=True)


def test_indices_only_mode_drops_the_bands_and_is_brightness_invariant():
    layer = SpectralIndices(4, keep_input=False)
    x = _pixel(0.06, 0.05, 0.03, 0.01)
    out = layer(x)
    assert layer.out_channels == 6 and out.shape == (1, 6, 1, 1)
    assert out.flatten().tolist() == pytest.approx(layer.indices(x).flatten().tolist())
    # 10 x brighter pixel: indices move only through eps (< 3 %), nothing else is seen
    assert torch.allclose(layer(10 * x), out, rtol=0.03)
    model = create_model("senet", width=0.125, spectral={"mode": "only"})
    assert model.spectral.out_channels == 6 and not model.spectral.keep_input
    first_conv = next(m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 6
    with pytest.raises(ValueError, match="spectral mode 'some': use one of 'all', 'only'"):
        create_model("unet", width=0.125, spectral={"mode": "some"})


def test_residual_mode_adds_a_linear_map_of_the_indices_to_head_0(tmp_path):
    torch.manual_seed(2)
    kwargs = {"width": 0.0625, "heads": 2, "spectral": {"mode": "residual"}}
    model = create_model("unet", **kwargs).eval()
    head = model.index_head
    assert (head.in_channels, head.out_channels) == (6, 2)
    assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0  # starts as the net alone
    x = torch.rand(1, 4, 32, 32) * 0.3
    with torch.no_grad():
        base = model.net(model.spectral(x))
        assert all(torch.equal(a, b) for a, b in zip(model(x), base, strict=True))
        # water logit += 2 x NDWI (pair 4 = B3, B8), bias -1 on land
        head.weight[1, 4] = 2.0
        head.bias[0] = -1.0
        out = model(x)
    ndwi = model.spectral.indices(x)[:, 4]
    assert torch.allclose(out[0][:, 1], base[0][:, 1] + 2 * ndwi, atol=1e-6)
    assert torch.allclose(out[0][:, 0], base[0][:, 0] - 1, atol=1e-6)
    assert torch.equal(out[1], base[1])  # head 1 untouched
    path = save_checkpoint(
        build_checkpoint(model, "unet", kwargs, InputSpec()), tmp_path / "residual.pt"
    )
    loaded, _, _ = load_model(path)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], out[0])
