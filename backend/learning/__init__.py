"""Training and evaluation: the training loop (``python -m backend train``), evaluation on a
SNOWED split (``evaluate``), the paper's Table I (``table1``) and the metrics they report.

What they put together are packages of their own: :mod:`backend.models` (the engine builds
them too), :mod:`backend.losses` and :mod:`backend.datasets`. Of the rest of the backend only
the commands import this package; the engine reads what it writes, the checkpoint
(:mod:`backend.core.checkpoint`).
"""
