"""``python -m backend batch``: many scenes, one command, scheduled by Dask distributed.

One scene is one Dask task that runs the unchanged ``segment`` command in a subprocess
(:mod:`backend.batch.scene`). Around it: input expansion (:mod:`.inputs`), per-scene manifests
that make re-runs skip finished scenes (:mod:`.manifest`), the batch report and progress
(:mod:`.report`), the merged shoreline (:mod:`.merge`) and the command line (:mod:`.cli`).
See docs/batch.md.
"""
