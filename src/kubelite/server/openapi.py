"""OpenAPI documents: /openapi/v3 (index and one document per group-version) and /openapi/v2.

kubectl reads these for three things, which fix what the documents must hold:

- Server-side field validation (cli-runtime `query_param_verifier_v3`): the
  first `patch` operation carrying the kind's `x-kubernetes-group-version-kind`
  must list the `fieldValidation` query parameter; otherwise `apply` and
  `create` fall back to client-side validation or fail to download OpenAPI.
- Client-side apply: the `patch` operation's `requestBody.content` must offer
  `application/strategic-merge-patch+json`, and the kind's schema (found in
  `components.schemas` by its `x-kubernetes-group-version-kind`) supplies the
  patch merge keys and strategies.
- `kubectl explain`: the GVK is read from the `get` or `post` operation of the
  resource's collection path (`/apis/G/V/namespaces/{namespace}/R` or
  `/apis/G/V/R`), then fields are walked through `components.schemas`.

The schemas are the real Kubernetes definitions shipped by kubernetes-validate,
converted from JSON Schema back to OpenAPI 3.0 the way Kubernetes publishes them:
refs point into `#/components/schemas/`, a ref with sibling keywords is wrapped
in `allOf` (OpenAPI 3.0 ignores siblings of `$ref`), and `["x", "null"]` types
become `type: x` with `nullable: true`.

Documents are built on first request and memoised as bytes: building all of
them takes a fraction of a second, which server start-up must not pay.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import orjson

from kubelite.api import schemas
from kubelite.api.registry import Resource, Subresource, group_versions, resources_in
from kubelite.server.discovery import GIT_VERSION

OPENAPI_V3_CONTENT_TYPE = "application/json"
# An empty protobuf OpenAPI v2 document (field 1, `swagger`, set to "2.0").
# kubectl asks v2 for protobuf only and accepts this; the `@v1.0` spelling it
# sends in Accept does not parse as a MIME type in Go, so the answer uses `.v1.0`.
OPENAPI_V2_PROTO = b"\x0a\x032.0"
OPENAPI_V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_COMPONENTS_PREFIX = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_STATUS = _META + "Status"
_DELETE_OPTIONS = _META + "DeleteOptions"
_PATCH = _META + "Patch"
_RESOURCE_LIST = _META + "APIResourceList"
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
# Subresources answered with text rather than an object.
_TEXT_SUBRESOURCES = frozenset({"log"})


# --- schema conversion -------------------------------------------------------------


def _convert(schema: dict[str, Any]) -> dict[str, Any]:
    """One JSON Schema (draft 2020-12, as kubernetes-validate ships it) as OpenAPI 3.0."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref":
            name = schemas.ref_name(schema)
            if name is None:
                raise ValueError(f"unexpected $ref {value!r}")
            out["$ref"] = _COMPONENTS_PREFIX + name
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if len(types) != 1:
                raise ValueError(f"cannot express type {value!r} in OpenAPI 3.0")
            out["type"] = types[0]
            if "null" in value:
                out["nullable"] = True
        elif key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _convert(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(sub) for sub in value]
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


@functools.cache
def component_schema(name: str) -> dict[str, Any]:
    """The OpenAPI 3.0 form of one definition; KeyError when it does not exist."""
    definition = schemas.definitions()[name]
    converted = _convert(definition)
    if "x-kubernetes-group-version-kind" in definition:
        # The JSON Schema generator pins apiVersion and kind with an enum that
        # Kubernetes' own OpenAPI does not have (explain would print it).
        props = converted.get("properties", {})
        for field in ("apiVersion", "kind"):
            if field in props:
                props[field] = {k: v for k, v in props[field].items() if k != "enum"}
    return converted


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value[len(_COMPONENTS_PREFIX):]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _closure(roots: list[str]) -> dict[str, dict[str, Any]]:
    """The named schemas and every schema they reach, sorted by name."""
    found: dict[str, dict[str, Any]] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = component_schema(name)
        pending.extend(_refs(found[name]))
    return dict(sorted(found.items()))


def _definition(group: str, version: str, kind: str) -> str | None:
    try:
        return schemas.definition_for(group, version, kind)
    except KeyError:
        return None


# --- parameters --------------------------------------------------------------------

