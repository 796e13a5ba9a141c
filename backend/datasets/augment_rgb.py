"""Rendering-robust augmentation for 8-bit true-colour (RGB) training images.

An RGB raster is a *rendering* of reflectance: someone chose a stretch, a gamma, a colour
balance, maybe a haze-like lift of the shadows, and a JPEG quality. A model for "any RGB
layer" must not depend on those choices, so each training crop gets a random rendering:

1. :func:`stretch` - percentile clip: values between the ``low``-th and ``high``-th
   percentiles of the scene mapped linearly to 0..1 (one pair for all channels, or one per channel, which
   also shifts the colour balance);
2. :func:`gamma` - ``x ** g``;
3. :func:`brightness_contrast` - ``(x - 0.5) * contrast + 0.5 + brightness``;
4. :func:`saturation` - blend with the luma grey (0: grey, 1: unchanged, >1: more colour);
5. :func:`haze` - blend toward a bright airlight colour, ``(1 - t) x + t A``;
6. :func:`colour_balance` - one gain per channel (a white balance the renderer chose);
7. :func:`jpeg_roundtrip` - quantise to 8 bits and re-encode as JPEG at a given quality (GDAL's
   JPEG driver in memory through rasterio, about 3 ms per 256 x 256 crop);

plus the geometric ones: :func:`resample` to another pixel size (a crop of the 10 m scene
seen as a 2 m to 30 m sensor would see the same ground; :meth:`RGBAugment.window` draws the
size of ground to cut), and those of :mod:`backend.datasets.augment` (flips, rot90, random
crop).

Every photometric function takes and returns float32 (3, H, W) in red, green, blue order with
values in 0..1, and is the identity at its neutral parameters (stretch 0/100 on an image that
already spans 0..1, gamma 1, brightness 0 and contrast 1, saturation 1, haze 0). Randomness
comes from an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.datasets.augment import flip_rot90, random_crop

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as JPEG's YCbCr uses


def stretch(
    image: np.ndarray,
    low: float,
    high: float,
    per_channel: bool = False,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Map the ``low``..``high`` percentiles (0..100) of ``reference`` (3, h, w; default
    ``image`` itself) to 0..1 in ``image`` (3, H, W), clipped.

    Pass the whole scene (or a subsample of it) as ``reference`` when ``image`` is a crop: a
    renderer stretches a scene, not a 2.5 km crop, and stretching an all-water crop by its
    own percentiles would blow its noise up to the full range.
    ``per_channel``: percentiles of each channel separately (changes the colour balance).
    A channel without spread (high percentile == low) is left as it is.
    """
    ref = image if reference is None else reference
    axis = (1, 2) if per_channel else None
    lo = np.percentile(ref, low, axis=axis, keepdims=True).astype(np.float32)
    hi = np.percentile(ref, high, axis=axis, keepdims=True).astype(np.float32)
    span = hi - lo
    flat = span <= 1e-6
    out = (image - lo) / np.where(flat, np.float32(1.0), span)
    out = np.where(flat, image, out)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def gamma(image: np.ndarray, g: float) -> np.ndarray:
    """``image ** g`` (g < 1 brightens the shadows, g > 1 darkens them); 0..1 stays 0..1."""
    return np.power(np.clip(image, 0.0, 1.0), np.float32(g)).astype(np.float32, copy=False)


