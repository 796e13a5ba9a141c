"""`make package`: the zip holds only what the plugin needs and installs into a fresh QGIS
profile, where QGIS's own plugin loader (qgis.utils) loads, starts and unloads it."""

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from .conftest import HEADLESS_QGIS_PRELUDE

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.qgis

LOAD_FROM_PROFILE = HEADLESS_QGIS_PRELUDE + textwrap.dedent("""
    import qgis.utils
    qgis.utils.iface = Iface()
    plugins_dir = sys.argv[1]
    sys.path.insert(0, plugins_dir)
    qgis.utils.plugin_paths = [plugins_dir]
    qgis.utils.updateAvailablePlugins()
    assert "waterseg" in qgis.utils.available_plugins, qgis.utils.available_plugins
    assert qgis.utils.pluginMetadata("waterseg", "name") == "WaterSeg"
    assert qgis.utils.loadPlugin("waterseg"), "loadPlugin failed"
    assert qgis.utils.startPlugin("waterseg"), "startPlugin (classFactory + initGui) failed"
    plugin = qgis.utils.plugins["waterseg"]
    assert plugin.dock is not None and plugin.provider is not None
    from pathlib import Path
    assert Path(sys.modules["waterseg.plugin.main"].__file__).is_relative_to(plugins_dir)
    assert qgis.utils.unloadPlugin("waterseg"), "unloadPlugin failed"
    print("installed plugin ok")
    app.exitQgis()
""")


def test_package_zip_installs_and_loads(tmp_path):
    out = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "scripts/package.py", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    zips = list(out.glob("waterseg-*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "profile" / "python" / "plugins")
    assert all(n.startswith("waterseg/") for n in names)
    for needed in (
        "waterseg/metadata.txt",
        "waterseg/__init__.py",
        "waterseg/plugin/main.py",
        "waterseg/plugin/dock.ui",
        "waterseg/backend/cli.py",
        "waterseg/resources/icons/waterseg.svg",
        "waterseg/resources/styles/water_mask.qml",
        "waterseg/requirements-nodeps.txt",  # the dependency set of Install backend
        "waterseg/plugin/backend_home.py",
        "waterseg/plugin/install.py",
    ):
        assert needed in names
    for model in ("waterseg-default.pt", "waterseg-rgbn.pt"):  # both bundled models travel
        for suffix in ("", ".sha256"):
            if (REPO / "resources" / "models" / f"{model}{suffix}").is_file():
                assert f"waterseg/resources/models/{model}{suffix}" in names
    for forbidden in ("tests/", "__pycache__", ".venv/", "runs/", ".pyc", ".git/", "dist/"):
        assert not [n for n in names if forbidden in n], forbidden
    # Only what a user runs (issue 11, item 21): a Makefile without the developer's targets,
    # runtime requirements only, and setup.sh installs those in the installed folder.
    folder = tmp_path / "profile" / "python" / "plugins" / "waterseg"
    assert "waterseg/requirements-dev.txt" not in names
    runtime = (folder / "requirements.txt").read_text()
    assert "torch==" in runtime and not any(t in runtime for t in ("pytest", "ruff"))
    targets = subprocess.run(
        ["make", "help"], cwd=folder, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert {"setup", "info", "demo"} <= set(targets)
    assert not {"test", "lint", "package", "train", "bench"} & set(targets)
    dry = subprocess.run(["make", "-n", "setup"], cwd=folder, capture_output=True, text=True)
    assert dry.returncode == 0 and "bash scripts/setup.sh" in dry.stdout
    which = [
        subprocess.run(
            ["bash", "scripts/setup.sh", "--print-requirements"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        for where in (folder, REPO)
    ]
    assert which == ["requirements.txt", "requirements-dev.txt"]

    plugins_dir = tmp_path / "profile" / "python" / "plugins"
    script = tmp_path / "load.py"
    script.write_text(LOAD_FROM_PROFILE)
    loaded = subprocess.run(
        [sys.executable, str(script), str(plugins_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            "QT_QPA_PLATFORM": "offscreen",
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile"),
        },
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "installed plugin ok"
