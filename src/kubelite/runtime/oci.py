"""OCI and Docker image media types, and the choice of a platform's manifest."""

from __future__ import annotations

import hashlib
import platform
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Sent as Accept when asking a registry for a manifest, preferred first.
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _ARCH.get(machine, machine)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def media_type_of(doc: dict[str, Any], fallback: str = "") -> str:
    """A manifest's media type; old OCI documents leave it out and are told apart by shape."""
    if mt := doc.get("mediaType"):
        return str(mt)
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc:
        return OCI_MANIFEST
    return fallback


def pick_platform(index: dict[str, Any]) -> dict[str, Any] | None:
    """The descriptor for linux on this host's architecture, as containerd picks it."""
    arch = host_arch()
    candidates = [d for d in index.get("manifests", [])
                  if d.get("platform", {}).get("os", "linux") == "linux"
                  and d.get("platform", {}).get("architecture", arch) == arch]
    # Attestation manifests carry platform unknown/unknown; they never match above.
    return candidates[0] if candidates else None


def is_gzip_layer(media_type: str) -> bool:
    return media_type.endswith("gzip")
