"""Unpacking one image layer (a tar diff) into a directory overlayfs can stack.

Runs in a worker thread. The layer's whiteouts become overlayfs whiteouts
(`.wh.NAME` -> a 0:0 character device NAME, `.wh..wh..opq` -> the
trusted.overlay.opaque xattr on the directory), so that layers are unpacked
once, side by side, and merged only by the overlay mount of each container.
Nothing is written outside the target: names with `..` are refused and no
member is written through a symlink.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from kubelite.runtime.errors import ImagePullError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20


class _Hashing:
    """A read-only stream that hashes what passes through it (the layer's diff id)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def open_decompressed(f: BinaryIO) -> BinaryIO:
    """`f` itself, or a gzip reader over it; zstd layers are refused with a clear message."""
    head = f.read(4)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        raise ImagePullError("zstd-compressed layers are not supported")
    return f


def unpack_layer(blob: BinaryIO, dest: Path) -> str:
    """Unpack the tar in `blob` (plain or gzip) into the new directory `dest`; returns its diff id."""
    stream = _Hashing(open_decompressed(blob))
    dest.mkdir(parents=True)
    safe_dirs: set[str] = {""}
    dir_times: list[tuple[Path, float]] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                _extract(tar, member, dest, safe_dirs, dir_times)
        stream.drain()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImagePullError(f"bad layer: {exc}") from exc
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return "sha256:" + stream.sha.hexdigest()


def _clean_name(name: str) -> str | None:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _ensure_parent(dest: Path, rel: str, safe_dirs: set[str]) -> bool:
    """Make the parent directories of `rel`, refusing to go through symlinks."""
    parent = rel.rpartition("/")[0]
    if parent in safe_dirs:
        return True
    walked = ""
    for part in parent.split("/"):
        walked = f"{walked}/{part}" if walked else part
        if walked in safe_dirs:
            continue
        path = dest / walked
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            if not stat.S_ISDIR(st.st_mode):
                return False
        safe_dirs.add(walked)
    return True


def _remove_existing(path: Path, rel: str, *, keep_dir: bool, safe_dirs: set[str]) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        shutil.rmtree(path)
        prefix = rel + "/"
        for d in [d for d in safe_dirs if d == rel or d.startswith(prefix)]:
            safe_dirs.discard(d)
    else:
        os.unlink(path)


def _extract(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, safe_dirs: set[str],
             dir_times: list[tuple[Path, float]]) -> None:
    rel = _clean_name(m.name)
    if not rel or not _ensure_parent(dest, rel, safe_dirs):
        return
    base = rel.rpartition("/")[2]
    parent = dest / rel.rpartition("/")[0]
    if base == OPAQUE:
        os.setxattr(parent, "trusted.overlay.opaque", b"y")
        return
    if base.startswith(WHITEOUT):
        target = parent / base[len(WHITEOUT):]
        _remove_existing(target, rel, keep_dir=False, safe_dirs=safe_dirs)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        return
    path = dest / rel
    _remove_existing(path, rel, keep_dir=m.isdir(), safe_dirs=safe_dirs)
    if m.isdir():
        if not path.is_dir():
            os.mkdir(path)
        safe_dirs.add(rel)
        dir_times.append((path, float(m.mtime)))
    elif m.isreg():
        src = tar.extractfile(m)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, _CHUNK)
    elif m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        target_rel = _clean_name(m.linkname)
        target = dest / target_rel if target_rel else None
        if target is None or not _ensure_parent(dest, target_rel or "", safe_dirs) \
                or not os.path.lexists(target) or os.path.islink(target.parent):
            return
        os.link(target, path, follow_symlinks=False)
        return
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(path, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor))
    elif m.isfifo():
        os.mkfifo(path, m.mode & 0o7777)
    else:
        return
    os.chown(path, m.uid, m.gid, follow_symlinks=False)
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(path, key[len("SCHILY.xattr."):],
                            value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
            except OSError:
                pass  # an xattr the filesystem refuses does not make the image unusable
    if not m.isdir():
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)
