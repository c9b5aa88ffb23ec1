"""The disruption controller and the eviction subresource against a real API server."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, TooManyRequests, resource_path
from kubelite.controllers.disruption import DisruptionController, desired_healthy
from tests.controllers.live_api import (
    api_server,
    namespace,
    ns_name,
    running,
    set_pod_running,
    until,
)

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
PDBS = lookup("policy", "v1", "poddisruptionbudgets")
REPLICASETS = lookup("apps", "v1", "replicasets")


@pytest.mark.parametrize(("spec", "expected", "desired"), [
    ({"minAvailable": 2}, 3, 2),
    ({"minAvailable": "50%"}, 3, 2),
    ({"maxUnavailable": 1}, 3, 2),
    ({"maxUnavailable": "34%"}, 3, 1),
    ({"maxUnavailable": 5}, 3, 0),
    ({}, 4, 4),
], ids=["an integer minAvailable", "a percentage rounds up", "maxUnavailable subtracts",
        "a maxUnavailable percentage rounds up", "never below zero", "no bound wants all"])
def test_desired_healthy(spec: dict, expected: int, desired: int) -> None:
    assert desired_healthy(spec, expected) == desired


async def _pods(client: Client, ns: str, count: int, *, owner: dict | None = None) -> None:
    for i in range(count):
        meta: dict = {"name": f"web-{i}", "labels": {"app": "web"}}
        if owner is not None:
            meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                        "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"], "controller": True}]
        pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                          "spec": {"containers": [{"name": "c",
                                                                   "image": "busybox"}]}}, ns)
        await set_pod_running(client, pod, node="node-a")


def _pdb(**spec: object) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


async def _status(client: Client, ns: str, **wanted: int) -> dict | None:
    status = (await client.get(PDBS, "web", ns)).get("status") or {}
    return status if all(status.get(k) == v for k, v in wanted.items()) else None


async def evict(client: Client, ns: str, name: str) -> None:
    path = resource_path(PODS, namespace=ns, name=name, subresource="eviction")
    await client.request("POST", path, body={
        "apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns}})


async def test_budget_status_and_evictions_respect_min_available(api_server, ns_name) -> None:
    async with running(api_server, DisruptionController) as client:
        await namespace(client, ns_name)
        await _pods(client, ns_name, 3)
        await client.create(PDBS, _pdb(minAvailable=2), ns_name)
        status = await until(lambda: _status(client, ns_name, disruptionsAllowed=1,
                                             currentHealthy=3, desiredHealthy=2,
                                             expectedPods=3))
        cond = status["conditions"][0]
        assert (cond["type"], cond["status"], cond["reason"]) == (
            "DisruptionAllowed", "True", "SufficientPods")
        # Two evictions at once: the budget grants exactly one.
        results = await asyncio.gather(evict(client, ns_name, "web-0"),
                                       evict(client, ns_name, "web-1"), return_exceptions=True)
        refused = [r for r in results if isinstance(r, TooManyRequests)]
        assert len(refused) == 1 and sum(r is None for r in results) == 1
        assert refused[0].status["details"]["causes"][0]["reason"] == "DisruptionBudget"
        assert "needs 2 healthy pods" in refused[0].status["details"]["causes"][0]["message"]
        status = await until(lambda: _status(client, ns_name, disruptionsAllowed=0,
                                             currentHealthy=2))
        assert status["conditions"][0]["reason"] == "InsufficientPods"
        with pytest.raises(TooManyRequests):
            await evict(client, ns_name, "web-2")


async def test_max_unavailable_counts_the_controllers_scale(api_server, ns_name) -> None:
    async with running(api_server, DisruptionController) as client:
        await namespace(client, ns_name)
        rs = await client.create(REPLICASETS, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "c", "image": "busybox"}]}}}}, ns_name)
        await _pods(client, ns_name, 3, owner=rs)
        await client.create(PDBS, _pdb(maxUnavailable=1), ns_name)
        # 4 expected, 3 healthy, 3 desired: nothing may go.
        await until(lambda: _status(client, ns_name, expectedPods=4, desiredHealthy=3,
                                    currentHealthy=3, disruptionsAllowed=0))
        await client.patch(REPLICASETS, "web", {"spec": {"replicas": 3}}, namespace=ns_name)
        await until(lambda: _status(client, ns_name, expectedPods=3, disruptionsAllowed=1))


async def test_pending_pods_may_be_evicted_whatever_the_budget(api_server, ns_name) -> None:
    async with running(api_server, DisruptionController) as client:
        await namespace(client, ns_name)
        await client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "waiting", "labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "c", "image": "busybox"}]}}, ns_name)
        await client.create(PDBS, _pdb(minAvailable=5), ns_name)
        await until(lambda: _status(client, ns_name, disruptionsAllowed=0, expectedPods=1))
        await evict(client, ns_name, "waiting")
