"""``--cloud-mask auto|none``: the product's own cloud flags as nodata.

Clouds and, above all, cloud shadows are the main source of false water in optical imagery (a
shadow is dark in NIR and SWIR, like water). With ``auto`` (the default) a raster that carries
its product's cloud information as a band, found by its description, has those pixels read as
nodata: the mask writes 255 there, no shoreline is drawn along their edges, and the log says
what share of the raster was masked.

- ``SCL``: the Sentinel-2 L2A scene classification (Sen2Cor). Masked classes: 3 cloud
  shadow, 8 cloud (medium probability), 9 cloud (high probability), 10 thin cirrus
  (:data:`SCL_MASKED`).
- ``QA60``: the Sentinel-2 L1C/L2A 60 m quality band of the older products and of Google
  Earth Engine exports. Masked bits: 10 opaque cloud, 11 cirrus (:data:`QA60_BITS`). It has no
  shadow flag, and products from January 2022 on leave it empty.

A raster without either band is not cloud-masked, and the log says so once: an index or a model
then sees clouds and shadows as they are. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCL_MASKED: dict[int, str] = {
    3: "cloud shadow",
    8: "cloud (medium probability)",
    9: "cloud (high probability)",
    10: "thin cirrus",
}
QA60_BITS: dict[int, str] = {10: "opaque cloud", 11: "cirrus"}
CHOICES = ("auto", "none")


@dataclass(frozen=True)
class CloudBand:
    """The band of a raster that flags clouds: 1-based ``index`` and ``kind`` (SCL or QA60)."""

    index: int
    kind: str

    def flagged(self, values: np.ndarray) -> np.ndarray:
        """Bool array: pixels of this band's ``values`` that are cloud or cloud shadow."""
        if self.kind == "SCL":
            return np.isin(np.rint(values).astype(np.int64), list(SCL_MASKED))
        bits = np.rint(values).astype(np.int64)
        return np.any([(bits >> b) & 1 == 1 for b in QA60_BITS], axis=0)

    def describe(self) -> str:
        flags = SCL_MASKED if self.kind == "SCL" else QA60_BITS
        what = "classes" if self.kind == "SCL" else "bits"
        listed = ", ".join(f"{k} {v}" for k, v in flags.items())
        return f"{self.kind} band {self.index} ({what} {listed})"


def find_cloud_band(descriptions: list[str | None] | tuple[str | None, ...]) -> CloudBand | None:
    """The raster's SCL band (preferred, it also flags shadows) or QA60 band, by its
    description ("SCL", "scl", "QA60", "qa_60" ...), else None."""
    found: dict[str, int] = {}
    for i, text in enumerate(descriptions, start=1):
        key = (text or "").strip().upper().replace("_", "").replace(" ", "")
        if key in ("SCL", "QA60") and key not in found:
            found[key] = i
    for kind in ("SCL", "QA60"):
        if kind in found:
            return CloudBand(found[kind], kind)
    return None


def cloud_band_for(mode: str, descriptions) -> CloudBand | None:
    """The cloud band ``--cloud-mask mode`` uses for a raster with these band descriptions."""
    if mode not in CHOICES:
        raise ValueError(f"unknown --cloud-mask {mode!r}; valid: {', '.join(CHOICES)}")
    return find_cloud_band(descriptions) if mode == "auto" else None
