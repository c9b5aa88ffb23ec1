"""OpenAPI v3 documents: what kubectl's field-validation check, apply and explain read from them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from kubelite.api import schemas
from kubelite.api.registry import RESOURCES, Resource, group_versions
from kubelite.server import openapi

REF_PREFIX = "#/components/schemas/"
PATH_KEYS = ("get", "put", "post", "delete", "patch")


def _rid(resource: Resource) -> str:
    return resource.group_resource


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _doc(group: str, version: str) -> dict[str, Any]:
    raw = openapi.openapi_v3_document(_gv_path(group, version))
    assert raw is not None
    return orjson.loads(raw)


def _all_gvs() -> list[tuple[str, str]]:
    return [(g, v) for g, vs in group_versions().items() for v in vs]


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _gvk(resource: Resource) -> dict[str, str]:
    return {"group": resource.group, "version": resource.version, "kind": resource.kind}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in PATH_KEYS:
            if method in item:
                yield path, method, item[method]


# --- index ------------------------------------------------------------------------


def test_index_lists_every_group_version_with_the_documents_hash() -> None:
    index = openapi.openapi_v3_index()
    assert set(index["paths"]) == {_gv_path(g, v) for g, v in _all_gvs()}
    for path, entry in index["paths"].items():
        url = urlsplit(entry["serverRelativeURL"])
        assert url.path == f"/openapi/v3/{path}"
        (digest,) = parse_qs(url.query)["hash"]
        document = openapi.openapi_v3_document(path)
        assert document is not None
        assert digest == hashlib.sha512(document).hexdigest().upper()
    assert orjson.loads(openapi.openapi_v3_index_bytes()) == index


@pytest.mark.parametrize(
    ("path", "found"),
    [
        pytest.param("api/v1", True, id="core"),
        pytest.param("/apis/apps/v1", True, id="leading-slash"),
        pytest.param("apis/apps/v1beta1", False, id="unserved-version"),
        pytest.param("apis/example.com/v1", False, id="unknown-group"),
        pytest.param("apis/apps", False, id="group-only"),
        pytest.param("api", False, id="api-root"),
    ],
)
def test_document_lookup(path: str, found: bool) -> None:
    assert (openapi.openapi_v3_document(path) is not None) is found


def test_openapi_v2_is_the_empty_protobuf_document_kubectl_accepts() -> None:
    assert openapi.OPENAPI_V2_PROTO == bytes.fromhex("0a03322e30")
    assert openapi.OPENAPI_V2_CONTENT_TYPE == (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    )


def test_importing_builds_nothing() -> None:
    """Start-up must not pay for the schemas: they load on the first OpenAPI request."""
    code = (
        "import kubelite.server.openapi, kubelite.server.discovery\n"
        "from kubelite.api import schemas\n"
        "assert schemas.definitions.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --- each document ----------------------------------------------------------------


@pytest.mark.parametrize(("group", "version"), _all_gvs(), ids=lambda x: x or "core")
def test_document_is_closed_openapi_3(group: str, version: str) -> None:
    raw = openapi.openapi_v3_document(_gv_path(group, version))
    assert raw is not None
    assert b"#/$defs" not in raw
    assert b'"type":["' not in raw
    doc = orjson.loads(raw)
    assert doc["openapi"].startswith("3.0")
    components = doc["components"]["schemas"]
    refs = set(_refs(doc))
    assert refs, "a document without refs carries no schemas"
    for ref in refs:
        assert ref.startswith(REF_PREFIX), ref
        assert ref[len(REF_PREFIX):] in components, ref
    prefix = "/" + _gv_path(group, version) + "/"
    assert all(path.startswith(prefix) for path in doc["paths"])
    operation_ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(operation_ids) == len(set(operation_ids))


def _has_schema(resource: Resource) -> bool:
    try:
        return bool(resource.definition)
    except KeyError:  # metrics.k8s.io: kubernetes-validate ships no schema for it
        return False


@pytest.mark.parametrize("resource", [r for r in RESOURCES if _has_schema(r)], ids=_rid)
def test_kind_schema_carries_its_gvk(resource: Resource) -> None:
    components = _doc(resource.group, resource.version)["components"]["schemas"]
    schema = components[resource.definition]
    assert _gvk(resource) in schema["x-kubernetes-group-version-kind"]
    # The JSON Schema generator's apiVersion/kind enums are not Kubernetes'.
    for field in ("apiVersion", "kind"):
        assert "enum" not in schema["properties"][field]


@pytest.mark.parametrize("resource", RESOURCES, ids=_rid)
def test_explain_finds_the_gvk_on_the_collection_path(resource: Resource) -> None:
    """kubectl explain reads the GVK from the get or post of /…/[namespaces/{namespace}/]<plural>."""
    doc = _doc(resource.group, resource.version)
    base = "/" + _gv_path(resource.group, resource.version)
    scope = "/namespaces/{namespace}" if resource.namespaced else ""
    item = doc["paths"][f"{base}{scope}/{resource.plural}"]
    op = item.get("get") or item.get("post")
    assert op is not None
    assert op["x-kubernetes-group-version-kind"] == _gvk(resource)


@pytest.mark.parametrize(
    "resource", [r for r in RESOURCES if "patch" in r.verbs or r.subresources], ids=_rid
)
def test_every_patch_operation_supports_field_validation_and_smp(resource: Resource) -> None:
    """query_param_verifier_v3 stops at the first patch with the GVK, in map order."""
    doc = _doc(resource.group, resource.version)
    patches = [
        op for _, method, op in _operations(doc)
        if method == "patch" and op["x-kubernetes-group-version-kind"] == _gvk(resource)
    ]
    if "patch" in resource.verbs:
        assert patches
    for op in patches:
        assert op["x-kubernetes-action"] == "patch"
        assert {"name": "fieldValidation", "in": "query"}.items() <= next(
            p for p in op["parameters"] if p["name"] == "fieldValidation"
        ).items()
        assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]
        assert "application/apply-patch+yaml" in op["requestBody"]["content"]


def test_operations_follow_the_registry_verbs() -> None:
    doc = _doc("apps", "v1")
    paths = doc["paths"]
    collection = paths["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert {m for m in PATH_KEYS if m in collection} == {"get", "post", "delete"}
    assert collection["get"]["x-kubernetes-action"] == "list"
    assert collection["delete"]["x-kubernetes-action"] == "deletecollection"
    item = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert {m for m in PATH_KEYS if m in item} == {"get", "put", "patch", "delete"}
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    assert paths["/apis/apps/v1/deployments"]["get"]["operationId"] == (
        "listAppsV1DeploymentForAllNamespaces"
    )
    review = _doc("authorization.k8s.io", "v1")["paths"]
    assert set(review["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]) == {
        "parameters", "post",
    }


def test_scale_subresource_uses_autoscaling_scale() -> None:
    doc = _doc("apps", "v1")
    scale = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert {m for m in PATH_KEYS if m in scale} == {"get", "put", "patch"}
    gvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert all(scale[m]["x-kubernetes-group-version-kind"] == gvk for m in ("get", "put", "patch"))
    assert scale["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": REF_PREFIX + "io.k8s.api.autoscaling.v1.Scale"
    }
    assert "io.k8s.api.autoscaling.v1.Scale" in doc["components"]["schemas"]


@pytest.mark.parametrize(
    ("sub", "methods", "action"),
    [
        pytest.param("exec", {"get", "post"}, "connect", id="exec"),
        pytest.param("portforward", {"get", "post"}, "connect", id="portforward"),
        pytest.param("log", {"get"}, "get", id="log"),
        pytest.param("binding", {"post"}, "post", id="binding"),
        pytest.param("status", {"get", "put", "patch"}, None, id="status"),
    ],
)
def test_pod_subresource_operations(sub: str, methods: set[str], action: str | None) -> None:
    path = _doc("", "v1")["paths"][f"/api/v1/namespaces/{{namespace}}/pods/{{name}}/{sub}"]
    assert {m for m in PATH_KEYS if m in path} == methods
    if action:
        assert {path[m]["x-kubernetes-action"] for m in methods} == {action}
    if sub == "exec":
        names = {p["name"] for p in path["get"]["parameters"]}
        assert {"command", "container", "stdin", "stdout", "stderr", "tty"} <= names


# --- schema conversion -------------------------------------------------------------


def test_deployment_schemas_as_kubectl_explain_reads_them() -> None:
    components = _doc("apps", "v1")["components"]["schemas"]
    spec = components["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["type"] == "object" and spec["nullable"] is True
    replicas = spec["properties"]["replicas"]
    assert (replicas["type"], replicas["format"], replicas["nullable"]) == ("integer", "int32", True)
    strategy = spec["properties"]["strategy"]
    assert strategy["allOf"] == [{"$ref": REF_PREFIX + "io.k8s.api.apps.v1.DeploymentStrategy"}]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert strategy["description"]
    assert "$ref" not in strategy
    assert "rollingUpdate" in components["io.k8s.api.apps.v1.DeploymentStrategy"]["properties"]
    containers = components["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["items"] == {"$ref": REF_PREFIX + "io.k8s.api.core.v1.Container"}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param({"type": ["string", "null"]}, {"type": "string", "nullable": True},
                     id="nullable"),
        pytest.param({"type": "string"}, {"type": "string"}, id="plain-type"),
        pytest.param({"type": ["integer"]}, {"type": "integer"}, id="single-type-list"),
        pytest.param({"$ref": "#/$defs/a.B"}, {"$ref": REF_PREFIX + "a.B"}, id="bare-ref"),
        pytest.param(
            {"$ref": "#/$defs/a.B", "description": "d"},
            {"allOf": [{"$ref": REF_PREFIX + "a.B"}], "description": "d"},
            id="ref-with-siblings-wrapped",
        ),
        pytest.param(
            {"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]},
            {"oneOf": [{"type": "string", "nullable": True}, {"type": "integer", "nullable": True}]},
            id="one-of",
        ),
        pytest.param(
            {"type": ["object", "null"], "additionalProperties": {"$ref": "#/$defs/q.Q"}},
            {"type": "object", "nullable": True, "additionalProperties": {"$ref": REF_PREFIX + "q.Q"}},
            id="map-of-refs",
        ),
        pytest.param(
            {"properties": {"$ref": {"type": ["string", "null"]}, "type": {"type": "string"}}},
            {"properties": {"$ref": {"type": "string", "nullable": True},
                            "type": {"type": "string"}}},
            id="properties-named-like-keywords",
        ),
        pytest.param(
            {"type": "array", "items": {"type": ["string", "null"]}, "enum": [["x", "null"]],
             "x-kubernetes-list-type": "set"},
            {"type": "array", "items": {"type": "string", "nullable": True},
             "enum": [["x", "null"]], "x-kubernetes-list-type": "set"},
            id="values-and-extensions-kept",
        ),
    ],
)
def test_convert(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert openapi._convert(schema) == expected


def test_convert_refuses_what_openapi_3_0_cannot_say() -> None:
    with pytest.raises(ValueError, match="cannot express"):
        openapi._convert({"type": ["string", "integer"]})


def test_every_definition_converts() -> None:
    for name in schemas.definitions():
        converted = orjson.dumps(openapi.component_schema(name))
        assert b"#/$defs" not in converted
