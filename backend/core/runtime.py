"""Process-wide settings that must be in place before torch, numpy or pyproj load.

``python -m backend`` calls :func:`prepare` first thing: the CPU thread policy
(backend/core/threads.py) and the PROJ data folder for pyproj (:func:`use_system_proj_data`).
Stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from backend.core.threads import apply_policy, choose_policy

SYSTEM_PROJ_DATA = Path("/usr/share/proj")


def use_system_proj_data(
    env: MutableMapping[str, str] | None = None, system: Path = SYSTEM_PROJ_DATA
) -> bool:
    """Point pyproj at the system's PROJ data when the user has not chosen any; True if set.

    Debian's pyproj, used from a venv, looks for ``proj.db`` under the venv's prefix, finds
    nothing and warns on every run ("Valid PROJ data directory not found"). The system GDAL and
    PROJ use ``/usr/share/proj``; this sets it for this process and its children only.
    """
    env = os.environ if env is None else env
    if "PROJ_DATA" in env or "PROJ_LIB" in env or not (system / "proj.db").is_file():
        return False
    env["PROJ_DATA"] = str(system)
    return True


def prepare(argv: Sequence[str]) -> None:
    """Apply the thread policy for this command line and the PROJ data folder."""
    apply_policy(choose_policy(argv))
    use_system_proj_data()
