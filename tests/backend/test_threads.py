"""Process settings before heavy imports: the CPU thread policy (count, precedence, cgroup
quota, torch really uses it) and the PROJ data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend.threads import (
    ThreadPolicy,
    apply_policy,
    cgroup_cpu_quota,
    choose_policy,
    threads_from_argv,
)


def test_threads_from_argv_both_spellings_and_bad_values():
    assert threads_from_argv(["segment", "a.tif", "--threads", "3"]) == 3
    assert threads_from_argv(["segment", "--threads=2", "a.tif"]) == 2
    assert threads_from_argv(["segment", "--threads", "0"]) is None
    assert threads_from_argv(["segment", "--threads", "many"]) is None
    assert threads_from_argv(["segment", "a.tif"]) is None


def test_precedence_cli_then_waterseg_then_omp_then_cores(monkeypatch):
    monkeypatch.setattr("backend.threads.physical_cores", lambda cpus: len(cpus))

    def choose(*args):
        policy = choose_policy(*args)
        return policy.threads, policy.source

    env = {"WATERSEG_THREADS": "3", "OMP_NUM_THREADS": "5"}
    cpus = range(8)
    assert choose(["--threads", "2"], env, cpus, None) == (2, "--threads")
    assert choose([], env, cpus, None) == (3, "WATERSEG_THREADS")
    assert choose([], {"OMP_NUM_THREADS": "5"}, cpus, None) == (5, "OMP_NUM_THREADS")
    assert choose([], {}, cpus, None) == (8, "cores")
    # a cgroup quota of 1.5 CPUs rounds up to 2 threads
    assert choose([], {}, cpus, 1.5) == (2, "cgroup quota")
    # affinity narrower than the machine
    assert choose_policy([], {}, [0, 1, 2], None).threads == 3


def test_wait_policy_passive_unless_the_user_chose(monkeypatch):
    assert choose_policy([], {}, [0], None).wait_policy == "PASSIVE"
    assert choose_policy([], {"OMP_WAIT_POLICY": "active"}, [0], None).wait_policy == "ACTIVE"


def test_cgroup_v2_and_v1_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "absent") is None


def test_apply_policy_sets_the_pool_variables():
    env: dict[str, str] = {"OMP_NUM_THREADS": "7"}
    apply_policy(ThreadPolicy(2, "--threads", "PASSIVE", 4, None), env)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["WATERSEG_THREADS"] == "2"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"


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


def test_torch_in_a_child_uses_the_chosen_count(repo_root):
    code = (
        "import sys\n"
        "from backend.threads import apply_policy, choose_policy\n"
        "apply_policy(choose_policy(['--threads', '1']))\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_pyproj_gets_the_system_proj_data_unless_the_user_chose(tmp_path):
    from backend.runtime import use_system_proj_data

    (tmp_path / "proj.db").write_bytes(b"")
    env: dict[str, str] = {}
    assert use_system_proj_data(env, tmp_path) and env["PROJ_DATA"] == str(tmp_path)
    mine = {"PROJ_LIB": "/opt/proj"}
    assert not use_system_proj_data(mine, tmp_path) and "PROJ_DATA" not in mine
    assert not use_system_proj_data({}, tmp_path / "absent")


def test_segment_prints_no_proj_data_warning(tmp_path, repo_root, backend_python):
    import numpy as np

    from .rasters import water_scene, write_raster

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


def test_a_reserved_core_is_left_free_only_above_2_cores(monkeypatch):
    monkeypatch.setattr("backend.threads.physical_cores", lambda cpus: len(cpus))
    reserve = {"WATERSEG_RESERVE_CORES": "1"}
    eight = choose_policy([], reserve, range(8), None)
    assert eight.threads == 7 and "1 left free" in eight.source
    assert choose_policy([], reserve, range(2), None).threads == 2  # 2 cores: use both
    assert choose_policy([], reserve, range(3), None).threads == 2
    # an explicit count is taken as it is
    assert choose_policy(["--threads", "8"], reserve, range(8), None).threads == 8
