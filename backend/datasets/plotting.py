"""One figure for a dataset sample: true colour, label mask and, optionally, a prediction.

For developers looking at training data in a notebook; needs matplotlib (not a dependency of
the product, so it is imported here, on use).
"""

from __future__ import annotations

import numpy as np


def sample_figure(rgb: np.ndarray, mask: np.ndarray, prediction=None, title: str = ""):
    """Matplotlib figure with one panel each: ``rgb`` float (H, W, 3) in 0..1, ``mask`` int
    (H, W) 1 water / 0 land, and ``prediction`` (int (H, W) class map) when given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [("image", np.clip(rgb, 0, 1)), ("mask", np.asarray(mask))]
    if prediction is not None:
        panels.append(("prediction", np.asarray(prediction)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (name, data) in zip(axes, panels, strict=True):
        ax.imshow(data, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    return fig
