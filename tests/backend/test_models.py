"""Model zoo tests: every registered model gets the same checks (parametrised over the registry).

Parameter counts are the figures in docs/models.md; half width must have about a quarter of the
base parameters (channel counts halve, conv weights scale with C_in x C_out).
"""

from __future__ import annotations

import pytest
import torch

from backend.models import MODELS, create_model, list_models
from backend.models.blocks import count_parameters, resolve_width, scale_channels

NAMES = list_models()
TINY = 0.125

# (name, width) -> trainable parameters with in_channels=4, num_classes=2, heads=1.
PARAMETERS = {
    ("unet", "base"): 31_038_274,
    ("unet", "half"): 7_763_362,
    ("unet", TINY): 486_634,
}


def _tiny(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, width=TINY, **kwargs)


def _size(model: torch.nn.Module, minimum: int) -> int:
    """Smallest multiple of the model's size_multiple that is >= minimum."""
    m = model.size_multiple
    return -(-minimum // m) * m


def test_registry_is_a_plain_dict_of_constructors():
    assert isinstance(MODELS, dict)
    assert NAMES == sorted(MODELS)
    assert "unet" in NAMES


def test_unknown_name_lists_valid_models():
    with pytest.raises(ValueError) as info:
        create_model("segformer")
    message = str(info.value)
    assert "segformer" in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize("width", ["quarter", -1.0, 0, float("nan"), True, None])
def test_unknown_width_raises(width):
    with pytest.raises(ValueError, match="base"):
        create_model("unet", width=width)


@pytest.mark.parametrize("heads", [0, 3])
def test_bad_heads_raise(heads):
    with pytest.raises(ValueError, match="heads"):
        create_model("unet", width=TINY, heads=heads)


def test_width_resolution_and_channel_rounding():
    assert resolve_width("base") == 1.0
    assert resolve_width("half") == 0.5
    assert resolve_width("0.125") == 0.125
    assert resolve_width(2) == 2.0
    assert scale_channels(64, 0.5) == 32
    assert scale_channels(64, 0.125) == 8
    assert scale_channels(16, 0.125) == 4  # the minimum
    assert scale_channels(100, 0.3, divisor=8) == 32
    assert scale_channels(16, 0.01, minimum=6, divisor=4) == 8


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", ["base", "half", TINY])
def test_parameter_count_matches_docs(name, width):
    model = create_model(name, width=width)
    assert count_parameters(model) == PARAMETERS[(name, width)]


@pytest.mark.parametrize("name", NAMES)
def test_half_width_has_about_a_quarter_of_base_parameters(name):
    ratio = PARAMETERS[(name, "half")] / PARAMETERS[(name, "base")]
    assert 0.2 < ratio < 0.3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", ["half", TINY])
def test_forward_shape_256(name, width):
    torch.manual_seed(0)
    model = create_model(name, width=width).eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 4, 256, 256))
    assert isinstance(y, torch.Tensor)
    assert y.shape == (1, 2, 256, 256)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_256_base(name):
    torch.manual_seed(0)
    model = create_model(name, width="base").eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 4, 256, 256))
    assert y.shape == (1, 2, 256, 256)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_non_square(name):
    model = _tiny(name).eval()
    h = _size(model, 64)
    w = _size(model, h + 1)  # next valid size: a non-square input
    with torch.inference_mode():
        y = model(torch.randn(2, 4, h, w))
    assert y.shape == (2, 2, h, w)


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_finite_gradients_everywhere(name):
    model = _tiny(name, heads=2).train()
    s = model.size_multiple
    x = torch.randn(2, 4, s, s)
    target = torch.randint(0, 2, (2, s, s))
    out0, out1 = model(x)
    loss = torch.nn.functional.cross_entropy(out0, target) + out1.square().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_is_deterministic(name):
    model = _tiny(name).eval()
    s = model.size_multiple
    x = torch.randn(1, 4, s, s)
    with torch.inference_mode():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_two_heads_return_two_different_tensors(name):
    model = _tiny(name, heads=2).eval()
    s = model.size_multiple
    with torch.inference_mode():
        out = model(torch.randn(1, 4, s, s))
    assert isinstance(out, tuple) and len(out) == 2
    assert out[0].shape == out[1].shape == (1, 2, s, s)
    assert not torch.equal(out[0], out[1])


@pytest.mark.parametrize("name", NAMES)
def test_other_channel_and_class_counts(name):
    model = _tiny(name, in_channels=12, num_classes=3).eval()
    s = model.size_multiple
    with torch.inference_mode():
        y = model(torch.randn(1, 12, s, s))
    assert y.shape == (1, 3, s, s)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 4, s, s))


@pytest.mark.parametrize("name", NAMES)
def test_size_not_a_multiple_is_rejected(name):
    model = _tiny(name).eval()
    s = model.size_multiple
    with pytest.raises(ValueError, match=str(s)):
        model(torch.randn(1, 4, s + s // 2, s))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    a = _tiny(name, heads=2).eval()
    b = create_model(name, width=TINY, heads=2).eval()
    b.load_state_dict(a.state_dict())
    s = a.size_multiple
    x = torch.randn(1, 4, s, s)
    with torch.inference_mode():
        assert torch.equal(a(x)[0], b(x)[0])
