"""Earth Surface Water (ESW) RGB renders with hand-drawn water masks, as a PyTorch dataset.

Luo X., Tong X., Hu Z., "An applicable and automatic method for earth surface water mapping
based on multispectral images", International Journal of Applied Earth Observation and
Geoinformation 103:102472, 2021; data on Zenodo, https://doi.org/10.5281/zenodo.5205674.
The masks are hand-labelled. Contains modified Copernicus Sentinel data. Check the licence on
the Zenodo record before redistributing the data; never commit it to this repository.

On-disk format (the RGB excerpt, see shared/data/README.md)::

    esw-rgb/
      images/<scene>_B2B3B4.jpg   uint8 JPEG, 3 channels holding B2 B3 B4 (blue green red), a
                                  per-scene stretch of L2A reflectance; no georeference
      truth/<scene>_truth.tif     uint8 GeoTIFF, 1 = water, 0 = land, with the scene's CRS and
                                  10 m transform; same height and width as the JPEG

``<scene>`` is ``S2x_L2A_<date>_N<baseline>_R<orbit>_S<k>``. Scenes sharing satellite, date,
baseline and orbit are parts of one acquisition (often neighbours): cross-validate by
:meth:`ESW.acquisitions`, never by scene or random tile.

A sample is ``{"image": float32 (3, H, W) red, green, blue in 0..1, "mask": int64 (H, W),
"scene": str, "acquisition": str}`` (channels reversed from the JPEG's B2 B3 B4 order).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.core.errors import UserError

IMAGE_SUFFIX = "_B2B3B4.jpg"
TRUTH_SUFFIX = "_truth.tif"
WHERE_TO_GET = (
    "get the Earth Surface Water RGB excerpt (Luo, Tong & Hu 2021, doi:10.5281/zenodo.5205674)"
    " as images/<scene>_B2B3B4.jpg + truth/<scene>_truth.tif and pass --data PATH/TO/esw-rgb"
)

_SCENE_RE = re.compile(r"^(S2[A-D])_L2A_(\d{8})_(N\d{4})_(R\d{3})_S(\d+)$")


def acquisition_of(scene: str) -> str:
    """Scene name -> acquisition key ``<sat>_<date>_<baseline>_<orbit>``.

    >>> acquisition_of("S2A_L2A_20190125_N0211_R034_S1")
    'S2A_20190125_N0211_R034'
    """
    match = _SCENE_RE.match(scene)
    if match is None:
        raise UserError(
            f"ESW scene name {scene!r} is not S2x_L2A_<date>_N<baseline>_R<orbit>_S<k>; "
            "rename the files or remove them from images/ and truth/"
        )
    sat, date, baseline, orbit, _ = match.groups()
    return f"{sat}_{date}_{baseline}_{orbit}"


def list_scenes(root: str | os.PathLike) -> list[str]:
    """Sorted scene names under ``root``; each has an image and a truth file (checked)."""
    root = Path(root)
    images, truth = root / "images", root / "truth"
    if not images.is_dir() or not truth.is_dir():
        raise UserError(f"ESW not found: {root} lacks images/ and truth/ folders; {WHERE_TO_GET}")
    scenes = sorted(p.name[: -len(IMAGE_SUFFIX)] for p in images.glob(f"*{IMAGE_SUFFIX}"))
    if not scenes:
        raise UserError(f"no *{IMAGE_SUFFIX} images under {images}; {WHERE_TO_GET}")
    for scene in scenes:
        if not (truth / f"{scene}{TRUTH_SUFFIX}").is_file():
            raise UserError(
                f"ESW scene {scene} has no truth/{scene}{TRUTH_SUFFIX}; restore it or delete "
                f"images/{scene}{IMAGE_SUFFIX}"
            )
        acquisition_of(scene)
    return scenes


def group_by_acquisition(scenes: Sequence[str]) -> dict[str, list[str]]:
    """Scene names -> {acquisition: [scenes, sorted]}, acquisitions sorted."""
    groups: dict[str, list[str]] = {}
    for scene in sorted(scenes):
        groups.setdefault(acquisition_of(scene), []).append(scene)
    return dict(sorted(groups.items()))


def read_scene_arrays(
    root: str | os.PathLike, scene: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read one scene -> (uint8 (3, H, W) in red, green, blue order, uint8 (H, W) in {0, 1},
    georeference ``{"crs": rasterio CRS, "transform": Affine}`` of the truth GeoTIFF)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    root = Path(root)
    image_path = root / "images" / f"{scene}{IMAGE_SUFFIX}"
    truth_path = root / "truth" / f"{scene}{TRUTH_SUFFIX}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(image_path) as ds:
                if ds.count != 3 or ds.dtypes[0] != "uint8":
                    raise UserError(
                        f"{image_path} has {ds.count} band(s) of {ds.dtypes[0]}; ESW images are "
                        "3-band 8-bit JPEGs (B2 B3 B4); replace the file"
                    )
                bgr = ds.read()
        with rasterio.open(truth_path) as ds:
            mask = ds.read(1)
            georef = {"crs": ds.crs, "transform": ds.transform}
    except rasterio.errors.RasterioIOError as exc:
        raise UserError(
            f"cannot read ESW scene {scene}: {str(exc).splitlines()[0][:120]}; re-download it"
        ) from None
    if mask.shape != bgr.shape[1:]:
        raise UserError(
            f"ESW scene {scene}: truth {mask.shape} and image {bgr.shape[1:]} differ in size; "
            "restore both files from the same download"
        )
    if mask.max(initial=0) > 1:
        raise UserError(f"{truth_path} holds values above 1; ESW truth must be 0 land / 1 water")
    return np.ascontiguousarray(bgr[::-1]), mask.astype(np.uint8, copy=False), georef


class ESW(Dataset):
    """ESW RGB scenes as ``{"image", "mask", "scene", "acquisition"}`` (see the module docstring).

    Args:
        root: the ``esw-rgb`` folder (holding ``images/`` and ``truth/``).
        scenes: which scenes, in order (default: all, sorted by name).
        transforms: optional ``f(sample) -> sample`` applied last.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        scenes: Sequence[str] | None = None,
        transforms: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.transforms = transforms
        self.scenes = self._verify(scenes)

    def _verify(self, scenes: Sequence[str] | None) -> list[str]:
        """Check the folder layout; return the scenes to serve."""
        if not self.root.exists():
            raise UserError(f"ESW not found: {self.root} does not exist; {WHERE_TO_GET}")
        available = list_scenes(self.root)
        if scenes is None:
            return available
        known = set(available)
        missing = [s for s in scenes if s not in known]
        if missing:
            raise UserError(
                f"{len(missing)} ESW scene(s) are not in {self.root} (e.g. {missing[0]!r}); "
                "pass the esw-rgb folder they come from"
            )
        return list(scenes)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scenes[index]
        rgb, mask, _ = read_scene_arrays(self.root, scene)
        sample = {
            "image": torch.from_numpy(rgb.astype(np.float32) / np.float32(255.0)),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "scene": scene,
            "acquisition": acquisition_of(scene),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def acquisitions(self) -> dict[str, list[str]]:
        """{``<sat>_<date>_<baseline>_<orbit>``: [scene names]} over this dataset's scenes."""
        return group_by_acquisition(self.scenes)

    def plot(self, sample: dict[str, Any], prediction: torch.Tensor | None = None, title: str = ""):
        """Matplotlib figure: true colour, mask, optional prediction (int (H, W)).

        Needs matplotlib (not a dependency).
        """
        from backend.datasets.plotting import sample_figure

        rgb = sample["image"].numpy().transpose(1, 2, 0)
        title = title or str(sample.get("scene", ""))
        return sample_figure(rgb, sample["mask"].numpy(), prediction, title)
