"""tmpfs mounts for memory-backed volumes, through mount(2) rather than a forked
`mount`, so that a pod's start does not pay for a process per volume. Blocking:
call from a worker thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_MNT_DETACH = 2


def _octal_unescape(path: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit() and len(path[i + 1:i + 4]) == 3:
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def mountpoints_under(root: Path) -> list[Path]:
    """Mount points at or beneath `root`, deepest first (the order to unmount them)."""
    prefix = str(root).rstrip("/")
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            point = _octal_unescape(line.split(" ", 5)[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def is_mountpoint(path: Path) -> bool:
    return Path(str(path).rstrip("/")) in mountpoints_under(path)


def mount_tmpfs(target: Path, *, size_bytes: int | None = None, mode: int = 0o755) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if is_mountpoint(target):
        return
    options = f"mode={mode:o}" + (f",size={size_bytes}" if size_bytes else "")
    if _libc.mount(b"tmpfs", str(target).encode(), b"tmpfs", 0, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def unmount_all(root: Path) -> None:
    """Unmount everything at or beneath `root`; a busy mount is detached lazily."""
    for point in mountpoints_under(root):
        if _libc.umount2(str(point).encode(), 0) == 0:
            continue
        err = ctypes.get_errno()
        if err == errno.EBUSY:
            _libc.umount2(str(point).encode(), _MNT_DETACH)
        elif err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {point}: {os.strerror(err)}")
