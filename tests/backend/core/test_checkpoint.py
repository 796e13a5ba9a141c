"""Checkpoint format: atomic writes, weights_only loading, clear errors for bad files."""

import os
import pickle

import numpy as np
import pytest
import torch

from backend.core.checkpoint import (
    FORMAT,
    InputSpec,
    read_checkpoint,
    save_checkpoint,
    sha256_of,
)
from backend.core.errors import UserError


def _minimal() -> dict:
    return {
        "format": FORMAT,
        "format_version": 1,
        "arch": {"name": "unet", "kwargs": {"width": 0.125}},
        "state_dict": {"w": torch.ones(2, 2)},
        "bands": ["B2", "B3", "B4", "B8"],
        "scale": 1e-4,
        "offset": 0.0,
        "rng": {"numpy": list(range(5))},
    }


def test_round_trip_and_atomic_write(tmp_path):
    path = save_checkpoint(_minimal(), tmp_path / "sub" / "m.pt")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"], "no temp file left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask, "readable like any file the user writes"
    ckpt = read_checkpoint(path)
    assert ckpt["bands"] == ["B2", "B3", "B4", "B8"]
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2, 2))


def test_sha256_mismatch_is_a_user_error(tmp_path):
    path = save_checkpoint(_minimal(), tmp_path / "m.pt")
    good = sha256_of(path)
    assert read_checkpoint(path, expected_sha256=good)["format"] == FORMAT
    with pytest.raises(UserError, match="corrupt"):
        read_checkpoint(path, expected_sha256="0" * 64)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint carrying arbitrary objects cannot run code."""
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Evil()}, path)
    with pytest.raises(UserError, match="cannot read model file"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot read model file"),
        (b"not a checkpoint at all", "cannot read model file"),
        (pickle.dumps([1, 2, 3]), "cannot read model file|not a WaterSeg checkpoint"),
    ],
)
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as err:
        read_checkpoint(path)
    assert "\n" not in str(err.value)


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(_minimal(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot read model file"):
        read_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a WaterSeg checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    future = _minimal() | {"format_version": 99}
    save_checkpoint(future, tmp_path / "future.pt")
    with pytest.raises(UserError, match="newer"):
        read_checkpoint(tmp_path / "future.pt")


def test_input_spec_normalise_by_hand():
    spec = InputSpec(bands=["B3", "B8"], scale=1e-4, offset=0.0, mean=[0.1, 0.2], std=[0.5, 2.0])
    raw = np.array([[[1000, 3000]], [[2000, 6000]]], dtype=np.uint16)  # (C=2, H=1, W=2)
    out = spec.normalise(raw)
    # band 0: (0.1 - 0.1)/0.5 = 0, (0.3 - 0.1)/0.5 = 0.4; band 1: (0.2-0.2)/2 = 0, (0.6-0.2)/2 = 0.2
    np.testing.assert_allclose(out, [[[0.0, 0.4]], [[0.0, 0.2]]], atol=1e-6)
    assert out.dtype == np.float32
    # L2A baseline >= 04.00: DN 2000 with offset -1000 is reflectance 0.1
    plain = InputSpec(bands=["B2"])
    np.testing.assert_allclose(plain.normalise(np.array([[[2000]]]), extra_offset=-1000), 0.1)
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_random_bytes_are_a_user_error(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="cannot read model file"):
        read_checkpoint(path)


def test_built_checkpoint_loads_with_weights_only(tmp_path):
    from backend.core.checkpoint import build_checkpoint
    from backend.models import create_model
    from backend.models.loading import load_model

    model = create_model("unet", width=0.125)
    ckpt = build_checkpoint(model, "unet", {"width": 0.125}, InputSpec(), loss="ce")
    path = save_checkpoint(ckpt, tmp_path / "m.pt")
    loaded, spec, meta = load_model(path)
    assert spec.bands == ["B2", "B3", "B4", "B8"]
    assert meta["arch"]["name"] == "unet" and "state_dict" not in meta
    x = torch.rand(1, 4, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), model.eval()(x))


# Checkpoints written before SpectralOptions (the bundled waterseg-default.pt and
# waterseg-rgbn.pt among them) store the index layer as flat arch kwargs.
OLD_SPECTRAL_FORMS = [
    ({"spectral_indices": True}, {"mode": "all"}),
    ({"spectral_indices": "only"}, {"mode": "only"}),
    ({"spectral_indices": [[1, 3], [0, 2]]}, {"pairs": [[1, 3], [0, 2]]}),
    ({"spectral_indices": "residual"}, {"mode": "residual"}),
    (
        {"spectral_indices": "ndwi-init", "index_init_pair": [3, 1], "index_init_gain": 20.0},
        {"mode": "ndwi-init", "index_pair": [3, 1], "index_gain": 20.0},
    ),
    (
        {"spectral_indices": "ndwi-anchored", "index_init_pair": [1, 2], "anchor_bound": 0.5},
        {"mode": "ndwi-anchored", "index_pair": [1, 2], "anchor_bound": 0.5},
    ),
    (
        {"spectral_indices": "anchored", "anchor_bound": 0.25},
        {"mode": "anchored", "anchor_bound": 0.25},
    ),
]


@pytest.mark.parametrize(("old", "spectral"), OLD_SPECTRAL_FORMS)
def test_a_checkpoint_with_the_old_flat_spectral_kwargs_loads_the_same_model(
    tmp_path, old, spectral
):
    from backend.models import create_model, upgrade_kwargs
    from backend.models.loading import load_model

    base = {"width": 0.0625, "in_channels": 4, "num_classes": 2, "heads": 1}
    assert upgrade_kwargs({**base, **old}) == {**base, "spectral": spectral}
    torch.manual_seed(0)
    model = create_model("unet", **base, spectral=spectral).eval()
    state = model.state_dict()
    for value in state.values():  # trained-like: every weight and buffer non-trivial
        if value.is_floating_point():
            value.copy_(torch.rand_like(value) * 0.5 + 0.1)
    ckpt = {**_minimal(), "arch": {"name": "unet", "kwargs": {**base, **old}}, "state_dict": state}
    loaded, _, meta = load_model(save_checkpoint(ckpt, tmp_path / "old.pt"))
    assert meta["arch"]["kwargs"] == {**base, **old}  # read as it is stored, never rewritten
    x = torch.rand(2, 4, 32, 32) * 0.4
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_upgrade_kwargs_by_hand():
    from backend.models import upgrade_kwargs

    assert upgrade_kwargs({"width": 0.5}) == {"width": 0.5}
    new = {"width": 0.5, "spectral": {"mode": "residual"}}
    assert upgrade_kwargs(new) == new and upgrade_kwargs(new) is not new
    # no layer: the options that only mean something with one were always ignored
    for off in (False, None):
        assert upgrade_kwargs({"spectral_indices": off, "anchor_bound": 0.5}) == {}
    assert upgrade_kwargs({"members": 3, "spectral_indices": True}) == {
        "members": 3,
        "spectral": {"mode": "all"},
    }
    with pytest.raises(ValueError, match="keep one form"):
        upgrade_kwargs({"spectral": {"mode": "all"}, "spectral_indices": True})


def test_an_unbuildable_spectral_option_is_a_one_line_user_error(tmp_path):
    from backend.models.loading import load_model

    ckpt = {**_minimal(), "arch": {"name": "unet", "kwargs": {"spectral_indices": "some"}}}
    with pytest.raises(UserError, match="cannot be built: spectral mode 'some'"):
        load_model(save_checkpoint(ckpt, tmp_path / "bad.pt"))


def test_spectral_options_are_stored_as_a_plain_dict(tmp_path):
    from backend.core.checkpoint import build_checkpoint
    from backend.models import SpectralOptions, create_model
    from backend.models.loading import load_model

    options = SpectralOptions("residual", index_pair=(0, 3))
    model = create_model("unet", width=0.0625, spectral=options).eval()
    kwargs = {"width": 0.0625, "spectral": options}
    path = save_checkpoint(build_checkpoint(model, "unet", kwargs, InputSpec()), tmp_path / "m.pt")
    loaded, _, meta = load_model(path)  # weights_only: no dataclass in the file
    assert meta["arch"]["kwargs"]["spectral"] == options.to_dict()
    assert SpectralOptions.parse(meta["arch"]["kwargs"]["spectral"]) == options
    x = torch.rand(1, 4, 32, 32) * 0.4
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))
