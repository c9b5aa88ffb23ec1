"""Layer unpacking: overlayfs whiteouts, opaque directories, and no writes outside."""

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from kubelite.runtime.unpack import unpack_layer


def layer(*entries: tuple[str, bytes, str]) -> io.BytesIO:
    """A tar of (name, data, kind) where kind is 'file', 'dir', 'sym:TARGET' or 'link:TARGET'."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind.startswith("sym:"):
                info.type, info.linkname = tarfile.SYMTYPE, kind[4:]
            elif kind.startswith("link:"):
                info.type, info.linkname = tarfile.LNKTYPE, kind[5:]
            else:
                info.size, info.mode = len(data), 0o640
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    buf.seek(0)
    return buf


def test_files_links_and_modes(tmp_path: Path) -> None:
    dest = tmp_path / "l"
    unpack_layer(layer(("etc/", b"", "dir"), ("etc/a", b"hello", "file"),
                       ("etc/b", b"", "sym:a"), ("etc/c", b"", "link:etc/a")), dest)
    assert (dest / "etc/a").read_bytes() == b"hello"
    assert stat.S_IMODE((dest / "etc/a").stat().st_mode) == 0o640
    assert os.readlink(dest / "etc/b") == "a"
    assert (dest / "etc/c").stat().st_ino == (dest / "etc/a").stat().st_ino


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    dest = tmp_path / "l"
    unpack_layer(layer(("d/.wh..wh..opq", b"", "file"), ("d/.wh.gone", b"", "file")), dest)
    gone = os.lstat(dest / "d/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"


def test_diff_id_is_the_uncompressed_digest(tmp_path: Path) -> None:
    import gzip
    import hashlib
    raw = layer(("f", b"x", "file")).getvalue()
    diff_id = unpack_layer(io.BytesIO(gzip.compress(raw)), tmp_path / "l")
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize("entries", [
    [("../escape", b"x", "file")],
    [("a/../../escape", b"x", "file")],
    [("link", b"", f"sym:{'/tmp'}"), ("link/escape", b"x", "file")],
    [("link", b"", "sym:.."), ("link/escape", b"x", "file")],
    [("hard", b"", "link:../../escape")],
], ids=["dotdot", "nested-dotdot", "through-absolute-symlink", "through-relative-symlink",
        "hardlink-out"])
def test_nothing_is_written_outside(tmp_path: Path, entries: list[tuple[str, bytes, str]]) -> None:
    dest = tmp_path / "deep" / "l"
    dest.parent.mkdir()
    unpack_layer(layer(*entries), dest)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "deep" / "escape").exists()
    assert not Path("/tmp/escape").exists()
