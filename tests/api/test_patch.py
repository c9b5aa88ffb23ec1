"""JSON patch, merge patch and strategic merge patch, against Kubernetes' documented behaviour."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from kubelite.api.errors import APIError
from kubelite.api.patch import json_patch, merge_patch, strategic_merge_patch
from kubelite.api.schemas import kind_schema

POD = kind_schema("", "v1", "Pod")
SCHEMAS = {
    "Pod": POD,
    "Deployment": kind_schema("apps", "v1", "Deployment"),
    "Service": kind_schema("", "v1", "Service"),
    None: None,
}


def c(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def pod(*containers: dict[str, Any], meta: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", **(meta or {})},
        "spec": {"containers": list(containers), **spec},
    }


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["containers"]


@dataclass(frozen=True)
class Case:
    id: str
    original: dict[str, Any]
    patch: dict[str, Any]
    want: dict[str, Any]
    kind: str | None = "Pod"


SMP_CASES = [
    Case(
        "containers are merged by name",
        pod(c("a", image="a:1"), c("b", image="b:1")),
        {"spec": {"containers": [c("b", image="b:2")]}},
        pod(c("a", image="a:1"), c("b", image="b:2")),
    ),
    Case(
        "a new container without $setElementOrder goes first, as in Kubernetes",
        pod(c("a", image="a:1")),
        {"spec": {"containers": [c("z", image="z:1")]}},
        pod(c("z", image="z:1"), c("a", image="a:1")),
    ),
    Case(
        "$setElementOrder puts the new container last",
        pod(c("a", image="a:1")),
        {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "z"}],
                  "containers": [c("z", image="z:1")]}},
        pod(c("a", image="a:1"), c("z", image="z:1")),
    ),
    Case(
        "$setElementOrder alone reorders the live list",
        pod(c("a"), c("b"), c("c")),
        {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}},
        pod(c("c"), c("a"), c("b")),
    ),
    Case(
        "ports are merged by containerPort",
        pod(c("a", ports=[{"containerPort": 80}, {"containerPort": 443}])),
        {"spec": {"containers": [c("a", ports=[{"containerPort": 80, "name": "http"}])]}},
        pod(c("a", ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 443}])),
    ),
    Case(
        "env is merged by name",
        pod(c("a", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
        {"spec": {"containers": [c("a", env=[{"name": "B", "value": "3"}])]}},
        pod(c("a", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "3"}])),
    ),
    Case(
        "$patch: delete removes one env item",
        pod(c("a", env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
        {"spec": {"containers": [c("a", env=[{"name": "A", "$patch": "delete"}])]}},
        pod(c("a", env=[{"name": "B", "value": "2"}])),
    ),
    Case(
        "client-side apply removes a container with $patch: delete and $setElementOrder",
        pod(c("a", image="a:1"), c("b", image="b:1")),
        {"spec": {"$setElementOrder/containers": [{"name": "a"}],
                  "containers": [{"$patch": "delete", "name": "b"}]}},
        pod(c("a", image="a:1")),
    ),
    Case(
        "$patch: replace in a list keeps only the patch items",
        pod(c("a"), c("b")),
        {"spec": {"containers": [c("z", image="z:1"), {"$patch": "replace"}]}},
        pod(c("z", image="z:1")),
    ),
    Case(
        "volumes are merged by name and $retainKeys drops the old volume source",
        pod(c("a"), volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]),
        {"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"},
                               "$retainKeys": ["hostPath", "name"]}]}},
        pod(c("a"), volumes=[{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]),
    ),
    Case(
        "tolerations are replaced, not merged",
        pod(c("a"), tolerations=[{"key": "k1", "operator": "Exists"}, {"key": "k2", "operator": "Exists"}]),
        {"spec": {"tolerations": [{"key": "k3", "operator": "Exists"}]}},
        pod(c("a"), tolerations=[{"key": "k3", "operator": "Exists"}]),
    ),
    Case(
        "args are replaced",
        pod(c("a", args=["x", "y"])),
        {"spec": {"containers": [c("a", args=["z"])]}},
        pod(c("a", args=["z"])),
    ),
    Case(
        "finalizers are merged as a set, new values first",
        pod(c("a"), meta={"finalizers": ["f/a", "f/b"]}),
        {"metadata": {"finalizers": ["f/c", "f/a"]}},
        pod(c("a"), meta={"finalizers": ["f/c", "f/a", "f/b"]}),
    ),
    Case(
        "finalizers follow $setElementOrder",
        pod(c("a"), meta={"finalizers": ["f/a", "f/b"]}),
        {"metadata": {"$setElementOrder/finalizers": ["f/a", "f/b", "f/c"], "finalizers": ["f/c"]}},
        pod(c("a"), meta={"finalizers": ["f/a", "f/b", "f/c"]}),
    ),
    Case(
        "$deleteFromPrimitiveList removes finalizers",
        pod(c("a"), meta={"finalizers": ["f/a", "f/b", "f/c"]}),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f/a", "f/c"]}},
        pod(c("a"), meta={"finalizers": ["f/b"]}),
    ),
    Case(
        "$deleteFromPrimitiveList of an absent list is a no-op",
        pod(c("a")),
        {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f/a"]}},
        pod(c("a")),
    ),
    Case(
        "null deletes a label and a field",
        pod(c("a", image="a:1", imagePullPolicy="Always"), meta={"labels": {"x": "1", "y": "2"}}),
        {"metadata": {"labels": {"x": None}}, "spec": {"containers": [c("a", imagePullPolicy=None)]}},
        pod(c("a", image="a:1"), meta={"labels": {"y": "2"}}),
    ),
    Case(
        "null for an absent field is dropped",
        pod(c("a")),
        {"metadata": {"annotations": {"gone": None, "kept": "1"}}},
        pod(c("a"), meta={"annotations": {"kept": "1"}}),
    ),
    Case(
        "$patch: replace replaces a map",
        pod(c("a"), meta={"labels": {"x": "1", "y": "2"}}),
        {"metadata": {"labels": {"$patch": "replace", "z": "3"}}},
        pod(c("a"), meta={"labels": {"z": "3"}}),
    ),
    Case(
        "$patch: delete empties a map",
        pod(c("a"), nodeSelector={"disk": "ssd"}),
        {"spec": {"nodeSelector": {"$patch": "delete"}}},
        pod(c("a"), nodeSelector={}),
    ),
    Case(
        "a new list item's nested directives are processed too",
        pod(c("a")),
        {"spec": {"containers": [c("b", env=[{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}])]}},
        pod(c("b", env=[{"name": "X", "value": "1"}]), c("a")),
    ),
    Case(
        "a deployment's strategy keeps only $retainKeys",
        {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
        {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
        {"spec": {"strategy": {"type": "Recreate"}}},
        "Deployment",
    ),
    Case(
        "kubectl set image patches one container of a template",
        {"spec": {"template": {"spec": {"containers": [c("web", image="nginx:1"), c("side", image="busybox")]}}}},
        {"spec": {"template": {"spec": {"containers": [c("web", image="nginx:2")]}}}},
        {"spec": {"template": {"spec": {"containers": [c("web", image="nginx:2"), c("side", image="busybox")]}}}},
        "Deployment",
    ),
    Case(
        "rollout restart adds a template annotation",
        {"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}},
        {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}},
        {"spec": {"template": {"metadata": {"labels": {"app": "web"},
                                            "annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}},
        "Deployment",
    ),
    Case(
        "service ports are merged by port",
        {"spec": {"ports": [{"port": 80, "targetPort": 80}, {"port": 443}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}},
        {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
        "Service",
    ),
    Case(
        "without a schema it is a merge patch: lists are replaced",
        {"spec": {"items": [{"name": "a"}], "keep": 1}},
        {"spec": {"items": [{"name": "b"}], "keep": None}},
        {"spec": {"items": [{"name": "b"}]}},
        None,
    ),
    Case(
        "a field unknown to the schema merges like a map",
        pod(c("a"), extra={"a": 1}),
        {"spec": {"extra": {"b": 2}}},
        pod(c("a"), extra={"a": 1, "b": 2}),
    ),
]


@pytest.mark.parametrize("case", SMP_CASES, ids=lambda case: case.id)
def test_strategic_merge_patch(case: Case) -> None:
    original, patch = copy.deepcopy(case.original), copy.deepcopy(case.patch)
    assert strategic_merge_patch(original, patch, SCHEMAS[case.kind]) == case.want
    assert original == case.original and patch == case.patch, "inputs were mutated"


def test_strategic_merge_patch_result_shares_nothing_with_the_input() -> None:
    original = pod(c("a", env=[{"name": "A", "value": "1"}]))
    result = strategic_merge_patch(original, {"metadata": {"labels": {"x": "1"}}}, POD)
    containers(result)[0]["env"][0]["value"] = "changed"
    assert containers(original)[0]["env"][0]["value"] == "1"


SMP_ERRORS = [
    ("a patch that is not an object", ["x"], "must be a JSON object"),
    ("an unknown $patch in a map", {"metadata": {"labels": {"$patch": "bogus"}}}, "unknown patch type"),
    ("$patch: merge in a map", {"metadata": {"labels": {"$patch": "merge"}}}, "unknown patch type"),
    ("$patch: merge in a list", {"spec": {"containers": [{"$patch": "merge"}]}},
     "merging lists cannot yet be specified in the patch"),
    ("a list item without its merge key", {"spec": {"containers": [{"image": "x"}]}},
     "does not contain declared merge key: name"),
    ("$patch: delete without the merge key", {"spec": {"containers": [{"$patch": "delete"}]}},
     "does not contain declared merge key: name"),
    ("$retainKeys that is not a list", {"spec": {"$retainKeys": "x"}}, "invalid patch format of retainKeys"),
    ("a field missing from $retainKeys", {"spec": {"$retainKeys": ["a"], "b": 1}},
     "invalid patch format of retainKeys"),
    ("$setElementOrder in another order than the patch list",
     {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
               "containers": [c("b"), c("a")]}}, "doesn't match $setElementOrder/ list"),
    ("$setElementOrder that is not a list", {"spec": {"$setElementOrder/containers": "a"}},
     "invalid patch format of setElementOrder list"),
    ("$deleteFromPrimitiveList that is not a list", {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
     "invalid patch format of primitive list"),
    ("a list of lists in a merging list", {"metadata": {"finalizers": [["a"]]}}, "lists of lists are not supported"),
    ("mixed element types in a merging list", {"metadata": {"finalizers": ["a", {"b": 1}]}},
     "list element types are not identical"),
]


@pytest.mark.parametrize(("patch", "message"), [e[1:] for e in SMP_ERRORS], ids=[e[0] for e in SMP_ERRORS])
def test_strategic_merge_patch_errors(patch: Any, message: str) -> None:
    original = pod(c("a"), meta={"finalizers": ["x"]})
    with pytest.raises(APIError) as err:
        strategic_merge_patch(original, patch, POD)
    assert err.value.code == 400
    assert err.value.reason == "BadRequest"
    assert message in err.value.message


# RFC 7386, appendix A.
MERGE_CASES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ({"a": {"b": 1}}, {"a": {"c": [None, {"d": None}]}}, {"a": {"b": 1, "c": [None, {"d": None}]}}),
]


@pytest.mark.parametrize(("original", "patch", "want"), MERGE_CASES, ids=[str(m[1]) for m in MERGE_CASES])
def test_merge_patch(original: dict[str, Any], patch: dict[str, Any], want: dict[str, Any]) -> None:
    before = copy.deepcopy(original)
    assert merge_patch(original, patch) == want
    assert original == before


def test_merge_patch_rejects_a_non_object() -> None:
    with pytest.raises(APIError) as err:
        merge_patch({"a": 1}, [1])
    assert err.value.code == 400


def test_merge_patch_scale() -> None:
    original = {"spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}}}
    assert merge_patch(original, {"spec": {"replicas": 4}}) == {
        "spec": {"replicas": 4, "selector": {"matchLabels": {"a": "b"}}}
    }


DOC = {"metadata": {"name": "d", "annotations": {"a": "1"}}, "spec": {"replicas": 1, "args": ["x"]}}

JSON_CASES = [
    ("add", [{"op": "add", "path": "/spec/paused", "value": True}],
     {**DOC, "spec": {"replicas": 1, "args": ["x"], "paused": True}}),
    ("append to a list", [{"op": "add", "path": "/spec/args/-", "value": "y"}],
     {**DOC, "spec": {"replicas": 1, "args": ["x", "y"]}}),
    ("replace", [{"op": "replace", "path": "/spec/replicas", "value": 3}],
     {**DOC, "spec": {"replicas": 3, "args": ["x"]}}),
    ("remove", [{"op": "remove", "path": "/metadata/annotations/a"}],
     {**DOC, "metadata": {"name": "d", "annotations": {}}}),
    ("test then replace", [{"op": "test", "path": "/spec/replicas", "value": 1},
                           {"op": "replace", "path": "/spec/replicas", "value": 2}],
     {**DOC, "spec": {"replicas": 2, "args": ["x"]}}),
    ("move", [{"op": "move", "from": "/spec/args", "path": "/spec/command"}],
     {**DOC, "spec": {"replicas": 1, "command": ["x"]}}),
    ("copy", [{"op": "copy", "from": "/metadata/name", "path": "/metadata/annotations/n"}],
     {**DOC, "metadata": {"name": "d", "annotations": {"a": "1", "n": "d"}}}),
    ("escaped keys", [{"op": "add", "path": "/metadata/annotations/example.com~1x", "value": "v"}],
     {**DOC, "metadata": {"name": "d", "annotations": {"a": "1", "example.com/x": "v"}}}),
]


@pytest.mark.parametrize(("patch", "want"), [j[1:] for j in JSON_CASES], ids=[j[0] for j in JSON_CASES])
def test_json_patch(patch: list[dict[str, Any]], want: dict[str, Any]) -> None:
    before = copy.deepcopy(DOC)
    assert json_patch(DOC, patch) == want
    assert before == DOC


JSON_ERRORS = [
    ("a failed test is 422", [{"op": "test", "path": "/spec/replicas", "value": 5}], 422, "Invalid",
     "the server rejected our request due to an error in our request"),
    ("a missing path is 400", [{"op": "replace", "path": "/spec/nothing/deeper", "value": 1}], 400, "BadRequest",
     "jsonpatch replace operation does not apply: doc is missing path"),
    ("removing a missing key is 400", [{"op": "remove", "path": "/spec/nothing"}], 400, "BadRequest",
     "jsonpatch remove operation does not apply"),
    ("a path without a slash is 400", [{"op": "add", "path": "invalid", "value": 1}], 400, "BadRequest",
     "doc is missing path"),
    ("an unknown op is 400", [{"op": "bogus", "path": "/a"}], 400, "BadRequest", "Unknown operation"),
    ("an object body is 400", {"op": "add", "path": "/a", "value": 1}, 400, "BadRequest",
     "cannot unmarshal object into Go value of type jsonpatch.Patch"),
    ("too many operations is 413", [{"op": "test", "path": "/metadata/name", "value": "d"}] * 10001, 413,
     "RequestEntityTooLarge", "The allowed maximum operations in a JSON patch is 10000, got: 10001"),
]


@pytest.mark.parametrize(("patch", "code", "reason", "message"), [j[1:] for j in JSON_ERRORS],
                         ids=[j[0] for j in JSON_ERRORS])
def test_json_patch_errors(patch: Any, code: int, reason: str, message: str) -> None:
    with pytest.raises(APIError) as err:
        json_patch(DOC, patch)
    assert (err.value.code, err.value.reason) == (code, reason)
    assert message in err.value.message


def test_json_patch_failure_leaves_the_input_alone() -> None:
    before = copy.deepcopy(DOC)
    with pytest.raises(APIError):
        json_patch(DOC, [{"op": "replace", "path": "/spec/replicas", "value": 9},
                         {"op": "test", "path": "/spec/replicas", "value": 1}])
    assert DOC == before
