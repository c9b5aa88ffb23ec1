"""mount(2) and umount(2) through libc, and what /proc/self/mountinfo says is mounted.

Blocking calls: the runtime runs them in worker threads.
"""

from __future__ import annotations

import ctypes
import errno
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MNT_DETACH = 0x2

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), ctypes.c_ulong(flags),
                   data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Lazily unmount `target`; nothing mounted there is not an error."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounted_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    prefix = prefix.rstrip("/")
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                out.append(point)
    return sorted(out, key=len, reverse=True)


def unmount_all(prefix: str) -> None:
    for point in mounted_under(prefix):
        unmount(point)
