"""What every part of the backend builds on and agrees on; torch-free at import.

- ``errors``: :class:`UserError` (one line, exit 2) and :class:`Cancelled` (exit 130);
- ``contract``: ``resources/contract.json``, the agreement with the QGIS plugin (options,
  bundled models, devices, outputs, progress events);
- ``checkpoint``: the self-describing model file, the agreement between training and inference;
- ``water_indices``: the classical water indices and their thresholds, used by the engine
  (``segment --method``), by the fusion model and as the reference every model is scored against;
- ``paths``: where the bundled files are; ``device``: which torch device runs;
- ``threads`` and ``runtime``: the process settings ``python -m backend`` applies before torch
  loads.

Modules here import only each other (rebuilding a checkpoint's network needs the model
registry, so that is :mod:`backend.models.loading`, one layer up), so the engine, learning and
the commands can all depend on them; tests/test_layering.py holds the layers and that no
backend modules import each other in a circle.
"""
