"""Model zoo tests: every registered model gets the same checks (parametrised over the registry).

Parameter counts are the figures in docs/models.md; half width must have about a quarter of the
base parameters (channel counts halve, conv weights scale with C_in x C_out).
"""

from __future__ import annotations

import pytest
import torch

from backend.models import MODELS, create_model, list_models, mixformer
from backend.models.blocks import (
    count_parameters,
    forward_flops,
    resolve_width,
    scale_channels,
)
from backend.models.mixformer import (
    MixFormerBlock,
    choose_heads,
    relative_position_index,
    window_merge,
    window_partition,
)

NAMES = list_models()
TINY = 0.125

# (name, width) -> trainable parameters with in_channels=4, num_classes=2, heads=1.
PARAMETERS = {
    ("deepunet", "base"): 464_386,
    ("deepunet", "half"): 119_362,
    ("deepunet", TINY): 7_810,
    # the ImageNet Lite0 encoder (3.8 M with its head) is fixed; width scales the decoder
    ("lite0_unet", "base"): 7_822_338,
    ("lite0_unet", "half"): 5_302_482,
    ("lite0_unet", TINY): 3_799_098,
    ("munet", "base"): 55_090_971,
    ("munet", "half"): 13_818_283,
    ("munet", TINY): 887_815,
    ("senet", "base"): 1_155_714,
    ("senet", "half"): 289_858,
    ("senet", TINY): 18_466,
    ("unet", "base"): 31_038_274,
    ("unet", "half"): 7_763_362,
    ("unet", TINY): 486_634,
}

# FLOPs of one 256 x 256 forward pass at width 0.125, heads=1 (docs/models.md).
TINY_FLOPS = {
    "deepunet": 234_870_272,
    "lite0_unet": 1_348_366_336,
    "munet": 2_200_683_840,
    "senet": 185_073_664,
    "unet": 1_541_406_720,
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
    assert NAMES == ["deepunet", "lite0_unet", "munet", "senet", "unet"]


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


@pytest.mark.parametrize("name", [n for n in NAMES if n != "lite0_unet"])  # fixed encoder
def test_half_width_has_about_a_quarter_of_base_parameters(name):
    ratio = PARAMETERS[(name, "half")] / PARAMETERS[(name, "base")]
    assert 0.2 < ratio < 0.3


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread avoids spinning on the 2 shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [pytest.param("half", marks=pytest.mark.slow), TINY])
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


def _conv_inputs(model: torch.nn.Module, size: int) -> list[int]:
    """in_channels of every Conv2d in the order the forward pass calls them."""
    seen: list[int] = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: seen.append(mod.in_channels))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, 4, size, size))
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize(
    ("width", "table1"),
    [
        ("half", [4, 16] + [32] * 2 + [64] * 7 + [32] * 2 + [16] * 2),
        ("base", [4, 32] + [64] * 2 + [128] * 7 + [64] * 2 + [32] * 2),
    ],
)
def test_senet_layer_inputs_are_table1(width, table1):
    assert _conv_inputs(create_model("senet", width=width), 32) == table1


def test_senet_second_head_is_the_edge_branch():
    one = create_model("senet", width="half")
    two = create_model("senet", width="half", heads=2)
    assert one.edge_head is None
    extra = count_parameters(two) - count_parameters(one)
    assert extra == count_parameters(two.edge_head) > 0


@pytest.mark.parametrize(("width", "f"), [("half", 16), ("base", 32)])
def test_deepunet_layer_inputs_follow_table1(width, f):
    # Table I: [4, (f, 2f)x7, (2f, f)x7, 32]; the conv f -> 32 before the head is documented.
    expected = [4] + [f, 2 * f] * 7 + [2 * f, f] * 7 + [f, 32]
    assert _conv_inputs(create_model("deepunet", width=width), 128) == expected


@pytest.mark.parametrize(
    ("name", "width", "channels"),
    [
        ("munet", "half", [32, 64, 128, 256, 512]),
        ("munet", "base", [64, 128, 256, 512, 1024]),
        ("munet", TINY, [8, 16, 32, 64, 128]),
        ("unet", "half", [32, 64, 128, 256, 512]),
        ("unet", "base", [64, 128, 256, 512, 1024]),
        ("senet", "half", [16, 32, 64]),
        ("deepunet", "half", [16, 32, 32]),
        ("deepunet", TINY, [4, 8, 8]),
        ("lite0_unet", "half", [128, 64, 32, 16, 8]),  # decoder, 1/16 .. 1/1
    ],
)
def test_stage_channels(name, width, channels):
    assert create_model(name, width=width).channels == channels


def test_munet_has_mixformer_blocks_and_amm_where_the_paper_puts_them():
    model = create_model("munet", width="half")
    blocks = [n for n, m in model.named_modules() if isinstance(m, MixFormerBlock)]
    assert [b.split(".")[0] for b in blocks] == ["enc3", "enc3", "enc4", "enc4", "dec3", "dec3"]
    assert model.enc4[1].attn.heads == 8
    assert model.amm1.channel[1].in_channels == 64  # AMM on the 1/2 skip


