"""The node lifecycle controller against a real API server, with fake nodes whose
Leases the test renews or lets go silent (short grace periods drive the time)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import pytest

from kubelite.agent.lease import micro_time
from kubelite.api.registry import lookup
from kubelite.client import Client, NotFound
from kubelite.controllers.nodelifecycle import NodeLifecycleController, toleration_seconds
from tests.controllers.live_api import (
    api_server,
    delete_nodes,
    make_node,
    namespace,
    ns_name,
    running,
    set_pod_running,
    until,
)

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
LEASES = lookup("coordination.k8s.io", "v1", "leases")

Fast = functools.partial(NodeLifecycleController, grace=0.8, fencing_timeout=0.6,
                         fencing_margin=0.2)

UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


@pytest.mark.parametrize(("tolerations", "taints", "expected"), [
    ([], [UNREACHABLE], 0.0),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": 7}], [UNREACHABLE], 7.0),
    ([{"operator": "Exists"}], [UNREACHABLE], None),
    ([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
       "tolerationSeconds": -3}], [UNREACHABLE], 0.0),
    ([], [{"key": "x", "effect": "NoSchedule"}], None),
    ([{"operator": "Exists", "tolerationSeconds": 9},
      {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 4}],
     [UNREACHABLE], 4.0),
], ids=["an untolerated taint evicts at once", "tolerationSeconds delays it",
        "a toleration without seconds keeps the pod", "negative seconds count as zero",
        "NoSchedule taints do not evict", "the smallest of the tolerations used wins"])
def test_toleration_seconds(tolerations: list, taints: list, expected: float | None) -> None:
    assert toleration_seconds({"spec": {"tolerations": tolerations}}, taints) == expected


async def _lease(client: Client, node: str, *, duration: int = 1) -> None:
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration,
                     "renewTime": micro_time()}}
    try:
        lease = await client.get(LEASES, node, "kube-node-lease")
    except NotFound:
        await client.create(LEASES, body, "kube-node-lease")
        return
    lease["spec"]["renewTime"] = micro_time()
    await client.update(LEASES, lease, "kube-node-lease")


@contextlib.asynccontextmanager
async def heartbeat(client: Client, node: str) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            await _lease(client, node)
            await asyncio.sleep(0.15)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _pod(client: Client, ns: str, name: str, node: str, **spec: object) -> dict:
    pod = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}, ns)
    return await set_pod_running(client, pod, node=node)


def _taints(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


def _ready(node: dict) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"]
    return ""


async def _cleanup_leases(client: Client, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(NotFound):
            await client.delete(LEASES, name, "kube-node-lease")


async def test_a_silent_node_is_tainted_its_pods_evicted_then_deleted_and_it_heals(
        api_server, ns_name: str) -> None:
    node = f"{ns_name[:20]}-n1"
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await make_node(client, node)
        try:
            async with heartbeat(client, node):
                plain = await _pod(client, ns_name, "plain", node)
                await _pod(client, ns_name, "patient", node, tolerations=[
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                     "effect": "NoExecute"}])
                assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                        "effect": "NoExecute", "tolerationSeconds": 1} in \
                    plain["spec"]["tolerations"]
                await asyncio.sleep(1.5)
                assert not _taints(await client.get(NODES, node))
            # Silence: Unknown and tainted after the grace period.
            tainted = await until(lambda: _silenced(client, node), timeout=5)
            assert _ready(tainted) == "Unknown"
            pods = {p["metadata"]["name"]: p for p in (await client.list(PODS, ns_name))["items"]}
            ready = [c for c in pods["patient"]["status"]["conditions"] if c["type"] == "Ready"]
            assert ready[0]["status"] == "False"
            # After grace + fencing both pods are gone, the tolerating one too.
            await until(lambda: _none_left(client, ns_name), timeout=6)
            # The node comes back: its renewals lift the unreachable taints at once.
            async with heartbeat(client, node):
                healed = await until(lambda: _untainted(client, node), timeout=5)
                assert not _taints(healed)
        finally:
            await delete_nodes(client, [node])
            await _cleanup_leases(client, [node])


async def _silenced(client: Client, node: str) -> dict | None:
    obj = await client.get(NODES, node)
    wanted = {("node.kubernetes.io/unreachable", "NoSchedule"),
              ("node.kubernetes.io/unreachable", "NoExecute")}
    return obj if _taints(obj) == wanted else None


async def _untainted(client: Client, node: str) -> dict | None:
    obj = await client.get(NODES, node)
    return None if _taints(obj) else obj


async def _none_left(client: Client, ns: str) -> bool:
    return not (await client.list(PODS, ns))["items"]


async def test_the_plain_pod_is_evicted_after_its_toleration_before_the_force_delete(
        api_server, ns_name: str) -> None:
    node = f"{ns_name[:20]}-n2"
    slow = functools.partial(NodeLifecycleController, grace=0.5, fencing_timeout=20.0)
    async with running(api_server, slow) as client:
        await namespace(client, ns_name)
        await make_node(client, node)
        try:
            async with heartbeat(client, node):
                await _pod(client, ns_name, "plain", node)
                await _pod(client, ns_name, "patient", node, tolerations=[
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                     "effect": "NoExecute"}])
            evicted = await until(lambda: _terminating(client, ns_name), timeout=6)
            assert evicted == {"plain"}
            plain = await client.get(PODS, "plain", ns_name)
            target = [c for c in plain["status"]["conditions"] if c["type"] == "DisruptionTarget"]
            assert target and target[0]["reason"] == "DeletionByTaintManager"
            await asyncio.sleep(1.0)
            assert await _terminating(client, ns_name) == {"plain"}
        finally:
            for name in ("plain", "patient"):
                with contextlib.suppress(NotFound):
                    await client.delete(PODS, name, ns_name, grace_period_seconds=0)
            await delete_nodes(client, [node])
            await _cleanup_leases(client, [node])


async def _terminating(client: Client, ns: str) -> set[str]:
    return {p["metadata"]["name"] for p in (await client.list(PODS, ns))["items"]
            if p["metadata"].get("deletionTimestamp")}


async def test_nodes_without_a_lease_are_left_alone_and_not_ready_ones_tainted(
        api_server, ns_name: str) -> None:
    bare, sick = f"{ns_name[:20]}-bare", f"{ns_name[:20]}-sick"
    async with running(api_server, Fast) as client:
        await make_node(client, bare)
        await make_node(client, sick)
        try:
            node = await client.get(NODES, sick)
            node["status"] = {"conditions": [{"type": "Ready", "status": "False",
                                              "reason": "KubeletNotReady"}]}
            await client.update_status(NODES, node)
            async with heartbeat(client, sick):
                tainted = await until(lambda: _tainted(client, sick), timeout=5)
                assert _taints(tainted) == {("node.kubernetes.io/not-ready", "NoSchedule"),
                                            ("node.kubernetes.io/not-ready", "NoExecute")}
            assert not _taints(await client.get(NODES, bare))
            assert _ready(await client.get(NODES, bare)) == ""
        finally:
            await delete_nodes(client, [bare, sick])
            await _cleanup_leases(client, [sick])


async def _tainted(client: Client, node: str) -> dict | None:
    obj = await client.get(NODES, node)
    return obj if _taints(obj) else None
