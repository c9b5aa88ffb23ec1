"""Discovery documents against the registry, Kubernetes' fixtures and the PyPI client's models."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from kubernetes.client import ApiClient

from kubelite.api.registry import RESOURCES, Resource, group_versions
from kubelite.server import discovery

KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"


def _rid(resource: Resource) -> str:
    return resource.group_resource


def _python_client_model(data: dict[str, Any], model: str) -> Any:
    """Deserialise as the PyPI client does; its models raise on missing required fields."""
    return ApiClient()._ApiClient__deserialize(data, model)  # type: ignore[attr-defined]


# --- /version -------------------------------------------------------------------------


def test_version_selects_kubectl_1_32_and_satisfies_the_python_client() -> None:
    info = discovery.version_info()
    assert (info["major"], info["minor"]) == ("1", "32")
    assert info["gitVersion"].startswith("v1.32.")
    assert all(isinstance(v, str) for v in info.values())
    assert _python_client_model(info, "VersionInfo").minor == "32"
    assert orjson.loads(discovery.version_bytes()) == info


# --- content negotiation -----------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        pytest.param(KUBECTL_ACCEPT, "v2", id="kubectl-1.32-prefers-v2"),
        pytest.param(f"{V2BETA1},application/json", "v2beta1", id="older-client-v2beta1"),
        pytest.param("application/json, */*", None, id="plain-json"),
        pytest.param("", None, id="no-accept"),
        pytest.param("*/*", None, id="anything"),
        pytest.param(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            f"{V2},application/json",
            "v2",
            id="protobuf-skipped-json-aggregated-taken",
        ),
        pytest.param(f"application/json,{V2}", None, id="client-lists-plain-first"),
        pytest.param(f"application/json;q=0.5,{V2}", "v2", id="q-value-outranks-order"),
        pytest.param(f"{V2};q=0,application/json", None, id="q-zero-refuses"),
        pytest.param(
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
            None,
            id="unknown-version-falls-back",
        ),
        pytest.param(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", None, id="table-skipped"
        ),
        pytest.param(
            "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList", "v2",
            id="spaces-around-parameters",
        ),
    ],
)
def test_negotiation(accept: str, expected: str | None) -> None:
    assert discovery.negotiated_discovery_version(accept) == expected
    assert discovery.negotiate_discovery(accept) is (expected is not None)


def test_aggregated_content_type_is_exactly_what_client_go_decodes() -> None:
    assert discovery.AGGREGATED_CONTENT_TYPE == V2
    assert discovery.aggregated_content_type("v2beta1") == V2BETA1


# --- unaggregated discovery ----------------------------------------------------------


def test_api_versions_lists_core_v1_for_the_python_client() -> None:
    doc = discovery.api_versions(server_address="127.0.0.1:6443")
    assert doc["kind"] == "APIVersions"
    assert doc["versions"] == ["v1"]
    assert doc["serverAddressByClientCIDRs"] == [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}
    ]
    _python_client_model(doc, "V1APIVersions")


def test_api_group_list_has_every_named_group_with_its_preferred_version() -> None:
    doc = discovery.api_group_list()
    assert (doc["kind"], doc["apiVersion"]) == ("APIGroupList", "v1")
    by_name = {g["name"]: g for g in doc["groups"]}
    expected = {g: vs for g, vs in group_versions().items() if g}
    assert set(by_name) == set(expected)
    for name, versions in expected.items():
        group = by_name[name]
        assert [v["version"] for v in group["versions"]] == versions
        assert group["preferredVersion"] == {"groupVersion": f"{name}/{versions[0]}",
                                             "version": versions[0]}
    _python_client_model(doc, "V1APIGroupList")


def test_api_group_for_one_group_and_none_for_unknown() -> None:
    doc = discovery.api_group("apps")
    assert doc is not None
    assert (doc["kind"], doc["name"]) == ("APIGroup", "apps")
    assert doc["preferredVersion"]["groupVersion"] == "apps/v1"
    assert discovery.api_group("example.com") is None
    assert discovery.api_group("") is None


@pytest.mark.parametrize("resource", RESOURCES, ids=_rid)
def test_api_resource_list_describes_each_resource(resource: Resource) -> None:
    doc = discovery.api_resource_list(resource.group, resource.version)
    assert doc is not None
    entries = {e["name"]: e for e in doc["resources"]}
    main = entries[resource.plural]
    assert main["singularName"] == resource.singular_name
    assert main["namespaced"] is resource.namespaced
    assert main["kind"] == resource.kind
    assert main["verbs"] == list(resource.verbs)
    assert main.get("shortNames", []) == list(resource.short_names)
    assert main.get("categories", []) == list(resource.categories)
    assert "group" not in main and "version" not in main
    assert ("storageVersionHash" in main) is resource.stored
    for sub in resource.subresources:
        entry = entries[f"{resource.plural}/{sub.name}"]
        assert entry["singularName"] == ""
        assert entry["namespaced"] is resource.namespaced
        assert entry["kind"] == (sub.kind or resource.kind)
        assert entry["verbs"] == list(sub.verbs)


@pytest.mark.parametrize(
    ("group", "name", "expected"),
    [
        pytest.param("apps", "deployments/scale",
                     {"group": "autoscaling", "version": "v1", "kind": "Scale"}, id="scale"),
        pytest.param("apps", "deployments/status", {"kind": "Deployment"}, id="status-parent-kind"),
        pytest.param("", "pods/log", {"kind": "Pod", "verbs": ["get"]}, id="pod-log"),
        pytest.param("", "pods/exec", {"kind": "PodExecOptions", "verbs": ["create", "get"]},
                     id="pod-exec"),
        pytest.param("", "pods/eviction", {"group": "policy", "version": "v1", "kind": "Eviction"},
                     id="eviction-other-group"),
        pytest.param("", "serviceaccounts/token",
                     {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"},
                     id="token"),
    ],
)
def test_subresource_entries_match_kubernetes(group: str, name: str, expected: dict[str, Any]) -> None:
    doc = discovery.api_resource_list(group, "v1")
    assert doc is not None
    entry = next(e for e in doc["resources"] if e["name"] == name)
    assert {k: entry.get(k) for k in expected} == expected
    if "group" not in expected:
        assert "group" not in entry and "version" not in entry


def test_api_resource_list_shape_core_and_group() -> None:
    core = discovery.api_resource_list("", "v1")
    apps = discovery.api_resource_list("apps", "v1")
    assert core is not None and apps is not None
    # Kubernetes sends no apiVersion on /api/v1 but does on named groups.
    assert "apiVersion" not in core and core["groupVersion"] == "v1"
    assert apps["apiVersion"] == "v1" and apps["groupVersion"] == "apps/v1"
    names = [e["name"] for e in core["resources"]]
    assert names == sorted(names)
    _python_client_model(core, "V1APIResourceList")
    _python_client_model(apps, "V1APIResourceList")
    assert discovery.api_resource_list("apps", "v1beta1") is None
    assert discovery.api_resource_list("example.com", "v1") is None


@pytest.mark.parametrize(
    ("group", "version", "kind", "expected"),
    [
        pytest.param("", "v1", "Pod", "xPOwRZ+Yhw8=", id="pod"),
        pytest.param("", "v1", "ConfigMap", "qFsyl6wFWjQ=", id="configmap"),
        pytest.param("apps", "v1", "Deployment", "8aSe+NMegvE=", id="deployment"),
    ],
)
def test_storage_version_hash_matches_kubernetes(group: str, version: str, kind: str,
                                                 expected: str) -> None:
    assert discovery.storage_version_hash(group, version, kind) == expected


# --- aggregated discovery ------------------------------------------------------------


def _aggregated_resources() -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    for doc in (discovery.aggregated_core(), discovery.aggregated_groups()):
        for item in doc["items"]:
            group = item["metadata"].get("name", "")
            for version in item["versions"]:
                assert version["freshness"] == "Current"
                for entry in version["resources"]:
                    out[(group, version["version"], entry["resource"])] = entry
    return out


def test_aggregated_documents_are_well_formed() -> None:
    core = discovery.aggregated_core()
    groups = discovery.aggregated_groups()
    for doc in (core, groups):
        assert (doc["kind"], doc["apiVersion"]) == ("APIGroupDiscoveryList", "apidiscovery.k8s.io/v2")
        assert doc["metadata"] == {}
    assert len(core["items"]) == 1
    assert core["items"][0]["metadata"] == {"creationTimestamp": None}
    assert [v["version"] for v in core["items"][0]["versions"]] == ["v1"]
    names = [i["metadata"]["name"] for i in groups["items"]]
    assert names == [g for g in group_versions() if g]
    assert discovery.aggregated_groups(version="v2beta1")["apiVersion"] == (
        "apidiscovery.k8s.io/v2beta1"
    )


@pytest.mark.parametrize("resource", RESOURCES, ids=_rid)
def test_aggregated_entry_for_each_resource(resource: Resource) -> None:
    entry = _aggregated_resources()[(resource.group, resource.version, resource.plural)]
    assert entry["scope"] == ("Namespaced" if resource.namespaced else "Cluster")
    assert entry["singularResource"] == resource.singular_name
    assert entry["responseKind"] == {"group": "", "version": "", "kind": resource.kind}
    assert entry["verbs"] == list(resource.verbs)
    assert entry.get("shortNames", []) == list(resource.short_names)
    assert entry.get("categories", []) == list(resource.categories)
    subs = {s["subresource"]: s for s in entry.get("subresources", [])}
    assert set(subs) == {s.name for s in resource.subresources}
    for sub in resource.subresources:
        assert subs[sub.name]["verbs"] == list(sub.verbs)
        assert subs[sub.name]["responseKind"]["kind"] == (sub.kind or resource.kind)


def test_aggregated_scale_subresource_names_autoscaling() -> None:
    entry = _aggregated_resources()[("apps", "v1", "deployments")]
    subs = {s["subresource"]: s for s in entry["subresources"]}
    assert subs["scale"]["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert subs["status"]["responseKind"] == {"group": "", "version": "", "kind": "Deployment"}


# --- the HTTP-facing entry point ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "accept", "content_type", "kind"),
    [
        pytest.param("/api", KUBECTL_ACCEPT, V2, "APIGroupDiscoveryList", id="api-aggregated"),
        pytest.param("/apis", KUBECTL_ACCEPT, V2, "APIGroupDiscoveryList", id="apis-aggregated"),
        pytest.param("/apis", f"{V2BETA1},application/json", V2BETA1, "APIGroupDiscoveryList",
                     id="apis-v2beta1"),
        pytest.param("/api", "application/json", "application/json", "APIVersions", id="api-plain"),
        pytest.param("/apis/", "", "application/json", "APIGroupList", id="apis-plain"),
        pytest.param("/api/v1", KUBECTL_ACCEPT, "application/json", "APIResourceList",
                     id="core-resources"),
        pytest.param("/apis/apps/v1", "", "application/json", "APIResourceList",
                     id="group-resources"),
        pytest.param("/apis/apps", "", "application/json", "APIGroup", id="group"),
        pytest.param("/version", "", "application/json", None, id="version"),
    ],
)
def test_discovery_response(path: str, accept: str, content_type: str, kind: str | None) -> None:
    result = discovery.discovery_response(path, accept=accept)
    assert result is not None
    body, got_type = result
    assert got_type == content_type
    doc = orjson.loads(body)
    assert doc.get("kind") == kind
    if content_type == V2BETA1:
        assert doc["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


@pytest.mark.parametrize(
    "path",
    ["/apis/example.com", "/apis/apps/v2", "/api/v2", "/apis/apps/v1/deployments", "/healthz"],
)
def test_discovery_response_none_outside_discovery(path: str) -> None:
    assert discovery.discovery_response(path) is None


def test_encoded_documents_are_memoised() -> None:
    first = discovery.discovery_response("/apis", accept=KUBECTL_ACCEPT)
    second = discovery.discovery_response("/apis", accept=KUBECTL_ACCEPT)
    assert first is not None and second is not None
    assert first[0] is second[0]
    assert orjson.loads(first[0]) == discovery.aggregated_groups()