_QUERY_PARAMS: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK events on a watch."),
    "command": ("string", "The command to run, one argument per occurrence."),
    "container": ("string", "The container to address; may be omitted when the pod has one."),
    "continue": ("string", "The continue token of the previous chunk of a chunked list."),
    "dryRun": ("string", "`All` runs every stage of the request without persisting anything."),
    "fieldManager": ("string", "Name of the actor making the change, recorded in managedFields."),
    "fieldSelector": ("string", "Only objects whose fields match this selector."),
    "fieldValidation": (
        "string",
        "What to do with unknown or duplicate fields in the body: `Ignore` drops them, "
        "`Warn` drops them and reports each in a Warning header (the default), `Strict` "
        "rejects the request with BadRequest.",
    ),
    "follow": ("boolean", "Keep the stream open and send new log lines as they are written."),
    "force": ("boolean", "Let an apply request take over fields owned by other managers."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted; 0 deletes at once."),
    "insecureSkipTLSVerifyBackend": ("boolean", "Skip verifying the node agent's certificate."),
    "labelSelector": ("string", "Only objects whose labels match this selector."),
    "limit": ("integer", "Most objects to return; a continue token then follows."),
    "limitBytes": ("integer", "Most bytes of log to return."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "ports": ("integer", "Pod ports to forward to."),
    "pretty": ("string", "`true` indents the response."),
    "previous": ("boolean", "The log of the previous, terminated, instance of the container."),
    "propagationPolicy": ("string", "How dependents are collected: Orphan, Background or Foreground."),
    "resourceVersion": ("string", "The resource version the list or watch starts from."),
    "resourceVersionMatch": ("string", "How resourceVersion is applied to a list: Exact or NotOlderThan."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic ADDED events for current objects."),
    "sinceSeconds": ("integer", "Only log lines newer than this many seconds."),
    "stderr": ("boolean", "Attach the container's standard error."),
    "stdin": ("boolean", "Attach the container's standard input."),
    "stdout": ("boolean", "Attach the container's standard output."),
    "tailLines": ("integer", "Only the last lines of the log."),
    "timeoutSeconds": ("integer", "End the list or watch after this many seconds."),
    "timestamps": ("boolean", "Prefix each log line with its RFC3339 timestamp."),
    "tty": ("boolean", "Allocate a terminal."),
    "watch": ("boolean", "Stream changes (ADDED, MODIFIED, DELETED) instead of listing."),
}

_LIST_PARAMS = (
    "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
    "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
)
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_SUBRESOURCE_PARAMS: dict[str, tuple[str, ...]] = {
    "log": ("container", "follow", "insecureSkipTLSVerifyBackend", "limitBytes", "previous",
            "sinceSeconds", "tailLines", "timestamps"),
    "exec": ("command", "container", "stderr", "stdin", "stdout", "tty"),
    "attach": ("container", "stderr", "stdin", "stdout", "tty"),
    "portforward": ("ports",),
}


def _query(*names: str) -> list[dict[str, Any]]:
    params = []
    for name in names:
        kind, description = _QUERY_PARAMS[name]
        params.append({
            "name": name, "in": "query", "description": description, "schema": {"type": kind},
        })
    return params


def _path_params(resource: Resource, *, item: bool) -> list[dict[str, Any]]:
    params = []
    if item:
        params.append({
            "name": "name", "in": "path", "required": True,
            "description": f"name of the {resource.kind}", "schema": {"type": "string"},
        })
    if resource.namespaced:
        params.append({
            "name": "namespace", "in": "path", "required": True,
            "description": "object name and auth scope, such as for teams and projects",
            "schema": {"type": "string"},
        })
    return params + _query("pretty")


# --- operations --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OpSpec:
    """How one registry verb appears as an OpenAPI operation."""

    method: str  # key of the operation in its path item
    action: str  # x-kubernetes-action
    operation_id: str  # template over {gv} (AppsV1) and {name} (NamespacedDeployment)
    description: str  # template over {what}
    params: tuple[str, ...]
    body: str | None  # "object", "patch" or "delete"
    response: str  # "object", "list" or "status"
    codes: tuple[str, ...]


_LIST_OP = _OpSpec("get", "list", "list{gv}{name}", "list or watch objects of kind {what}",
                   ("allowWatchBookmarks", *_LIST_PARAMS, "watch"), None, "list", ("200",))
_CREATE_OP = _OpSpec("post", "post", "create{gv}{name}", "create {what}", _WRITE_PARAMS,
                     "object", "object", ("200", "201", "202"))
_COLLECTION_OPS: dict[str, _OpSpec] = {
    "list": _LIST_OP,
    "create": _CREATE_OP,
    "deletecollection": _OpSpec(
        "delete", "deletecollection", "delete{gv}Collection{name}", "delete collection of {what}",
        (*_DELETE_PARAMS, *_LIST_PARAMS), "delete", "status", ("200",)),
}
_ITEM_OPS: dict[str, _OpSpec] = {
    "get": _OpSpec("get", "get", "read{gv}{name}", "read {what}", (), None, "object", ("200",)),
    "update": _OpSpec("put", "put", "replace{gv}{name}", "replace {what}", _WRITE_PARAMS,
                      "object", "object", ("200", "201")),
    "patch": _OpSpec("patch", "patch", "patch{gv}{name}", "partially update {what}",
                     (*_WRITE_PARAMS, "force"), "patch", "object", ("200", "201")),
    "delete": _OpSpec("delete", "delete", "delete{gv}{name}", "delete {what}", _DELETE_PARAMS,
                      "delete", "status", ("200", "202")),
}
_SUBRESOURCE_OPS: dict[str, _OpSpec] = {**_ITEM_OPS, "create": _CREATE_OP}
_RESPONSE_NAMES = {"200": "OK", "201": "Created", "202": "Accepted"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _COMPONENTS_PREFIX + name}


def _schema_of(definition: str | None) -> dict[str, Any]:
    return _ref(definition) if definition else {"type": "object"}


def _op_prefix(group: str, version: str) -> str:
    """`AppsV1`, `CoreV1`, `NetworkingV1`: the group-version part of an operationId."""
    name = group.removesuffix(".k8s.io") if group else "core"
    return "".join(p.capitalize() for p in name.split(".")) + version.capitalize()


def _tag(group: str, version: str) -> str:
    name = group.removesuffix(".k8s.io") if group else "core"
    return f"{name.replace('.', '_')}_{version}"


def _responses(content: dict[str, Any], codes: tuple[str, ...]) -> dict[str, Any]:
    out = {code: {"description": _RESPONSE_NAMES[code], "content": content} for code in codes}
    return {**out, "401": {"description": "Unauthorized"}}


def _request_body(kind: str | None, schema: dict[str, Any]) -> dict[str, Any] | None:
    if kind == "object":
        return {"content": {"*/*": {"schema": schema}}, "required": True}
    if kind == "patch":
        return {"content": {t: {"schema": _ref(_PATCH)} for t in _PATCH_TYPES}, "required": True}
    if kind == "delete":
        return {"content": {"*/*": {"schema": _ref(_DELETE_OPTIONS)}}}
    return None


@dataclass(frozen=True, slots=True)
class _Target:
    """What a set of operations acts on: one resource, or one of its subresources."""

    gvk: tuple[str, str, str]
    tag: str
    gv: str
    name: str
    what: str
    content: dict[str, dict[str, Any]]  # response content per _OpSpec.response
    schema: dict[str, Any]  # the object schema of request bodies


def _operation(spec: _OpSpec, target: _Target, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    group, version, kind = target.gvk
    op: dict[str, Any] = {
        "description": spec.description.format(what=target.what),
        "operationId": spec.operation_id.format(gv=target.gv, name=target.name),
        "tags": [target.tag],
        "x-kubernetes-action": spec.action,
        "x-kubernetes-group-version-kind": {"group": group, "kind": kind, "version": version},
    }
    params = _query(*spec.params, *extra)
    if params:
        op["parameters"] = params
    body = _request_body(spec.body, target.schema)
    if body is not None:
        op["requestBody"] = body
    op["responses"] = _responses(target.content[spec.response], spec.codes)
    return op


def _operations(table: dict[str, _OpSpec], verbs: tuple[str, ...], target: _Target,
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        spec.method: _operation(spec, target, extra if spec.method == "get" else ())
        for verb, spec in table.items() if verb in verbs
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _base_path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def _collection_path(resource: Resource) -> str:
    base = _base_path(resource.group, resource.version)
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    return f"{base}{scope}/{resource.plural}"


def _resource_paths(resource: Resource) -> dict[str, dict[str, Any]]:
    group, version, kind = resource.group, resource.version, resource.kind
    schema = _schema_of(_definition(group, version, kind))
    target = _Target(
        gvk=(group, version, kind), tag=_tag(group, version), gv=_op_prefix(group, version),
        name=("Namespaced" if resource.namespaced else "") + kind, what=kind,
        content={
            "object": _json(schema),
            "list": _json(_schema_of(_definition(group, version, kind + "List"))),
            "status": _json(_ref(_STATUS)),
        },
        schema=schema,
    )
    paths: dict[str, dict[str, Any]] = {}
    collection = _operations(_COLLECTION_OPS, resource.verbs, target)
    if collection:
        paths[_collection_path(resource)] = {
            "parameters": _path_params(resource, item=False), **collection,
        }
    if resource.namespaced and "list" in resource.verbs:
        all_namespaces = replace(_LIST_OP, operation_id="list{gv}{name}ForAllNamespaces")
        paths[f"{_base_path(group, version)}/{resource.plural}"] = {
            "parameters": _query("pretty"),
            "get": _operation(all_namespaces, replace(target, name=kind)),
        }
    item_path = _collection_path(resource) + "/{name}"
    item = _operations(_ITEM_OPS, resource.verbs, target)
    if item:
        paths[item_path] = {"parameters": _path_params(resource, item=True), **item}
    for sub in resource.subresources:
        paths[f"{item_path}/{sub.name}"] = _subresource_path(resource, sub, target)
    return paths


def _is_connect(sub: Subresource) -> bool:
    # Kubernetes' connect subresources (exec, attach, portforward, proxy) are
    # exactly those whose kind is an *Options type carried in the query string.
    return sub.kind.endswith("Options")


def _subresource_path(resource: Resource, sub: Subresource, parent: _Target) -> dict[str, Any]:
    gvk = (sub.group or resource.group, sub.version or resource.version, sub.kind or resource.kind)
    if _is_connect(sub) or sub.name in _TEXT_SUBRESOURCES:
        schema: dict[str, Any] = {"type": "string"}
        content = {"*/*": {"schema": schema}}
    else:
        schema = _schema_of(_definition(*gvk))
        content = _json(schema)
    target = replace(
        parent, gvk=gvk, name=parent.name + sub.name.capitalize(),
        what=f"{sub.name} of {resource.kind}", content={"object": content}, schema=schema,
    )
    extra = _SUBRESOURCE_PARAMS.get(sub.name, ())
    entry: dict[str, Any] = {"parameters": _path_params(resource, item=True)}
    if not _is_connect(sub):
        return {**entry, **_operations(_SUBRESOURCE_OPS, sub.verbs, target, extra)}
    for verb in sub.verbs:
        method = "get" if verb == "get" else "post"
        spec = _OpSpec(method, "connect", f"connect{{gv}}{method.capitalize()}{{name}}",
                       f"connect {method.upper()} requests to {{what}}", extra, None, "object",
                       ("200",))
        entry[method] = _operation(spec, target)
    return entry


# --- documents ---------------------------------------------------------------------


def _gv_path(group: str, version: str) -> str:
    """The index key of a group-version: `api/v1`, `apis/apps/v1`."""
    return _base_path(group, version).lstrip("/")


def group_version_paths() -> list[str]:
    return [_gv_path(g, v) for g, versions in group_versions().items() for v in versions]


def _parse_gv_path(path: str) -> tuple[str, str] | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "api":
        group, version = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        return None
    return (group, version) if version in group_versions().get(group, ()) else None


def _build_document(group: str, version: str) -> dict[str, Any]:
    resources = resources_in(group, version)
    paths: dict[str, Any] = {
        _base_path(group, version) + "/": {
            "get": {
                "description": "get available resources",
                "operationId": f"get{_op_prefix(group, version)}APIResources",
                "tags": [_tag(group, version)],
                "responses": _responses(_json(_ref(_RESOURCE_LIST)), ("200",)),
            }
        }
    }
    for resource in sorted(resources, key=lambda r: r.plural):
        paths.update(_resource_paths(resource))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _closure(list(_refs(paths))),
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey", "in": "header", "name": "authorization",
                    "description": "Bearer Token authentication",
                }
            },
        },
        "security": [{"BearerToken": []}],
    }


