"""Packing Debian's busybox-static into a small OCI image archive, alone or with the
files of a directory on top (the demo's images are built this way).

The archive is deterministic (fixed times, sorted entries, gzip without a
timestamp), so that the same busybox binary always gives the same digests.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from kubelite.runtime import oci, reference

DEFAULT_TAG = "docker.io/library/busybox:latest"
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
_GROUP = b"root:x:0:\nnobody:x:65534:\n"
_CREATED = "1970-01-01T00:00:00Z"


def find_busybox() -> Path:
    for path in BUSYBOX_PATHS:
        if path.is_file():
            return path
    raise FileNotFoundError("busybox not found; install Debian's busybox-static")


def _layer(busybox: Path) -> bytes:
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "var", "home"}
        dirs |= {a.rpartition("/")[0] for a in applets if "/" in a}
        for d in sorted(dirs):
            add(d, tarfile.DIRTYPE, 0o755)
        add("root", tarfile.DIRTYPE, 0o700)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in sorted(set(applets) - {"bin/busybox"}):
            add(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD)
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP)
    return gzip.compress(buf.getvalue(), mtime=0)


def _context_layer(context: Path) -> bytes:
    """The files under `context` as one layer rooted at /, owned by root, times zeroed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(context.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(context)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return gzip.compress(buf.getvalue(), mtime=0)


def build_busybox_archive(out: Path, *, tag: str = DEFAULT_TAG,
                          busybox: Path | None = None) -> str:
    """Write the OCI archive to `out`; returns the manifest digest."""
    return _write_archive(out, tag=tag, layers=[_layer(busybox or find_busybox())],
                          config={"Env": [PATH_ENV], "Cmd": ["sh"]},
                          history="kubelite image busybox")


def build_image_archive(out: Path, *, tag: str, context: Path, cmd: Sequence[str],
                        env: Sequence[str] = (), workdir: str = "", ports: Sequence[str] = (),
                        busybox: Path | None = None) -> str:
    """An image of busybox plus the files of `context`, the way a two-line Dockerfile
    (FROM busybox, COPY . /) would build it; returns the manifest digest."""
    config: dict[str, object] = {"Env": [PATH_ENV, *env], "Cmd": list(cmd)}
    if workdir:
        config["WorkingDir"] = workdir
    if ports:
        config["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in ports}
    return _write_archive(out, tag=tag, config=config, history=f"kubelite image build {tag}",
                          layers=[_layer(busybox or find_busybox()), _context_layer(context)])


def _write_archive(out: Path, *, tag: str, layers: list[bytes], config: dict[str, object],
                   history: str) -> str:
    ref = reference.parse(tag)
    tag = str(ref)
    config_blob = json.dumps({
        "created": _CREATED, "architecture": oci.host_arch(), "os": "linux",
        "config": config,
        "rootfs": {"type": "layers",
                   "diff_ids": [oci.sha256_digest(gzip.decompress(b)) for b in layers]},
        "history": [{"created": _CREATED, "created_by": history}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
        "config": {"mediaType": oci.OCI_CONFIG, "digest": oci.sha256_digest(config_blob),
                   "size": len(config_blob)},
        "layers": [{"mediaType": oci.OCI_LAYER_GZIP, "digest": oci.sha256_digest(b),
                    "size": len(b)} for b in layers],
    }, sort_keys=True).encode()
    manifest_digest = oci.sha256_digest(manifest)
    short_tag = ref.tag or "latest"
    index = json.dumps({
        "schemaVersion": 2, "mediaType": oci.OCI_INDEX,
        "manifests": [{"mediaType": oci.OCI_MANIFEST, "digest": manifest_digest,
                       "size": len(manifest),
                       "annotations": {oci.CONTAINERD_NAME: tag, oci.REF_NAME: short_tag}}],
    }, sort_keys=True).encode()
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    files += [(f"blobs/sha256/{oci.sha256_digest(b).split(':')[1]}", b)
              for b in (config_blob, manifest, *layers)]
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return manifest_digest
