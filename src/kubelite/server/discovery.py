"""Version and API discovery documents, all derived from the resource registry.

Every document is a pure function of `kubelite.api.registry.RESOURCES`; the
`*_bytes` functions memoise the orjson encoding so that the HTTP layer answers
discovery requests by returning cached bytes.

Shapes follow Kubernetes 1.32 exactly:

- `/version`: version.Info. The kubectl installed on these machines is a
  dispatcher that runs `kubectl.1.<minor>`, so `minor` must stay "32".
- `/api`, `/apis`: APIVersions and APIGroupList, or with an Accept asking for
  `apidiscovery.k8s.io` an APIGroupDiscoveryList (aggregated discovery), which
  spares clients one request per group-version.
- `/api/v1`, `/apis/G/V`: APIResourceList, subresources listed as `pods/log`.

In both resource listings a kind's group and version are left empty when they
are those of the listing itself and given only when they differ (the Scale of
`deployments/scale` is `autoscaling/v1`), as Kubernetes does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import platform
import sys
from typing import Any, Literal

import orjson

from kubelite.api.registry import Resource, Subresource, group_versions, resources_in

DiscoveryVersion = Literal["v2", "v2beta1"]

KUBERNETES_MAJOR = "1"
KUBERNETES_MINOR = "32"
GIT_VERSION = "v1.32.0-kubelite"

AGGREGATED_GROUP = "apidiscovery.k8s.io"
AGGREGATED_KIND = "APIGroupDiscoveryList"
# client-go picks the decoder from the response Content-Type, so it must be
# exactly this string (no spaces, parameters in this order).
AGGREGATED_CONTENT_TYPE = f"application/json;g={AGGREGATED_GROUP};v=v2;as={AGGREGATED_KIND}"
# Kubernetes 1.32 still serves the deprecated v2beta1 (removed in 1.33) to
# clients that ask for it first; the document is the same apart from apiVersion.
AGGREGATED_CONTENT_TYPE_V2BETA1 = (
    f"application/json;g={AGGREGATED_GROUP};v=v2beta1;as={AGGREGATED_KIND}"
)
JSON_CONTENT_TYPE = "application/json"

_AGGREGATED_VERSIONS: tuple[DiscoveryVersion, ...] = ("v2", "v2beta1")
_PLAIN_JSON_TYPES = frozenset({"application/json", "application/*", "*/*"})


def aggregated_content_type(version: DiscoveryVersion) -> str:
    return AGGREGATED_CONTENT_TYPE if version == "v2" else AGGREGATED_CONTENT_TYPE_V2BETA1


# --- content negotiation ---------------------------------------------------------


def _parse_accept(accept: str) -> list[tuple[str, dict[str, str]]]:
    """Media ranges of an Accept header, best first (by q, then by the client's order)."""
    ranges: list[tuple[float, int, str, dict[str, str]]] = []
    for index, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media_type = pieces[0].lower()
        if not media_type:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, sep, value = piece.partition("=")
            if sep:
                params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            ranges.append((-q, index, media_type, params))
    ranges.sort(key=lambda r: (r[0], r[1]))
    return [(media_type, params) for _, _, media_type, params in ranges]


def negotiated_discovery_version(accept: str) -> DiscoveryVersion | None:
    """The aggregated discovery version the client prefers, or None for plain discovery.

    The first acceptable range wins: an `as=APIGroupDiscoveryList` range in
    JSON selects aggregated discovery, a plain JSON range selects the
    unaggregated documents. Ranges kubelite cannot produce (protobuf, other
    `as=` kinds) are skipped; when none is acceptable the plain document is
    sent, because clients tolerate only 404 from discovery, never 406.
    """
    for media_type, params in _parse_accept(accept):
        if media_type not in _PLAIN_JSON_TYPES:
            continue
        as_kind = params.get("as")
        if as_kind is None:
            return None
        if (
            as_kind == AGGREGATED_KIND
            and params.get("g") == AGGREGATED_GROUP
            and params.get("v") in _AGGREGATED_VERSIONS
        ):
            return params["v"]  # type: ignore[return-value]
    return None


def negotiate_discovery(accept: str) -> bool:
    """Whether the client asked for aggregated discovery (v2 or v2beta1)."""
    return negotiated_discovery_version(accept) is not None


# --- /version ----------------------------------------------------------------------


def _go_platform() -> str:
    """The host as Go names it (GOOS/GOARCH), which is what clients print."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine
    )
    return f"{sys.platform}/{arch}"


def version_info() -> dict[str, str]:
    # gitCommit, gitTreeState and buildDate carry the values Kubernetes reports
    # for a build that was not stamped by its release tooling.
    return {
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": _go_platform(),
    }


# --- unaggregated discovery ----------------------------------------------------------


def api_versions(*, server_address: str = "") -> dict[str, Any]:
    """APIVersions for GET /api."""
    return {
        "kind": "APIVersions",
        "versions": list(group_versions().get("", [])),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_version_entry(group: str, version: str) -> dict[str, str]:
    return {"groupVersion": f"{group}/{version}", "version": version}


def _api_group(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [_group_version_entry(group, v) for v in versions]
    # Versions are declared in preference order, so the first is preferred.
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict[str, Any]:
    """APIGroupList for GET /apis: every named group, in declaration order."""
    groups = [_api_group(g, vs) for g, vs in group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    """APIGroup for GET /apis/<group>; None for a group kubelite does not serve."""
    versions = group_versions().get(group) if group else None
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """Kubernetes' storageVersionHash: base64 of the first 8 bytes of sha256("group/version/kind")."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _sub_kind(resource: Resource, sub: Subresource) -> tuple[str, str, str]:
    """(group, version, kind) of a subresource; empty fields mean the parent's."""
    return (
        sub.group or resource.group,
        sub.version or resource.version,
        sub.kind or resource.kind,
    )


def _relative_gv(resource: Resource, group: str, version: str) -> dict[str, str]:
    """The group/version fields Kubernetes sets only when they differ from the listing's."""
    if (group, version) == (resource.group, resource.version):
        return {}
    return {"group": group, "version": version}


def _resource_entries(resource: Resource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular_name,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        main["shortNames"] = list(resource.short_names)
    if resource.categories:
        main["categories"] = list(resource.categories)
    if resource.stored:
        main["storageVersionHash"] = storage_version_hash(
            resource.group, resource.version, resource.kind
        )
    entries = [main]
    for sub in resource.subresources:
        group, version, kind = _sub_kind(resource, sub)
        entries.append({
            "name": f"{resource.plural}/{sub.name}",
            "singularName": "",
            "namespaced": resource.namespaced,
            **_relative_gv(resource, group, version),
            "kind": kind,
            "verbs": list(sub.verbs),
        })
    return entries


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """APIResourceList for /api/v1 or /apis/<group>/<version>; None when not served."""
    resources = resources_in(group, version)
    if not resources:
        return None
    entries = [e for r in resources for e in _resource_entries(r)]
    entries.sort(key=lambda e: e["name"])
    doc: dict[str, Any] = {"kind": "APIResourceList"}
    # Kubernetes sends apiVersion for named groups only; /api/v1 has none.
    if group:
        doc["apiVersion"] = "v1"
    doc["groupVersion"] = f"{group}/{version}" if group else version
    doc["resources"] = entries
    return doc


# --- aggregated discovery ------------------------------------------------------------


def _response_kind(resource: Resource, group: str, version: str, kind: str) -> dict[str, str]:
    rel = _relative_gv(resource, group, version)
    return {"group": rel.get("group", ""), "version": rel.get("version", ""), "kind": kind}


def _resource_discovery(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": _response_kind(resource, resource.group, resource.version, resource.kind),
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular_name,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    subresources = []
    for sub in sorted(resource.subresources, key=lambda s: s.name):
        subresources.append({
            "subresource": sub.name,
            "responseKind": _response_kind(resource, *_sub_kind(resource, sub)),
            "verbs": list(sub.verbs),
        })
    if subresources:
        entry["subresources"] = subresources
    return entry


def _group_discovery(group: str, versions: list[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"creationTimestamp": None}
    if group:
        metadata["name"] = group
    return {
        "metadata": metadata,
        "versions": [
            {
                "version": version,
                "resources": [
                    _resource_discovery(r)
                    for r in sorted(resources_in(group, version), key=lambda r: r.plural)
                ],
                "freshness": "Current",
            }
            for version in versions
        ],
    }


def _discovery_list(items: list[dict[str, Any]], version: DiscoveryVersion) -> dict[str, Any]:
    return {
        "kind": AGGREGATED_KIND,
        "apiVersion": f"{AGGREGATED_GROUP}/{version}",
        "metadata": {},
        "items": items,
    }


def aggregated_core(*, version: DiscoveryVersion = "v2") -> dict[str, Any]:
    """APIGroupDiscoveryList for GET /api: the core group alone."""
    core = group_versions().get("")
    items = [_group_discovery("", core)] if core else []
    return _discovery_list(items, version)


def aggregated_groups(*, version: DiscoveryVersion = "v2") -> dict[str, Any]:
    """APIGroupDiscoveryList for GET /apis: every named group, in declaration order."""
    items = [_group_discovery(g, vs) for g, vs in group_versions().items() if g]
    return _discovery_list(items, version)


# --- memoised encodings -------------------------------------------------------------


def _encode(doc: dict[str, Any] | None) -> bytes | None:
    return None if doc is None else orjson.dumps(doc)


@functools.cache
def version_bytes() -> bytes:
    return orjson.dumps(version_info())


@functools.cache
def api_versions_bytes(*, server_address: str = "") -> bytes:
    return orjson.dumps(api_versions(server_address=server_address))


@functools.cache
def api_group_list_bytes() -> bytes:
    return orjson.dumps(api_group_list())


@functools.cache
def api_group_bytes(group: str) -> bytes | None:
    return _encode(api_group(group))


@functools.cache
def api_resource_list_bytes(group: str, version: str) -> bytes | None:
    return _encode(api_resource_list(group, version))


@functools.cache
def aggregated_core_bytes(*, version: DiscoveryVersion = "v2") -> bytes:
    return orjson.dumps(aggregated_core(version=version))


@functools.cache
def aggregated_groups_bytes(*, version: DiscoveryVersion = "v2") -> bytes:
    return orjson.dumps(aggregated_groups(version=version))


def discovery_response(
    path: str, *, accept: str = "", server_address: str = ""
) -> tuple[bytes, str] | None:
    """(body, Content-Type) for a discovery GET, or None when the path is not discovery.

    Handles /version, /api, /apis, /api/<v>, /apis/<g> and /apis/<g>/<v>. The
    caller should send `Vary: Accept`, since /api and /apis depend on it.
    """
    parts = [p for p in path.split("/") if p]
    body: bytes | None = None
    if parts == ["version"]:
        body = version_bytes()
    elif parts in (["api"], ["apis"]):
        version = negotiated_discovery_version(accept)
        if version is not None:
            build = aggregated_core_bytes if parts == ["api"] else aggregated_groups_bytes
            return build(version=version), aggregated_content_type(version)
        body = (
            api_versions_bytes(server_address=server_address)
            if parts == ["api"]
            else api_group_list_bytes()
        )
    elif len(parts) == 2 and parts[0] == "api":
        body = api_resource_list_bytes("", parts[1])
    elif len(parts) == 2 and parts[0] == "apis":
        body = api_group_bytes(parts[1])
    elif len(parts) == 3 and parts[0] == "apis":
        body = api_resource_list_bytes(parts[1], parts[2])
    return None if body is None else (body, JSON_CONTENT_TYPE)


__all__ = [
    "AGGREGATED_CONTENT_TYPE",
    "AGGREGATED_CONTENT_TYPE_V2BETA1",
    "DiscoveryVersion",
    "JSON_CONTENT_TYPE",
    "aggregated_content_type",
    "aggregated_core",
    "aggregated_core_bytes",
    "aggregated_groups",
    "aggregated_groups_bytes",
    "api_group",
    "api_group_bytes",
    "api_group_list",
    "api_group_list_bytes",
    "api_resource_list",
    "api_resource_list_bytes",
    "api_versions",
    "api_versions_bytes",
    "discovery_response",
    "negotiate_discovery",
    "negotiated_discovery_version",
    "storage_version_hash",
    "version_bytes",
    "version_info",
]