@functools.cache
def _document_bytes(group: str, version: str) -> bytes:
    return orjson.dumps(_build_document(group, version))


def openapi_v3_document(path: str) -> bytes | None:
    """The OpenAPI 3.0 document of `api/v1` or `apis/<group>/<version>`; None if not served."""
    gv = _parse_gv_path(path)
    return None if gv is None else _document_bytes(*gv)


def document_hash(document: bytes) -> str:
    """The `hash` query value of a document, as Kubernetes computes it (SHA-512, upper-case hex)."""
    return hashlib.sha512(document).hexdigest().upper()


def openapi_v3_index() -> dict[str, Any]:
    """The /openapi/v3 discovery index: one serverRelativeURL per group-version."""
    paths = {}
    for group, versions in group_versions().items():
        for version in versions:
            path = _gv_path(group, version)
            digest = document_hash(_document_bytes(group, version))
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


@functools.cache
def openapi_v3_index_bytes() -> bytes:
    return orjson.dumps(openapi_v3_index())


__all__ = [
    "OPENAPI_V2_CONTENT_TYPE",
    "OPENAPI_V2_PROTO",
    "OPENAPI_V3_CONTENT_TYPE",
    "component_schema",
    "document_hash",
    "group_version_paths",
    "openapi_v3_document",
    "openapi_v3_index",
    "openapi_v3_index_bytes",
]
