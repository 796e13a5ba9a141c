"""`qgis_process` (QGIS's command-line Processing runner) finds and runs WaterSeg's algorithm
from the installable zip, in a throwaway profile (HOME in tmp), with the real backend."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import write_raster

REPO = Path(__file__).resolve().parents[2]
QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")
pytestmark = [
    pytest.mark.qgis,
    pytest.mark.slow,
    pytest.mark.skipif(QGIS_PROCESS is None, reason="qgis_process is not installed"),
]


def _qgis_process(args, env, timeout=300):
    return subprocess.run(
        [QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_qgis_process_runs_segment_water(tmp_path, tiny_model, backend_python):
    built = subprocess.run(
        [sys.executable, "scripts/package.py", "--out", str(tmp_path / "dist")],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    zip_path = Path(built.stdout.split(" (")[0])
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_PLUGINPATH": str(plugins),
        "WATERSEG_PYTHON": backend_python,
    }
    enabled = _qgis_process(["plugins", "enable", "waterseg"], env)
    assert enabled.returncode == 0, enabled.stderr
    listed = _qgis_process(["list"], env)
    assert "waterseg:segmentwater" in listed.stdout

    raster = write_raster(tmp_path / "scene.tif", bands=4, size=(96, 128))
    mask, coast = tmp_path / "out" / "mask.tif", tmp_path / "out" / "coast.shp"
    mask.parent.mkdir()
    run = _qgis_process(
        [
            "run",
            "waterseg:segmentwater",
            "--",
            f"INPUT={raster}",
            f"MODEL={tiny_model}",
            f"OUTPUT_MASK={mask}",
            f"OUTPUT_SHORELINE={coast}",
        ],
        env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"OUTPUT_MASK:\t{mask}" in run.stdout
    from osgeo import gdal

    ds = gdal.Open(str(mask))
    assert (ds.RasterXSize, ds.RasterYSize) == (128, 96)
    assert "32633" in ds.GetProjection() or "UTM zone 33N" in ds.GetProjection()
    assert coast.is_file() and coast.with_suffix(".prj").is_file()
