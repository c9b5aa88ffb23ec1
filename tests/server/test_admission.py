"""Admission plugins against a real store: Priority (spec.priority comes from the class)
and DefaultIngressClass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.server.admission_priority import admit_pod_priority
from kubelite.server.objects import Objects
from kubelite.store.sqlite import SqliteStore

CLASSES = lookup("scheduling.k8s.io", "v1", "priorityclasses")


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [], **spec}}


@pytest.fixture
async def objects(tmp_path: Path) -> AsyncIterator[Objects]:
    store = SqliteStore(tmp_path / "db")
    await store.start()
    objs = Objects(store)
    for name, value, default, policy in (("high", 1000, False, "Never"),
                                         ("fallback", 7, True, None)):
        pc: dict[str, Any] = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                              "metadata": {"name": name}, "value": value,
                              "globalDefault": default}
        if policy:
            pc["preemptionPolicy"] = policy
        assert CLASSES is not None
        await objs.create(CLASSES, pc)
    yield objs
    await store.close()


async def test_the_class_sets_priority_and_preemption_policy(objects: Objects) -> None:
    p = pod(priorityClassName="high")
    await admit_pod_priority(objects, p)
    assert (p["spec"]["priority"], p["spec"]["preemptionPolicy"]) == (1000, "Never")


async def test_without_a_class_the_global_default_applies(objects: Objects) -> None:
    p = pod(priority=0)  # as defaulting leaves it
    await admit_pod_priority(objects, p)
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"]) == ("fallback", 7)


async def test_system_classes_exist_without_objects(objects: Objects) -> None:
    p = pod(priorityClassName="system-node-critical")
    await admit_pod_priority(objects, p)
    assert p["spec"]["priority"] == 2000001000


@pytest.mark.parametrize(("spec", "message"), [
    ({"priorityClassName": "nope"}, "no PriorityClass with name nope was found"),
    ({"priorityClassName": "high", "priority": 5},
     "the integer value of priority (5) must not be provided in pod spec; priority admission "
     "controller computed 1000 from the given PriorityClass name"),
], ids=["missing-class", "given-priority"])
async def test_refused(objects: Objects, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.APIError) as info:
        await admit_pod_priority(objects, pod(**spec))
    assert info.value.code == 403 and message in info.value.message


async def test_an_ingress_without_class_gets_the_default(objects: Objects) -> None:
    from kubelite.server.admission_ingressclass import admit_ingress_class

    classes = lookup("networking.k8s.io", "v1", "ingressclasses")
    assert classes is not None
    await objects.create(classes, {
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "kubelite", "annotations": {
            "ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "kubelite.io/ingress-controller"}})
    plain: dict[str, Any] = {"metadata": {"name": "a"}, "spec": {}}
    await admit_ingress_class(objects, plain)
    assert plain["spec"]["ingressClassName"] == "kubelite"
    legacy: dict[str, Any] = {"metadata": {"name": "b", "annotations": {
        "kubernetes.io/ingress.class": "other"}}, "spec": {}}
    await admit_ingress_class(objects, legacy)
    assert "ingressClassName" not in legacy["spec"]


async def test_admission_sees_a_class_changed_after_it_was_read(objects: Objects) -> None:
    """Admission reads classes through the decoded views of Objects: a class that
    changes must not be served as it was."""
    await admit_pod_priority(objects, pod(priority=0))
    for name, default in (("fallback", False), ("high", True)):
        current = await objects.get(CLASSES, None, name)
        changed = {**current, "globalDefault": default}
        await objects.update(CLASSES, changed, old=current, expected_rv=None)
    p = pod(priority=0)
    await admit_pod_priority(objects, p)
    assert (p["spec"]["priorityClassName"], p["spec"]["priority"]) == ("high", 1000)


async def test_creates_are_refused_once_the_namespace_terminates(objects: Objects) -> None:
    from kubelite.server.admission import admit

    namespaces, pods = lookup("", "v1", "namespaces"), lookup("", "v1", "pods")
    assert namespaces is not None and pods is not None
    await objects.create(namespaces, {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": "team"}})
    p = pod()
    p["metadata"]["namespace"] = "team"
    await admit(objects, pods, p, operation="CREATE")
    current = await objects.get(namespaces, None, "team")
    ending = {**current, "metadata": {**current["metadata"], "finalizers": ["x"],
                                      "deletionTimestamp": "2026-11-29T00:00:00Z"}}
    await objects.update(namespaces, ending, old=current, expected_rv=None)
    with pytest.raises(errors.APIError) as info:
        await admit(objects, pods, pod() | {"metadata": {"name": "q", "namespace": "team"}},
                    operation="CREATE")
    assert info.value.code == 403 and "being terminated" in info.value.message


def test_new_uids_are_random_version_4_uuids() -> None:
    import uuid

    from kubelite.server.objects import new_uid

    uids = {new_uid() for _ in range(10_000)}
    assert len(uids) == 10_000
    for text in list(uids)[:500]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)
