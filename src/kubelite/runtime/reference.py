"""Image references: parsed and normalised the way Docker and containerd do it.

`busybox` is `docker.io/library/busybox:latest`; `host:5000/x` keeps its
registry; a reference with a digest pins the manifest and its tag is only
informative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubelite.runtime.errors import InvalidImageName

DEFAULT_DOMAIN = "docker.io"
# Where docker.io's API lives; `docker.io` itself only redirects.
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def object(self) -> str:
        """What to ask the registry's manifests endpoint for."""
        return self.digest or self.tag

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(ref: str) -> Reference:
    """Parse and normalise `ref`; raises InvalidImageName when it does not parse."""
    if not ref or ref != ref.strip() or len(ref) > 4096:
        raise InvalidImageName(f"invalid image name {ref!r}")
    rest, digest = ref, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidImageName(f"invalid image name {ref!r}: bad digest")
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidImageName(f"invalid image name {ref!r}: bad tag")
    parts = rest.split("/")
    domain = DEFAULT_DOMAIN
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"
                           or first.startswith("[")):
        if not _DOMAIN.fullmatch(first):
            raise InvalidImageName(f"invalid image name {ref!r}: bad registry host")
        domain = "docker.io" if first == "index.docker.io" else first
        parts = parts[1:]
    if not parts or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise InvalidImageName(
            f"invalid image name {ref!r}: repository names must be lowercase "
            "letters, digits and separators")
    if domain == DEFAULT_DOMAIN and len(parts) == 1:
        parts = ["library", *parts]
    if not tag and not digest:
        tag = "latest"
    return Reference(domain=domain, path="/".join(parts), tag=tag, digest=digest)


def normalise(ref: str) -> str:
    return str(parse(ref))
