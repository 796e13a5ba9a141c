"""WaterSeg backend: models, losses, metrics, SNOWED, training, evaluation and segmentation.

Pure Python + numpy + rasterio + torch; never imports qgis or Qt. The QGIS plugin runs it as a
subprocess (``python -m backend ...``), see ``backend/cli.py``.
"""

__version__ = "0.1.0"
