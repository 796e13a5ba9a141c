"""``make bench``'s memory figure is the child's own peak, not its parent's (issue 14, item 5:
``ru_maxrss`` of a child started by a 1.5 GB parent read 1457 MB for a 13 MB child)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.bench_segment import peak_rss_kb

REPO = Path(__file__).resolve().parents[2]


def test_a_small_child_of_a_big_parent_reports_its_own_peak():
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB touched in this (the parent) process
    assert peak_rss_kb() > 400 * 1024
    child = (
        "import json, resource; from benchmarks.bench_segment import peak_rss_kb; "
        "print(json.dumps([peak_rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    own, maxrss = json.loads(done.stdout)
    assert own < 200 * 1024  # numpy and a Python interpreter, far below the parent's 400 MB
    assert own <= maxrss  # ru_maxrss is never smaller (and here may carry the parent's peak)
    del ballast


def test_the_speed_section_measures_the_unbundled_ms_v2_network_and_given_checkpoints(tmp_path):
    from backend.core.checkpoint import InputSpec, build_checkpoint, save_checkpoint
    from backend.models import create_model
    from benchmarks.bench_segment import _bench_models, _input_bands

    ((label, model),) = _bench_models(["ms-v2"])
    assert label.startswith("ms v2 (lite0_unet 0.5") and _input_bands(model) == 5
    tiny = create_model("lite0_unet", width=0.125, in_channels=5)
    path = tmp_path / "model.pt"
    save_checkpoint(
        build_checkpoint(tiny, "lite0_unet", {"width": 0.125, "in_channels": 5}, InputSpec()), path
    )
    ((label, model),) = _bench_models(["none"], [path])
    assert label == "model.pt (lite0_unet 0.125)" and _input_bands(model) == 5