def test_relative_position_index_by_hand():
    idx = relative_position_index(2)  # tokens (0,0) (0,1) (1,0) (1,1); table is 3 x 3
    assert idx.shape == (4, 4)
    assert idx[0, 0] == idx[3, 3] == 4  # offset (0, 0) is the centre of the table
    assert idx[0, 3] == 0  # (0,0) - (1,1) = (-1, -1)
    assert idx[3, 0] == 8  # (+1, +1)
    assert idx[1, 2] == 2  # (0,1) - (1,0) = (-1, +1)


def test_choose_heads():
    assert choose_heads(128) == 8
    assert choose_heads(32) == 8
    assert choose_heads(16) == 4
    assert choose_heads(12) == 2
    assert choose_heads(4) == 1


def test_window_partition_round_trip():
    x = torch.arange(2 * 16 * 24 * 3, dtype=torch.float32).view(2, 16, 24, 3)
    windows = window_partition(x, 8)
    assert windows.shape == (2 * 2 * 3, 64, 3)
    assert torch.equal(windows[1, 0], x[0, 0, 8])  # second window of the first row
    assert torch.equal(window_merge(windows, 8, 2, 16, 24), x)


def test_mixformer_windows_are_local():
    # Non-shifted windows: pixels well inside the first window ignore a change in another
    # window (the depthwise conv reaches one pixel, the attention only its own window).
    torch.manual_seed(0)
    block = MixFormerBlock(32, window=8, heads=8).eval()
    x = torch.randn(1, 32, 16, 16)
    y = x.clone()
    y[..., 8:, 8:] += 1.0
    with torch.inference_mode():
        a, b = block(x), block(y)
    assert torch.allclose(a[..., :7, :7], b[..., :7, :7], atol=1e-6)
    assert not torch.allclose(a[..., 8:, 8:], b[..., 8:, 8:])


def test_mixformer_padding_is_masked(monkeypatch):
    # 12 x 12 is padded to 16 x 16. Filling the padding with noise instead of zeros must not
    # change any real pixel: padded keys are masked, pooled means skip them, the conv sees 0.
    torch.manual_seed(0)
    block = MixFormerBlock(32, window=8, heads=8).eval()
    x = torch.randn(1, 32, 12, 12)
    with torch.inference_mode():
        clean = block(x)
        original = mixformer.pad_to_multiple

        def noisy_pad(t, multiple):
            padded, ph, pw = original(t, multiple)
            noise = torch.randn_like(padded) * 5.0
            noise[..., : t.shape[-2], : t.shape[-1]] = 0.0
            return padded + noise, ph, pw

        monkeypatch.setattr(mixformer, "pad_to_multiple", noisy_pad)
        noisy = block(x)
    assert clean.shape == (1, 32, 12, 12)
    assert torch.allclose(clean, noisy, atol=1e-5)


def test_munet_size_not_a_multiple_of_the_window():
    # 80 x 80: the 1/8 and 1/16 maps are 10 and 5 px, not multiples of the 8 px window.
    model = _tiny("munet").eval()
    assert 80 % model.size_multiple == 0
    with torch.inference_mode():
        y = model(torch.randn(1, 4, 80, 80))
    assert y.shape == (1, 2, 80, 80)
    assert torch.isfinite(y).all()


def test_munet_trains_with_a_single_window_and_batch_one():
    # 64 x 64, batch 1: the 1/16 map is 4 x 4, one (padded) window -> one value per channel
    # in the channel interaction's BatchNorm.
    model = _tiny("munet", heads=2).train()
    out0, out1 = model(torch.randn(1, 4, 64, 64))
    (out0.mean() + out1.mean()).backward()
    assert torch.isfinite(model.enc4[1].attn.channel_reduce.weight.grad).all()


def test_forward_flops_of_one_conv_by_hand():
    # 16 x 16 outputs x 8 channels x (4 x 3 x 3) multiply-adds x 2 FLOPs
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    assert forward_flops(conv, 16, 16) == 16 * 16 * 8 * 4 * 9 * 2


@pytest.mark.parametrize("name", NAMES)
def test_tiny_flops_match_docs(name):
    assert forward_flops(create_model(name, width=TINY)) == TINY_FLOPS[name]


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_forward(name):
    # The segmentation engine runs under autocast on CUDA; CPU bf16 autocast exercises the same
    # dtype paths (attention masking with -inf, mixed-precision gating).
    model = _tiny(name, heads=2).eval()
    s = model.size_multiple
    h = s * max(1, 80 // s)  # 80 x 80 for MU-Net: padded windows
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out0, out1 = model(torch.randn(1, 4, h, h))
    assert out0.shape == out1.shape == (1, 2, h, h)
    assert torch.isfinite(out0.float()).all() and torch.isfinite(out1.float()).all()
