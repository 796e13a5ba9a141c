"""IndexFusion: the RGB network's logit fused with fixed water indices, values by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
from backend.models import build_model
from backend.models.fusion import IndexFusion
from backend.models.loading import load_model

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


class MeanOfRGB(nn.Module):
    """Stub network: water logit = mean of its three (normalised) input channels."""

    def forward(self, x):
        water = x.mean(1, keepdim=True)
        return torch.cat([torch.zeros_like(water), water], 1)


def _pixel(b2, b3, b4, b8, b11, b12) -> torch.Tensor:
    return torch.tensor([b2, b3, b4, b8, b11, b12], dtype=torch.float32).reshape(1, 6, 1, 1)


def test_evidence_and_decision_by_hand():
    model = IndexFusion(BANDS, MeanOfRGB(), [0.5] * 3, [0.25] * 3, gain=2.0)
    x = _pixel(0.1, 0.3, 0.2, 0.1, 0.05, 0.02)
    ev = model.evidence(x).flatten().tolist()
    # render: clip(2 x (B4, B3, B2)) = (0.4, 0.6, 0.2); normalised (-0.4, 0.4, -1.2); mean -0.4
    assert ev[0] == pytest.approx(-0.4, abs=1e-6)
    assert ev[1] == pytest.approx((0.3 - 0.1) / (0.3 + 0.1))  # NDWI 0.5
    assert ev[2] == pytest.approx((0.3 - 0.05) / (0.3 + 0.05))  # MNDWI 0.714...
    with torch.no_grad():
        model.weights.copy_(torch.tensor([1.0, 10.0, 2.0]))
        model.bias.fill_(-1.0)
    logits = model(x).flatten().tolist()
    assert logits[0] == 0.0
    assert logits[1] == pytest.approx(-0.4 + 5.0 + 2 * 0.25 / 0.35 - 1.0, abs=1e-5)


def test_render_clips_bright_pixels():
    model = IndexFusion(BANDS, MeanOfRGB(), [0.0] * 3, [1.0] * 3, gain=4.0)
    rgb = model.render(_pixel(0.5, 0.1, 0.3, 0.4, 0.3, 0.2)).flatten().tolist()
    assert rgb == pytest.approx([1.0, 0.4, 1.0])  # red B4 x4 and blue B2 x4 clip at 1


def test_missing_bands_and_unknown_index_are_refused():
    with pytest.raises(ValueError, match="B11"):
        IndexFusion(["B2", "B3", "B4", "B8"], MeanOfRGB(), [0.5] * 3, [0.25] * 3, 2.0)
    with pytest.raises(ValueError, match="unknown index"):
        IndexFusion(BANDS, MeanOfRGB(), [0.5] * 3, [0.25] * 3, 2.0, indices=["awei"])
    four = IndexFusion(["B2", "B3", "B4", "B8"], MeanOfRGB(), [0.5] * 3, [0.25] * 3, 2.0, ["ndwi"])
    assert four.evidence(torch.rand(1, 4, 2, 2)).shape == (1, 2, 2, 2)


def test_checkpoint_round_trip(tmp_path):
    kwargs = {
        "bands": BANDS,
        "rgb_arch": {"name": "unet", "kwargs": {"width": 0.0625, "in_channels": 3}},
        "rgb_mean": [0.5] * 3,
        "rgb_std": [0.25] * 3,
        "gain": 3.0,
        "indices": ["ndwi", "mndwi"],
    }
    torch.manual_seed(0)
    model = build_model("fusion", kwargs).eval()
    with torch.no_grad():
        model.weights.copy_(torch.tensor([0.7, 8.0, 3.0]))
    spec = InputSpec(bands=BANDS, scale=1e-4)
    save_checkpoint(build_checkpoint(model, "fusion", kwargs, spec), tmp_path / "f.pt")
    loaded, loaded_spec, meta = load_model(tmp_path / "f.pt")
    x = torch.rand(2, 6, 32, 32) * 0.3
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded_spec.bands == BANDS and meta["arch"]["name"] == "fusion"
    assert loaded.size_multiple == model.net.size_multiple
