"""SNOWED dataset and split, on the real samples and on broken copies."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from backend.core.errors import UserError
from backend.datasets import (
    SNOWED,
    band_indices,
    list_samples,
    make_split,
    read_metadata,
    read_split,
    split_sizes,
    write_split,
)

SAMPLE_IDS = ["sample_0001", "sample_0002", "sample_0003", "sample_0004", "sample_0006"]


@pytest.fixture
def snowed_copy(snowed_sample, tmp_path):
    """A writable copy of the five real samples (to break)."""
    dst = tmp_path / "SNOWED"
    shutil.copytree(snowed_sample, dst)
    return dst


def test_reads_real_samples_with_default_bands(snowed_sample):
    ds = SNOWED(snowed_sample)
    assert ds.ids == SAMPLE_IDS
    sample = ds[0]
    assert sample["id"] == "sample_0001"
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (4, 256, 256)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (256, 256)
    raw = np.load(snowed_sample / "sample_0001" / "sample_2A.npy")
    label = np.load(snowed_sample / "sample_0001" / "label.npy")
    expected = raw[:, :, [1, 2, 3, 7]].transpose(2, 0, 1).astype(np.float32) * np.float32(1e-4)
    np.testing.assert_array_equal(sample["image"].numpy(), expected)
    np.testing.assert_array_equal(sample["mask"].numpy(), label)
    # water fraction of sample_0001 measured from the file: 0.8174
    assert float(sample["mask"].float().mean()) == pytest.approx(0.817413, abs=1e-6)


def test_bands_by_name(snowed_sample):
    assert band_indices(["B2", "B3", "B4", "B8"]) == [1, 2, 3, 7]
    assert band_indices(["b8a", "B11", "B12", "B1"]) == [8, 10, 11, 0]
    ds = SNOWED(snowed_sample, ids=["sample_0004"], bands=["B11", "B8A"])
    raw = np.load(snowed_sample / "sample_0004" / "sample_2A.npy")
    np.testing.assert_allclose(ds[0]["image"][0].numpy(), raw[:, :, 10] * 1e-4, rtol=1e-6)
    np.testing.assert_allclose(ds[0]["image"][1].numpy(), raw[:, :, 8] * 1e-4, rtol=1e-6)
    with pytest.raises(UserError, match="unknown SNOWED band.*B10"):
        band_indices(["B2", "B10"])
    with pytest.raises(UserError, match="repeats"):
        band_indices(["B2", "B2"])


def test_missing_and_empty_folders_say_where_to_get_snowed(tmp_path):
    with pytest.raises(UserError, match=r"does not exist.*download SNOWED.*--data"):
        SNOWED(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no SNOWED samples under .*empty.*--data"):
        SNOWED(tmp_path / "empty")


def test_missing_label_names_the_file(snowed_copy):
    (snowed_copy / "sample_0003" / "label.npy").unlink()
    with pytest.raises(UserError, match=r"sample_0003 has no label\.npy"):
        list_samples(snowed_copy)


def test_wrong_shape_and_dtype_name_the_file(snowed_copy):
    img = np.load(snowed_copy / "sample_0002" / "sample_2A.npy")
    np.save(snowed_copy / "sample_0002" / "sample_2A.npy", img[:, :, :4])
    ds = SNOWED(snowed_copy)  # folder layout is fine; the content is checked on read
    ds[0]
    with pytest.raises(UserError, match=r"sample_0002.sample_2A\.npy has shape \(256, 256, 4\)"):
        ds[1]
    np.save(snowed_copy / "sample_0002" / "sample_2A.npy", img.astype(np.float32))
    with pytest.raises(UserError, match="dtype float32"):
        ds[1]


def test_bad_label_values_and_corrupt_file(snowed_copy):
    label = np.load(snowed_copy / "sample_0004" / "label.npy")
    label[0, 0] = 7
    np.save(snowed_copy / "sample_0004" / "label.npy", label)
    ds = SNOWED(snowed_copy, ids=["sample_0004", "sample_0006"])
    with pytest.raises(UserError, match=r"sample_0004.label\.npy holds values \[7\]"):
        ds[0]
    (snowed_copy / "sample_0006" / "sample_2A.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UserError, match=r"cannot read .*sample_0006.sample_2A\.npy"):
        ds[1]


def test_unknown_split_id_is_a_user_error(snowed_sample):
    with pytest.raises(UserError, match="'sample_9999'"):
        SNOWED(snowed_sample, ids=["sample_0001", "sample_9999"])


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_metadata_is_read_as_bytes_never_unpickled(snowed_copy, monkeypatch):
    monkeypatch.chdir(snowed_copy)
    product = "S2A_MSIL2A_20190608T212531_N0212_R043_T06VUM_20190608T232546.SAFE"
    payload = pickle.dumps({"product": product, "trap": _Boom()})
    (snowed_copy / "sample_0001" / "metadata.pkl").write_bytes(payload)
    assert read_metadata(snowed_copy / "sample_0001") == {"tile": "T06VUM", "date": "20190608"}
    assert not (snowed_copy / "PWNED").exists()
    assert read_metadata(snowed_copy / "sample_0002") == {"tile": None, "date": None}


def test_split_sizes():
    assert split_sizes(4334) == {"train": 2730, "val": 1171, "test": 433}
    assert split_sizes(5) == {"train": 3, "val": 1, "test": 1}
    assert split_sizes(100) == {"train": 63, "val": 27, "test": 10}
    assert split_sizes(2) == {"train": 1, "val": 1, "test": 0}
    assert split_sizes(1) == {"train": 1, "val": 0, "test": 0}


def test_split_is_seeded_disjoint_and_complete():
    ids = [f"s{i:04d}" for i in range(4334)]
    a, b, c = make_split(ids, seed=1), make_split(ids, seed=1), make_split(ids, seed=2)
    assert a == b and a != c
    assert [len(a[k]) for k in ("train", "val", "test")] == [2730, 1171, 433]
    assert sorted(a["train"] + a["val"] + a["test"]) == ids


def test_grouped_split_keeps_tiles_together():
    ids = [f"s{i:03d}" for i in range(200)]
    groups = {i: f"T{n % 23:02d}ABC" for n, i in enumerate(ids)}
    split = make_split(ids, seed=0, groups=groups)
    assert split["grouped_by"] == "tile"
    where = {}
    for name in ("train", "val", "test"):
        for i in split[name]:
            assert where.setdefault(groups[i], name) == name
    assert sorted(split["train"] + split["val"] + split["test"]) == ids
    # 23 tiles of ~9 samples: the sizes approximate 126/54/20
    assert abs(len(split["train"]) - 126) <= 9 and len(split["test"]) >= 9


def test_split_file_roundtrip_and_checks(tmp_path):
    split = make_split(SAMPLE_IDS, seed=3)
    path = write_split(split, tmp_path / "split.json")
    assert read_split(path) == split
    bad = dict(split, val=split["val"] + split["train"][:1])
    write_split(bad, tmp_path / "bad.json")
    with pytest.raises(UserError, match="in two subsets"):
        read_split(tmp_path / "bad.json")


def test_plot_shows_red_green_blue_stretched_and_the_mask(snowed_sample):
    pytest.importorskip("matplotlib")
    ds = SNOWED(snowed_sample)
    sample = ds[0]
    fig = ds.plot(sample, title="first")
    assert [ax.get_title() for ax in fig.axes] == ["image", "mask"]
    rgb = np.asarray(fig.axes[0].images[0].get_array())
    # bands B2 B3 B4 B8 are loaded: the image is B4 B3 B2, divided by its 98th percentile
    image = sample["image"].numpy()
    expected = image[[2, 1, 0]].transpose(1, 2, 0)
    expected = np.clip(expected / np.percentile(expected, 98), 0, 1)
    np.testing.assert_allclose(rgb, expected, rtol=1e-6)
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), sample["mask"].numpy())
    assert fig._suptitle.get_text() == "first"
