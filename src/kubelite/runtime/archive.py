"""Reading image archives: docker-archive (`docker save`) and OCI layout (`skopeo copy
oci-archive:`, `podman save --format oci-archive`) tarballs.

Runs in a worker thread; the store copies what `read_archive` finds into its
own blobs.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from kubelite.runtime import oci
from kubelite.runtime.errors import ImageError


@dataclass(slots=True)
class ArchivedLayer:
    media_type: str
    open: Callable[[], IO[bytes]]
    digest: str = ""  # the blob digest when the archive names it (OCI layout)


@dataclass(slots=True)
class ArchivedImage:
    names: list[str]
    config: bytes
    layers: list[ArchivedLayer]
    # The original manifest (OCI layout); docker archives have none, the store writes one.
    manifest: bytes | None = None
    tags_only: list[str] = field(default_factory=list)  # bare tags ("latest") without a name


def read_archive(tar: tarfile.TarFile) -> list[ArchivedImage]:
    names = set(tar.getnames())
    if "manifest.json" in names:
        return _docker_images(tar)
    if "index.json" in names:
        return _oci_images(tar)
    raise ImageError("not an image archive: neither manifest.json nor index.json inside")


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        f = tar.extractfile(name.lstrip("./") if name.startswith("./") else name)
    except KeyError as exc:
        raise ImageError(f"image archive lacks {name}") from exc
    if f is None:
        raise ImageError(f"image archive entry {name} is not a file")
    with f:
        return f.read()


def _opener(tar: tarfile.TarFile, name: str) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        f = tar.extractfile(name)
        if f is None:
            raise ImageError(f"image archive entry {name} is not a file")
        return f
    return open_member


def _docker_images(tar: tarfile.TarFile) -> list[ArchivedImage]:
    out = []
    for entry in json.loads(_read(tar, "manifest.json")):
        layers = [ArchivedLayer(oci.DOCKER_LAYER, _opener(tar, name)) for name in entry["Layers"]]
        out.append(ArchivedImage(names=list(entry.get("RepoTags") or []),
                                 config=_read(tar, entry["Config"]), layers=layers))
    return out


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _oci_images(tar: tarfile.TarFile) -> list[ArchivedImage]:
    out: list[ArchivedImage] = []
    index = json.loads(_read(tar, "index.json"))
    for desc in index.get("manifests", []):
        out.extend(_oci_descriptor(tar, desc))
    return out


def _oci_descriptor(tar: tarfile.TarFile, desc: dict[str, Any]) -> list[ArchivedImage]:
    body = _read(tar, _blob_name(desc["digest"]))
    if oci.sha256_digest(body) != desc["digest"]:
        raise ImageError(f"manifest {desc['digest']} in the archive does not match its digest")
    doc = json.loads(body)
    annotations = desc.get("annotations") or {}
    if oci.media_type_of(doc, desc.get("mediaType", "")) in oci.INDEX_TYPES:
        chosen = oci.pick_platform(doc)
        if chosen is None:
            raise ImageError(f"no linux/{oci.host_arch()} image in the archive's index")
        chosen = {**chosen, "annotations": {**annotations, **(chosen.get("annotations") or {})}}
        return _oci_descriptor(tar, chosen)
    names: list[str] = []
    tags: list[str] = []
    full = annotations.get(oci.CONTAINERD_NAME, "")
    short = annotations.get(oci.REF_NAME, "")
    if full:
        names.append(full)
    elif short:
        # A ref.name with a repository ("busybox:latest", "host/x:1") names the image;
        # a bare tag ("latest") needs a name from the user.
        (names if ("/" in short or ":" in short) else tags).append(short)
    config = _read(tar, _blob_name(doc["config"]["digest"]))
    layers = [ArchivedLayer(layer.get("mediaType", oci.OCI_LAYER),
                            _opener(tar, _blob_name(layer["digest"])), layer["digest"])
              for layer in doc.get("layers", [])]
    return [ArchivedImage(names=names, config=config, layers=layers, manifest=body,
                          tags_only=tags)]
