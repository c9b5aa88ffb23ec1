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
