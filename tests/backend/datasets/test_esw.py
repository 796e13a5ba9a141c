"""ESW RGB dataset loader, on a tiny generated copy of its layout (JPEG + truth GeoTIFF)."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from backend.core.errors import UserError
from backend.datasets.esw import ESW, acquisition_of, group_by_acquisition, read_scene_arrays
from tests.backend.rasters import write_raster

UTM33 = CRS.from_epsg(32633)
SCENES = [
    "S2A_L2A_20190125_N0211_R034_S1",
    "S2A_L2A_20190125_N0211_R034_S2",
    "S2B_L2A_20190831_N0213_R082_S1",
]


def write_jpeg(path: Path, data: np.ndarray) -> None:
    """uint8 (3, H, W) as a JPEG at quality 100, without georeference (as ESW ships it)."""
    c, h, w = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="JPEG", width=w, height=h, count=c, dtype="uint8", QUALITY=100
        ) as ds:
            ds.write(data)


def make_esw(root: Path, size: tuple[int, int] = (40, 48)) -> Path:
    """A tiny ESW folder: each scene's JPEG channels hold flat blue=30, green=120, red=220
    (B2 B3 B4 order), and its truth is water in the left half."""
    (root / "images").mkdir(parents=True)
    (root / "truth").mkdir()
    h, w = size
    bgr = np.stack([np.full(size, v, np.uint8) for v in (30, 120, 220)])
    truth = np.zeros((1, h, w), np.uint8)
    truth[0, :, : w // 2] = 1
    for scene in SCENES:
        write_jpeg(root / "images" / f"{scene}_B2B3B4.jpg", bgr)
        write_raster(root / "truth" / f"{scene}_truth.tif", truth, crs=UTM33)
    return root


@pytest.fixture
def esw_root(tmp_path):
    return make_esw(tmp_path / "esw-rgb")


def test_sample_is_true_colour_float_and_int64_mask(esw_root):
    ds = ESW(esw_root)
    assert ds.scenes == sorted(SCENES)
    sample = ds[0]
    image, mask = sample["image"], sample["mask"]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 48)
    assert mask.dtype == torch.int64 and mask.shape == (40, 48)
    # The JPEG holds blue, green, red; the sample is red, green, blue in 0..1.
    means = image.mean(dim=(1, 2)) * 255
    assert means.tolist() == pytest.approx([220, 120, 30], abs=2)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert mask[:, :24].eq(1).all() and mask[:, 24:].eq(0).all()
    assert sample["scene"] == SCENES[0]
    assert sample["acquisition"] == "S2A_20190125_N0211_R034"


def test_truth_keeps_its_crs(esw_root):
    _, _, georef = read_scene_arrays(esw_root, SCENES[0])
    assert georef["crs"].to_epsg() == 32633
    assert georef["transform"].a == 10.0


def test_acquisitions_group_scenes_of_one_date_and_orbit(esw_root):
    assert ESW(esw_root).acquisitions() == {
        "S2A_20190125_N0211_R034": SCENES[:2],
        "S2B_20190831_N0213_R082": SCENES[2:],
    }
    subset = ESW(esw_root, scenes=[SCENES[2]])
    assert subset.acquisitions() == {"S2B_20190831_N0213_R082": [SCENES[2]]}
    assert group_by_acquisition(SCENES[::-1]) == ESW(esw_root).acquisitions()


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"ESW not found: .*does not exist; get the Earth Surface"):
        ESW(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="lacks images/ and truth/"):
        ESW(tmp_path / "empty")


def test_missing_truth_and_unknown_scene_are_user_errors(esw_root):
    with pytest.raises(UserError, match="not in"):
        ESW(esw_root, scenes=["S2A_L2A_20200101_N0211_R001_S1"])
    (esw_root / "truth" / f"{SCENES[1]}_truth.tif").unlink()
    with pytest.raises(UserError, match=f"{SCENES[1]} has no truth"):
        ESW(esw_root)


def test_bad_scene_name_is_a_user_error():
    assert acquisition_of("S2B_L2A_20190831_N0213_R082_S3") == "S2B_20190831_N0213_R082"
    with pytest.raises(UserError, match="is not S2x_L2A_"):
        acquisition_of("scene_7")


def test_plot_shows_the_true_colour_the_mask_and_the_prediction(esw_root):
    pytest.importorskip("matplotlib")
    ds = ESW(esw_root)
    sample = ds[0]
    fig = ds.plot(sample, prediction=1 - sample["mask"])
    assert [ax.get_title() for ax in fig.axes] == ["image", "mask", "prediction"]
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, sample["image"].numpy().transpose(1, 2, 0))
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), 1 - sample["mask"].numpy())
    assert fig._suptitle.get_text() == SCENES[0]
    assert [ax.get_title() for ax in ds.plot(sample).axes] == ["image", "mask"]
