"""Commands that tie the parts together: ``demo`` (the engine on the synthetic scene, scored
against its truth) and ``info`` / ``model-info`` (diagnostics of the environment and of a
checkpoint). The engine's own commands live with it (``segment``, ``plan`` in
:mod:`backend.segment`, ``batch`` in :mod:`backend.batch`), the learning ones in
:mod:`backend.learning`; ``backend/cli.py`` lists them all. Nothing imports this package but
``backend/cli.py``.
"""
