"""The CPU thread policy, chosen before torch loads: count, precedence, cgroup quota, a core
left free for QGIS, and torch really uses it."""

from __future__ import annotations

import subprocess
import sys

from backend.core.threads import (
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
    monkeypatch.setattr("backend.core.threads.physical_cores", lambda cpus: len(cpus))

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


def test_torch_in_a_child_uses_the_chosen_count(repo_root):
    code = (
        "import sys\n"
        "from backend.core.threads import apply_policy, choose_policy\n"
        "apply_policy(choose_policy(['--threads', '1']))\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_a_reserved_core_is_left_free_only_above_2_cores(monkeypatch):
    monkeypatch.setattr("backend.core.threads.physical_cores", lambda cpus: len(cpus))
    reserve = {"WATERSEG_RESERVE_CORES": "1"}
    eight = choose_policy([], reserve, range(8), None)
    assert eight.threads == 7 and "1 left free" in eight.source
    assert choose_policy([], reserve, range(2), None).threads == 2  # 2 cores: use both
    assert choose_policy([], reserve, range(3), None).threads == 2
    # an explicit count is taken as it is
    assert choose_policy(["--threads", "8"], reserve, range(8), None).threads == 8
