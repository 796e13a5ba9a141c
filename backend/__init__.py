"""WaterSeg backend: the segmentation engine, the models, their training and evaluation.

Pure Python + numpy + rasterio + torch; never imports qgis or Qt. The QGIS plugin runs it as a
subprocess (``python -m backend COMMAND``); ``backend/cli.py`` lists the commands.

Packages, bottom up; each imports only the ones above it in this list (tests/test_layering.py):

- ``core/``: what every part shares: errors, the plugin contract, the checkpoint format, the
  classical water indices, bundled paths, device and thread rules; torch-free at import;
- ``models/``, ``losses/``, ``datasets/``: networks, loss functions, datasets (SNOWED, ESW, the
  synthetic scene) and their augmentations;
- ``segment/``: the engine, any raster -> water mask, probability and shoreline (``segment``,
  ``plan``); ``batch/``: many scenes on Dask (``batch``);
- ``change/``: shoreline change through time over batch's outputs: dates, transects,
  positions, DSAS rates, plots (``change``);
- ``learning/``: training, evaluation, Table I and their metrics (``train``, ``evaluate``,
  ``table1``);
- ``commands/``: ``demo``, ``info`` and ``model-info``;
- ``cli.py`` and ``__main__.py``: the entry point.
"""

__version__ = "0.1.0"
