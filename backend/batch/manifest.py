"""Per-scene manifests: ``<stem>.waterseg.json`` beside a scene's outputs says they are complete.

``segment`` commits a scene's outputs all together (staging folder, then rename); the batch
writes the manifest after that, atomically. A scene is skipped when its manifest records the
same input (size, mtime), the same model (SHA-256) and the same options, and every output it
lists still exists. Anything else, including a missing or unreadable manifest, means: redo.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backend.batch.inputs import is_remote

FORMAT = 1
SUFFIX = ".waterseg.json"

_sha_cache: dict[tuple[str, int, int], str] = {}


def manifest_path(out_dir: Path, stem: str) -> Path:
    return out_dir / f"{stem}{SUFFIX}"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so
    a reader (or a crash) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide reports from the group
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (hex), cached per path, size and mtime."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[key] = h.hexdigest()
    return _sha_cache[key]


def input_stat(scene: str) -> dict[str, int | None]:
    """``{"size": bytes, "mtime_ns": ns}`` of a scene (GDAL's stat for URLs; None if unknown)."""
    try:
        if is_remote(scene):
            from osgeo import gdal

            st = gdal.VSIStatL(scene if scene.startswith("/vsi") else f"/vsicurl/{scene}")
            if st is None:
                return {"size": None, "mtime_ns": None}
            return {"size": int(st.size), "mtime_ns": int(st.mtime) * 1_000_000_000}
        st = os.stat(scene)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except (OSError, RuntimeError):
        return {"size": None, "mtime_ns": None}


def read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def same_options(
    recorded: dict[str, Any], options: dict[str, Any], defaults: dict[str, Any]
) -> bool:
    """Whether the options a manifest recorded are the options of this run. An option the
    manifest does not know (segment gained it later) counts as recorded at its default, so a
    new option left at its default does not make every scene run again."""
    return all(recorded.get(k, defaults.get(k)) == v for k, v in options.items())


def is_complete(
    manifest: dict[str, Any] | None,
    scene: str,
    options: dict[str, Any],
    model_sha256: str | None,
    defaults: dict[str, Any] | None = None,
) -> bool:
    """True when ``manifest`` proves the scene's outputs are complete and current.

    ``model_sha256`` is the SHA-256 of ``--model``; None means segment chose the model (a
    bundled one, or an index method such as "ndwi", which is no file), and then the model
    file the manifest names must still hash to what it records. ``defaults``: see :func:`same_options`.
    """
    if manifest is None or manifest.get("input") != scene:
        return False
    stat = input_stat(scene)
    if stat["size"] is None or manifest.get("input_stat") != stat:
        return False
    recorded = manifest.get("options")
    if not isinstance(recorded, dict) or not same_options(recorded, options, defaults or {}):
        return False
    recorded = manifest.get("model_sha256")
    if bool(manifest.get("model_explicit")) != (model_sha256 is not None):
        return False
    if model_sha256 is not None:
        if recorded != model_sha256:
            return False
    else:
        model = manifest.get("model")
        try:
            if (file_sha256(model) if model and os.path.isfile(model) else None) != recorded:
                return False
        except OSError:
            return False
    outputs = manifest.get("outputs")
    return isinstance(outputs, dict) and all(Path(p).exists() for p in outputs.values())
