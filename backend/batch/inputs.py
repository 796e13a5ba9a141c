"""The scenes of a batch: files, globs, folders (recursive) and list files, expanded once."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from backend.core.errors import UserError

# Extensions of the GDAL raster formats a folder is searched for (lower case, with the dot).
RASTER_EXTENSIONS = frozenset(
    ".tif .tiff .jp2 .j2k .vrt .img .pix .kea .nc .hdf .h5 .he5 .ecw .sid .dt2 .ntf".split()
)
_GLOB_CHARS = set("*?[")


def is_remote(item: str) -> bool:
    """A GDAL virtual path or URL (``/vsicurl/...``, ``https://...``, ``s3://...``): passed on
    as written, never checked against the local file system."""
    return item.startswith("/vsi") or "://" in item


def _read_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"cannot read list file {path} ({exc.strerror or exc}); check the path"
        ) from None
    items = [ln.strip() for ln in text.splitlines()]
    base = path.parent
    return [
        it if is_remote(it) or os.path.isabs(it) else str(base / it)
        for it in items
        if it and not it.startswith("#")
    ]


def _folder(path: Path) -> list[str]:
    found = sorted(
        str(p)
        for p in path.rglob("*")
        if p.suffix.lower() in RASTER_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not found:
        raise UserError(
            f"folder {path} holds no raster ({', '.join(sorted(RASTER_EXTENSIONS))}); "
            "pass another folder or the files themselves"
        )
    return found


def expand_inputs(items: list[str]) -> list[str]:
    """INPUTS of ``batch`` -> the scenes, in order, each once.

    An item is a raster path or URL (kept even when missing: that scene is then reported as
    failed), a glob (``**`` recursive), a folder (searched recursively for
    :data:`RASTER_EXTENSIONS`), or a list file (``@list.txt`` or any ``.txt``) of one such
    path or URL per line (``#`` comments; relative paths are relative to the list file).
    Local paths are made absolute, so workers on other machines get the same paths.
    """
    scenes: list[str] = []
    for item in items:
        if is_remote(item):
            scenes.append(item)
        elif item.startswith("@") or item.lower().endswith(".txt"):
            listed = _read_list(Path(item.removeprefix("@")))
            scenes += expand_inputs([s for s in listed if not s.lower().endswith(".txt")])
        elif _GLOB_CHARS & set(item):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise UserError(f"{item!r} matches no file; check the pattern")
            scenes += [m for p in matched for m in (_folder(Path(p)) if os.path.isdir(p) else [p])]
        elif os.path.isdir(item):
            scenes += _folder(Path(item))
        else:
            scenes.append(item)
    out: list[str] = []
    seen: set[str] = set()
    for s in scenes:
        s = s if is_remote(s) else os.path.abspath(s)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def scene_stem(scene: str) -> str:
    """The stem ``segment`` names a scene's outputs by (``.../S2A_x.tif`` -> ``S2A_x``)."""
    return Path(scene.rstrip("/")).stem


def check_unique_stems(scenes: list[str]) -> None:
    """Two scenes with one stem would write the same outputs: UserError naming both."""
    by_stem: dict[str, str] = {}
    for s in scenes:
        other = by_stem.setdefault(scene_stem(s), s)
        if other != s:
            raise UserError(
                f"scenes {other} and {s} would write the same outputs ({scene_stem(s)}_*); "
                "rename one or run them in two batches with different --out-dir folders"
            )