def brightness_contrast(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """``(image - 0.5) * contrast + 0.5 + brightness``, clipped to 0..1."""
    out = (image - np.float32(0.5)) * np.float32(contrast) + np.float32(0.5 + brightness)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the luma grey: ``grey + factor * (image - grey)``, clipped to 0..1."""
    grey = np.tensordot(LUMA, image, axes=(0, 0))[None]
    out = grey + np.float32(factor) * (image - grey)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def haze(image: np.ndarray, amount: float, airlight: np.ndarray) -> np.ndarray:
    """Blend toward the airlight colour ``airlight`` (3,) in 0..1: ``(1 - t) x + t A``."""
    a = np.asarray(airlight, np.float32).reshape(3, 1, 1)
    t = np.float32(amount)
    return ((1 - t) * image + t * a).astype(np.float32, copy=False)


def colour_balance(image: np.ndarray, gains) -> np.ndarray:
    """Multiply each channel by its gain (``gains`` (3,), 1: unchanged), clipped to 0..1."""
    g = np.asarray(gains, np.float32).reshape(3, 1, 1)
    return np.clip(image * g, 0.0, 1.0).astype(np.float32, copy=False)


def resample(
    image: torch.Tensor, mask: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """image float (3, h, w) and mask int (h, w) -> (3, size, size) and (size, size).

    The image: bilinear, antialiased when it shrinks (a coarser sensor averages the ground);
    the mask: water where at least half of the ground under an output pixel is water (area
    mean when shrinking, nearest when growing).
    """
    h, w = mask.shape[-2:]
    if (h, w) == (size, size):
        return image, mask
    shrink = size < min(h, w)
    out = F.interpolate(
        image[None].float(), (size, size), mode="bilinear", antialias=shrink, align_corners=False
    )[0]
    m = mask[None, None].float()
    m = F.interpolate(m, (size, size), mode="area") if shrink else F.interpolate(m, (size, size))
    return out.clamp_(0.0, 1.0), (m[0, 0] >= 0.5).long()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float 0..1 (3, H, W) -> uint8 0..255, rounded."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Quantise to 8 bits, encode as JPEG at ``quality`` (1..100) in memory and decode.

    Returns float32 (3, H, W) in 0..1 on the 8-bit grid (k / 255).
    """
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile

    data = to_uint8(image)
    _, h, w = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(
                driver="JPEG", width=w, height=h, count=3, dtype="uint8", QUALITY=int(quality)
            ) as ds:
                ds.write(data)
            with mem.open() as ds:
                decoded = ds.read()
    return decoded.astype(np.float32) / np.float32(255.0)


@dataclass
class RGBAugment:
    """Random rendering + geometry for one RGB training sample.

    ``augment(image, mask, rng)`` with image float32 (3, H, W) in 0..1 (numpy or torch) and
    mask int (H, W) -> (image float32 tensor (3, crop, crop) in 0..1 on the 8-bit grid, mask
    int64 tensor (crop, crop)). Each photometric step runs with its probability ``p_*``; the
    ranges are (low, high) of a uniform draw (gamma, colour gains and pixel size: log-uniform).

    Pixel size: cut a square of :meth:`window` pixels from the scene (``native_pixel_m``
    metres each) and pass it in; it is resampled to ``crop`` (:func:`resample`), so the
    sample shows the ground at a pixel size drawn from ``pixel_m_range`` (with probability
    ``p_scale``; otherwise the native size, and the window is ``crop``).
    """

    crop: int = 256
    p_stretch: float = 0.5
    stretch_low: tuple[float, float] = (0.0, 5.0)
    stretch_high: tuple[float, float] = (95.0, 100.0)
    p_stretch_per_channel: float = 0.3
    p_gamma: float = 0.5
    gamma_range: tuple[float, float] = (0.5, 2.0)
    p_brightness_contrast: float = 0.5
    brightness_range: tuple[float, float] = (-0.15, 0.15)
    contrast_range: tuple[float, float] = (0.6, 1.4)
    p_saturation: float = 0.5
    saturation_range: tuple[float, float] = (0.3, 1.7)
    p_haze: float = 0.25
    haze_range: tuple[float, float] = (0.05, 0.45)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 95)
    p_colour_balance: float = 0.0
    colour_gain_range: tuple[float, float] = (0.8, 1.25)
    p_scale: float = 0.0
    pixel_m_range: tuple[float, float] = (2.0, 30.0)
    native_pixel_m: float = 10.0
    flips: bool = True
    rot90: bool = True

    def window(self, rng: np.random.Generator) -> int:
        """Side in scene pixels of the square to cut for one sample (see the class doc)."""
        if not rng.random() < self.p_scale:
            return self.crop
        lo, hi = np.log(self.pixel_m_range[0]), np.log(self.pixel_m_range[1])
        pixel_m = float(np.exp(rng.uniform(lo, hi)))
        return max(8, round(self.crop * pixel_m / self.native_pixel_m))

    def render(
        self, image: np.ndarray, rng: np.random.Generator, reference: np.ndarray | None = None
    ) -> np.ndarray:
        """The photometric part: float32 (3, H, W) 0..1 -> same shape, 0..1, 8-bit grid.
        ``reference``: the scene (or a subsample) whose percentiles the stretch uses."""
        x = image
        if rng.random() < self.p_stretch:
            per_channel = bool(rng.random() < self.p_stretch_per_channel)
            low, high = rng.uniform(*self.stretch_low), rng.uniform(*self.stretch_high)
            x = stretch(x, low, high, per_channel, reference)
        if rng.random() < self.p_gamma:
            lo, hi = np.log(self.gamma_range[0]), np.log(self.gamma_range[1])
            x = gamma(x, float(np.exp(rng.uniform(lo, hi))))
        if rng.random() < self.p_brightness_contrast:
            x = brightness_contrast(
                x, rng.uniform(*self.brightness_range), rng.uniform(*self.contrast_range)
            )
        if rng.random() < self.p_saturation:
            x = saturation(x, rng.uniform(*self.saturation_range))
        if rng.random() < self.p_colour_balance:
            lo, hi = np.log(self.colour_gain_range[0]), np.log(self.colour_gain_range[1])
            x = colour_balance(x, np.exp(rng.uniform(lo, hi, 3)))
        if rng.random() < self.p_haze:
            airlight = rng.uniform(0.75, 1.0) * np.array(
                [rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.0), 1.0], np.float32
            )
            x = haze(x, rng.uniform(*self.haze_range), airlight)
        if rng.random() < self.p_jpeg:
            return jpeg_roundtrip(
                x, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            )
        return to_uint8(x).astype(np.float32) / np.float32(255.0)

    def __call__(
        self, image, mask, rng: np.random.Generator, reference: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``reference``: float32 (3, h, w) 0..1, the scene ``image`` was cropped from (or a
        subsample of it), for the stretch; default the crop itself."""
        image = torch.as_tensor(image, dtype=torch.float32)
        mask = torch.as_tensor(mask).long()
        if self.p_scale > 0 and min(mask.shape[-2:]) != self.crop:
            side = min(mask.shape[-2:])  # a window cut for another pixel size: all of it
            image, mask = random_crop(image, mask, side, rng)
            image, mask = resample(image, mask, self.crop)
        image, mask = random_crop(image, mask, self.crop, rng)
        rendered = self.render(image.numpy(), rng, reference)
        flip = bool(rng.integers(0, 2)) if self.flips else False
        k = int(rng.integers(0, 4)) if self.rot90 else 0
        return flip_rot90(torch.from_numpy(rendered), mask, k, flip)
