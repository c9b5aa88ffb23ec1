"""Server-side apply and managedFields, following the apiserver's field manager."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubelite.api import fieldpath as fp
from kubelite.api.apply import server_side_apply, update_managed_fields
from kubelite.api.errors import APIError
from kubelite.api.schemas import kind_schema

DEPLOYMENT = kind_schema("apps", "v1", "Deployment")
CONFIGMAP = kind_schema("", "v1", "ConfigMap")
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"


def container(name: str, image: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def deployment(*containers: dict[str, Any], replicas: int | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if replicas is not None:
        spec["replicas"] = replicas
    if containers:
        spec["template"] = {"spec": {"containers": list(containers)}}
    obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web", "namespace": "default"}}
    if spec:
        obj["spec"] = spec
    if labels is not None:
        obj["metadata"]["labels"] = labels
    return obj


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str = "kubectl", *,
          force: bool = False, now: str = T0) -> dict[str, Any]:
    before = copy.deepcopy((live, applied))
    result = server_side_apply(live, applied, manager=manager, force=force, schema=DEPLOYMENT, now=now)
    assert (live, applied) == before, "inputs were mutated"
    return result


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def owned(obj: dict[str, Any], manager: str) -> set[str]:
    entry = managers(obj).get(manager)
    return {fp.path_string(p) for p in fp.members(entry["fieldsV1"])} if entry else set()


def images(obj: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}


def created_by_update(obj: dict[str, Any], manager: str = "kubectl-client-side-apply") -> dict[str, Any]:
    new = copy.deepcopy(obj)
    new["metadata"].update(uid="u1", resourceVersion="1", creationTimestamp=T0, generation=1)
    update_managed_fields(None, new, manager=manager, schema=DEPLOYMENT, now=T0)
    return new


# ---- apply -------------------------------------------------------------------


def test_apply_creates_with_an_apply_entry() -> None:
    obj = apply(None, deployment(container("app", "nginx:1"), replicas=2, labels={"app": "web"}))
    assert obj["spec"]["replicas"] == 2
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl",
        "operation": "Apply",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}},
                }}},
            },
        },
    }]


def test_reapplying_unchanged_keeps_object_and_time() -> None:
    config = deployment(container("app", "nginx:1"), replicas=2)
    first = apply(None, config, now=T0)
    again = apply(first, config, now=T1)
    assert again == first


def test_reapplying_a_change_updates_the_time() -> None:
    first = apply(None, deployment(replicas=2), now=T0)
    second = apply(first, deployment(replicas=3), now=T1)
    assert second["spec"]["replicas"] == 3
    assert managers(second)["kubectl"]["time"] == T1


def test_an_omitted_field_is_removed() -> None:
    first = apply(None, deployment(container("app", "nginx:1"), replicas=2, labels={"a": "1", "b": "2"}))
    second = apply(first, deployment(container("app", "nginx:1"), labels={"a": "1"}))
    assert "replicas" not in second["spec"]
    assert second["metadata"]["labels"] == {"a": "1"}
    assert owned(second, "kubectl") >= {".metadata.labels.a"}
    assert ".spec.replicas" not in owned(second, "kubectl")


def test_an_omitted_field_that_another_manager_owns_stays() -> None:
    first = apply(None, deployment(replicas=2, labels={"a": "1", "b": "2"}))
    edited = copy.deepcopy(first)
    edited["metadata"]["labels"]["b"] = "3"
    update_managed_fields(first, edited, manager="kubectl-edit", schema=DEPLOYMENT, now=T1)
    second = apply(edited, deployment(replicas=2, labels={"a": "1"}))
    assert second["metadata"]["labels"] == {"a": "1", "b": "3"}
    assert owned(second, "kubectl-edit") == {".metadata.labels.b"}


def test_an_omitted_container_is_removed() -> None:
    first = apply(None, deployment(container("a", "a:1"), container("b", "b:1")))
    second = apply(first, deployment(container("a", "a:1")))
    assert images(second) == {"a": "a:1"}


def test_conflict_with_another_manager_is_409() -> None:
    live = created_by_update(deployment(container("app", "nginx:1"), replicas=1))
    with pytest.raises(APIError) as err:
        apply(live, deployment(replicas=3))
    assert err.value.code == 409
    assert err.value.reason == "Conflict"
    assert err.value.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert err.value.status()["details"] == {"causes": [{
        "reason": "FieldManagerConflict",
        "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
        "field": ".spec.replicas",
    }]}


def test_conflicts_are_listed_per_manager() -> None:
    live = created_by_update(deployment(container("app", "nginx:1"), replicas=1))
    with pytest.raises(APIError) as err:
        apply(live, deployment(container("app", "nginx:2"), replicas=3))
    assert err.value.message == (
        "Apply failed with 2 conflicts: "
        'conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="app"].image'
    )
    fields = [c["field"] for c in err.value.details["causes"]]
    assert fields == [".spec.replicas", '.spec.template.spec.containers[name="app"].image']


def test_conflict_with_another_applier_names_it_without_version() -> None:
    live = apply(None, deployment(replicas=1), manager="ci")
    with pytest.raises(APIError) as err:
        apply(live, deployment(replicas=2), manager="kubectl")
    assert err.value.message == 'Apply failed with 1 conflict: conflict with "ci": .spec.replicas'


def test_force_moves_ownership() -> None:
    live = created_by_update(deployment(container("app", "nginx:1"), replicas=1))
    obj = apply(live, deployment(replicas=3), force=True, now=T1)
    assert obj["spec"]["replicas"] == 3
    assert owned(obj, "kubectl") == {".spec.replicas"}
    assert ".spec.replicas" not in owned(obj, "kubectl-client-side-apply")
    assert '.spec.template.spec.containers[name="app"].image' in owned(obj, "kubectl-client-side-apply")


def test_same_value_is_shared_without_conflict() -> None:
    live = created_by_update(deployment(container("app", "nginx:1"), replicas=1))
    obj = apply(live, deployment(replicas=1))
    assert ".spec.replicas" in owned(obj, "kubectl")
    assert ".spec.replicas" in owned(obj, "kubectl-client-side-apply")


def test_two_managers_own_different_containers() -> None:
    one = apply(None, deployment(container("a", "a:1")), manager="team-a")
    two = apply(one, deployment(container("b", "b:1")), manager="team-b")
    assert images(two) == {"a": "a:1", "b": "b:1"}
    assert '.spec.template.spec.containers[name="a"]' in owned(two, "team-a")
    assert '.spec.template.spec.containers[name="b"]' in owned(two, "team-b")
    three = apply(two, deployment(container("a", "a:2")), manager="team-a")
    assert images(three) == {"a": "a:2", "b": "b:1"}
    with pytest.raises(APIError):
        apply(three, deployment(container("b", "b:9")), manager="team-a")
    four = apply(three, deployment(container("b", "b:1")), manager="team-b", now=T1)
    assert images(four) == {"a": "a:2", "b": "b:1"}
    five = apply(four, deployment(), manager="team-a")
    assert images(five) == {"b": "b:1"}
    assert "team-a" not in managers(five)


def test_list_merge_keeps_live_items_and_follows_applied_order() -> None:
    live = apply(None, deployment(container("a", "a:1"), container("b", "b:1")), manager="one")
    obj = apply(live, deployment(container("b", "b:1"), container("c", "c:1")), manager="two")
    assert list(images(obj)) == ["a", "b", "c"]


def test_ports_without_protocol_match_the_defaulted_live_port() -> None:
    live = apply(None, deployment(container("a", "a:1", ports=[{"containerPort": 80}])))
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    obj = apply(live, deployment(container("a", "a:1", ports=[{"containerPort": 80, "name": "http"}])))
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP", "name": "http"}
    ]
    assert '.spec.template.spec.containers[name="a"].ports[containerPort=80,protocol="TCP"].name' in owned(
        obj, "kubectl"
    )


def test_applying_to_an_object_without_managed_fields_creates_before_first_apply() -> None:
    live = deployment(container("app", "nginx:1"), replicas=1)
    with pytest.raises(APIError) as err:
        apply(live, deployment(replicas=4))
    assert 'conflict with "before-first-apply" using apps/v1: .spec.replicas' in err.value.message
    obj = apply(live, deployment(replicas=1))
    assert '.spec.template.spec.containers[name="app"].image' in owned(obj, "before-first-apply")


def test_applied_managed_fields_are_rejected() -> None:
    config = deployment(replicas=1)
    config["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(APIError) as err:
        apply(None, config)
    assert (err.value.code, err.value.message) == (400, "metadata.managedFields must be nil")


def test_apply_ignores_status_on_the_main_resource() -> None:
    config = deployment(replicas=1)
    config["status"] = {"replicas": 5}
    obj = apply(None, config)
    assert "status" not in obj
    assert owned(obj, "kubectl") == {".spec.replicas"}


def test_apply_without_schema_owns_every_key() -> None:
    config = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
              "spec": {"size": 1, "tags": ["a"]}}
    obj = server_side_apply(None, config, manager="m", force=False, schema=None, now=T0)
    assert obj["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:spec": {".": {}, "f:size": {}, "f:tags": {}}
    }
    again = server_side_apply(obj, {**config, "spec": {"tags": ["b"]}}, manager="m", force=False,
                              schema=None, now=T1)
    assert again["spec"] == {"tags": ["b"]}


def test_apply_set_list_unions_values() -> None:
    live = apply(None, {**deployment(), "metadata": {"name": "web", "finalizers": ["x/a"]}}, manager="one")
    obj = apply(live, {**deployment(), "metadata": {"name": "web", "finalizers": ["x/b"]}}, manager="two")
    assert obj["metadata"]["finalizers"] == ["x/a", "x/b"]
    assert owned(obj, "two") == {'.metadata.finalizers[="x/b"]'}


def test_an_omitted_set_value_is_removed_unless_shared() -> None:
    def with_finalizers(*values: str) -> dict[str, Any]:
        return {**deployment(), "metadata": {"name": "web", "finalizers": list(values)}}

    live = apply(None, with_finalizers("x/a", "x/b"), manager="one")
    live = apply(live, with_finalizers("x/b"), manager="two")
    obj = apply(live, with_finalizers(), manager="one")
    assert obj["metadata"]["finalizers"] == ["x/b"]


def test_an_atomic_list_is_replaced_and_owned_whole() -> None:
    live = apply(None, deployment(container("a", "a:1", args=["x", "y"])))
    obj = apply(live, deployment(container("a", "a:1", args=["z"])))
    assert obj["spec"]["template"]["spec"]["containers"][0]["args"] == ["z"]
    assert '.spec.template.spec.containers[name="a"].args' in owned(obj, "kubectl")
    other = created_by_update(deployment(container("a", "a:1", args=["x"])))
    with pytest.raises(APIError) as err:
        apply(other, deployment(container("a", "a:1", args=["z"])))
    assert err.value.details["causes"][0]["field"] == '.spec.template.spec.containers[name="a"].args'


def test_apply_entries_sort_before_update_entries() -> None:
    live = created_by_update(deployment(container("app", "nginx:1"), replicas=1))
    obj = apply(live, deployment(replicas=1), now=T2)
    assert [(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]] == [
        ("kubectl", "Apply"), ("kubectl-client-side-apply", "Update")
    ]


# ---- updates -----------------------------------------------------------------


def test_create_records_every_field_but_the_servers() -> None:
    obj = created_by_update(deployment(container("app", "nginx:1"), replicas=1, labels={"app": "web"}))
    [entry] = obj["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["time"]) == (
        "kubectl-client-side-apply", "Update", "apps/v1", T0
    )
    assert owned(obj, "kubectl-client-side-apply") == {
        ".metadata.labels",
        ".metadata.labels.app",
        ".spec.replicas",
        '.spec.template.spec.containers[name="app"]',
        '.spec.template.spec.containers[name="app"].image',
        '.spec.template.spec.containers[name="app"].name',
    }


def test_alike_creates_differ_only_where_their_shapes_do() -> None:
    """Creates are recorded by shape: values of plain fields never change the set,
    while the keys of a map and the items of a list do."""
    first = created_by_update(deployment(container("app", "nginx:1"), replicas=1, labels={"app": "a"}))
    alike = created_by_update(deployment(container("app", "nginx:2"), replicas=7, labels={"app": "b"}))
    assert alike["metadata"]["managedFields"] == first["metadata"]["managedFields"]
    other_key = created_by_update(deployment(container("app", "nginx:1"), replicas=1, labels={"tier": "a"}))
    assert ".metadata.labels.tier" in owned(other_key, "kubectl-client-side-apply")
    assert ".metadata.labels.app" not in owned(other_key, "kubectl-client-side-apply")
    other_item = created_by_update(deployment(container("db", "pg:1"), replicas=1, labels={"app": "a"}))
    assert '.spec.template.spec.containers[name="db"].image' in owned(other_item, "kubectl-client-side-apply")
    assert not any("app" in p for p in owned(other_item, "kubectl-client-side-apply")
                   if "containers" in p)
    by_apply = created_by_update(deployment(replicas=1), manager="m")
    [entry] = by_apply["metadata"]["managedFields"]
    assert entry["manager"] == "m"
    # The general path, an update from an empty object, records the same set.
    empty: dict[str, Any] = {"metadata": {"managedFields": [{"manager": "x", "operation": "Update",
                                                             "fieldsType": "FieldsV1", "fieldsV1": {}}]}}
    general = copy.deepcopy(deployment(container("app", "nginx:1"), replicas=1, labels={"app": "a"}))
    general["metadata"].update(uid="u1", resourceVersion="1", creationTimestamp=T0, generation=1)
    update_managed_fields(empty, general, manager="kubectl-client-side-apply", schema=DEPLOYMENT, now=T0)
    assert general["metadata"]["managedFields"] == first["metadata"]["managedFields"]


def test_an_update_takes_changed_fields_from_the_applier() -> None:
    live = apply(None, deployment(container("app", "nginx:1"), replicas=2))
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 5
    update_managed_fields(live, new, manager="kubectl-scale", schema=DEPLOYMENT, now=T1, subresource="scale")
    assert owned(new, "kubectl-scale") == {".spec.replicas"}
    assert managers(new)["kubectl-scale"]["subresource"] == "scale"
    assert ".spec.replicas" not in owned(new, "kubectl")
    reapplied = apply(new, deployment(container("app", "nginx:1")), now=T2)
    assert reapplied["spec"]["replicas"] == 5, "replicas now belong to the scaler"


def test_removed_fields_leave_their_owners() -> None:
    live = created_by_update(deployment(replicas=1, labels={"a": "1", "b": "2"}))
    new = copy.deepcopy(live)
    del new["metadata"]["labels"]["b"]
    update_managed_fields(live, new, manager="editor", schema=DEPLOYMENT, now=T1)
    assert ".metadata.labels.b" not in owned(new, "kubectl-client-side-apply")
    assert "editor" not in managers(new), "a pure removal gives the remover nothing"


def test_an_unchanged_update_keeps_entries_as_they_were() -> None:
    live = created_by_update(deployment(replicas=1))
    new = copy.deepcopy(live)
    update_managed_fields(live, new, manager="other", schema=DEPLOYMENT, now=T1)
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_status_writes_are_a_separate_manager() -> None:
    live = created_by_update(deployment(replicas=1))
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1}
    update_managed_fields(live, new, manager="kube-controller-manager", schema=DEPLOYMENT, now=T1,
                          subresource="status")
    entry = managers(new)["kube-controller-manager"]
    assert entry["subresource"] == "status"
    assert owned(new, "kube-controller-manager") == {".status.replicas"}


def test_an_existing_object_without_managed_fields_stays_untracked() -> None:
    live = deployment(replicas=1)
    new = deployment(replicas=2)
    update_managed_fields(live, new, manager="m", schema=DEPLOYMENT, now=T1)
    assert "managedFields" not in new["metadata"]


def test_managed_fields_sent_with_an_update_replace_the_stored_ones() -> None:
    live = created_by_update(deployment(replicas=1))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{}]
    update_managed_fields(live, new, manager="m", schema=DEPLOYMENT, now=T1)
    assert "managedFields" not in new["metadata"]


def test_managed_fields_omitted_from_an_update_carry_over() -> None:
    live = created_by_update(deployment(replicas=1))
    new = copy.deepcopy(live)
    del new["metadata"]["managedFields"]
    new["spec"]["paused"] = True
    update_managed_fields(live, new, manager="m", schema=DEPLOYMENT, now=T1)
    assert set(managers(new)) == {"kubectl-client-side-apply", "m"}
    assert [e["manager"] for e in new["metadata"]["managedFields"]] == ["kubectl-client-side-apply", "m"]


def test_update_without_schema_tracks_map_keys() -> None:
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    update_managed_fields(None, new, manager="m", schema=CONFIGMAP, now=T0)
    assert new["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {".": {}, "f:k": {}}}


# ---- field sets --------------------------------------------------------------

SET_CASES = [
    ("union of disjoint leaves", "union", {"f:a": {}}, {"f:b": {}}, {"f:a": {}, "f:b": {}}),
    ("union of a member and its child", "union", {"f:a": {}}, {"f:a": {"f:b": {}}},
     {"f:a": {".": {}, "f:b": {}}}),
    ("difference is member by member", "difference", {"f:a": {".": {}, "f:b": {}}}, {"f:a": {}},
     {"f:a": {"f:b": {}}}),
    ("difference drops emptied nodes", "difference", {"f:a": {"f:b": {}}}, {"f:a": {"f:b": {}}}, {}),
    ("intersection keeps common members", "intersection", {"f:a": {"f:b": {}, "f:c": {}}},
     {"f:a": {"f:c": {}, "f:d": {}}}, {"f:a": {"f:c": {}}}),
    ("intersection of member and non-member", "intersection", {"f:a": {}}, {"f:a": {"f:b": {}}}, {}),
]


@pytest.mark.parametrize(("op", "a", "b", "want"), [s[1:] for s in SET_CASES], ids=[s[0] for s in SET_CASES])
def test_field_set_operations(op: str, a: dict[str, Any], b: dict[str, Any], want: dict[str, Any]) -> None:
    before = copy.deepcopy((a, b))
    assert getattr(fp, op)(a, b) == want
    assert (a, b) == before
