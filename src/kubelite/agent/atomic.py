"""Atomic updates of a directory of projected files, laid out as kubelet's
AtomicWriter does so that readers never see a half-written set:

    VOLUME/..2024_05_01_12_00_00.123456789/key    the payload, one directory per version
    VOLUME/..data -> ..2024_05_01_12_00_00.123456789
    VOLUME/key -> ..data/key                       what the container sees

A new version is written beside the old one, `..data` is swapped by rename(2)
(atomic), user-visible links are added or removed, and the old version goes.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

DATA = "..data"
_DATA_TMP = "..data_tmp"

# path inside the volume -> (content, file mode)
Payload = dict[str, tuple[bytes, int]]


def _version_name() -> str:
    ns = time.time_ns()
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(ns // 1_000_000_000))
    return f"..{stamp}.{ns % 1_000_000_000:09d}"


def _current(target: Path) -> Path | None:
    link = target / DATA
    if not link.is_symlink():
        return None
    return target / os.readlink(link)


def _read_payload(version: Path) -> Payload:
    found: Payload = {}
    for dirpath, _dirs, files in os.walk(version):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(version))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return found


def validate_path(path: str) -> None:
    """Item paths are relative, without `..` elements, and do not start with `..`."""
    if not path or path.startswith("/") or path.startswith(".."):
        raise ValueError(f"invalid path {path!r}: must be relative and may not start with '..'")
    if ".." in Path(path).parts:
        raise ValueError(f"invalid path {path!r}: may not contain '..'")


def write_payload(target: Path, payload: Payload) -> bool:
    """Make `target` show exactly `payload`; returns whether anything changed."""
    for path in payload:
        validate_path(path)
    target.mkdir(parents=True, exist_ok=True)
    old = _current(target)
    if old is not None and old.is_dir() and _read_payload(old) == payload:
        return False
    version = target / _version_name()
    version.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    tmp = target / _DATA_TMP
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(version.name)
    tmp.rename(target / DATA)
    wanted = {Path(rel).parts[0] for rel in payload}
    for name in wanted:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{name}")
    for entry in target.iterdir():
        if entry.name.startswith("..") or entry.name in wanted:
            continue
        if entry.is_symlink():
            entry.unlink()
    for entry in target.iterdir():
        if entry.name.startswith("..") and entry.name not in (DATA, version.name) \
                and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    return True
