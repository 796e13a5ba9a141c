"""Process settings ``python -m backend`` applies before torch loads (backend/core/runtime.py):
the thread policy reaches the command, and pyproj gets the system PROJ data folder."""

from __future__ import annotations

import json
import os
import subprocess

import pytest


@pytest.mark.parametrize(
    ("extra_env", "want_threads", "want_source"),
    [({"WATERSEG_THREADS": "1"}, 1, "WATERSEG_THREADS"), ({}, None, "cores")],
)
def test_backend_entry_point_applies_the_policy_before_torch(
    repo_root, backend_python, extra_env, want_threads, want_source
):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WATERSEG_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")
    }
    env.update(extra_env)
    out = subprocess.run(
        [backend_python, "-m", "backend", "info", "--json"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert want_source in info["thread_policy"] and "PASSIVE" in info["thread_policy"]
    if want_threads is not None:
        assert info["threads"] == want_threads


def test_pyproj_gets_the_system_proj_data_unless_the_user_chose(tmp_path):
    from backend.core.runtime import use_system_proj_data

    (tmp_path / "proj.db").write_bytes(b"")
    env: dict[str, str] = {}
    assert use_system_proj_data(env, tmp_path) and env["PROJ_DATA"] == str(tmp_path)
    mine = {"PROJ_LIB": "/opt/proj"}
    assert not use_system_proj_data(mine, tmp_path) and "PROJ_DATA" not in mine
    assert not use_system_proj_data({}, tmp_path / "absent")


def test_segment_prints_no_proj_data_warning(tmp_path, repo_root, backend_python):
    import numpy as np

    from tests.backend.rasters import water_scene, write_raster

    water = np.zeros((40, 40), bool)
    water[10:30, 5:25] = True
    src = write_raster(tmp_path / "lake.tif", water_scene(water))
    env = {k: v for k, v in os.environ.items() if k not in ("PROJ_DATA", "PROJ_LIB")}
    out = subprocess.run(
        [backend_python, "-m", "backend", "segment", str(src), "--out-dir", str(tmp_path / "o"),
         "--method", "ndwi", "--progress", "none"],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "PROJ data directory" not in out.stderr
