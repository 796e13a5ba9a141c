"""Which torch device runs: "auto", "cpu", "cuda" without a GPU, an unknown name."""

import pytest
import torch

from backend.core.device import choose_device
from backend.core.errors import UserError


def test_device_choice():
    assert choose_device("cpu") == "cpu"
    assert choose_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            choose_device("cuda")
    with pytest.raises(UserError):
        choose_device("tpu")
