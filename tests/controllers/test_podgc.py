"""The pod garbage collector against a real API server with fake nodes."""

from __future__ import annotations

import asyncio
import functools

from kubelite.api.registry import lookup
from kubelite.client import Client
from kubelite.controllers.podgc import PodGCController
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
Fast = functools.partial(PodGCController, threshold=2, period=0.3, quarantine=1.0)


async def _pod(client: Client, ns: str, name: str, node: str) -> dict:
    pod = await client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": name, "namespace": ns},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                              ns)
    return await set_pod_running(client, pod, node=node)


async def _names(client: Client, ns: str) -> set[str]:
    return {p["metadata"]["name"] for p in (await client.list(PODS, ns))["items"]}


async def test_pods_of_a_deleted_node_are_removed_after_quarantine(api_server, ns_name) -> None:
    node = f"{ns_name[:20]}-gone"
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await make_node(client, node)
        # Bound before its node registered: the quarantine keeps it.
        await _pod(client, ns_name, "stays", f"{ns_name[:20]}-other")
        await asyncio.sleep(0.4)
        await make_node(client, f"{ns_name[:20]}-other")
        try:
            await _pod(client, ns_name, "orphan", node)
            await client.delete(NODES, node)
            await until(lambda: _only(client, ns_name, {"stays"}), timeout=5)
        finally:
            await delete_nodes(client, [node, f"{ns_name[:20]}-other"])


async def _only(client: Client, ns: str, names: set[str]) -> bool:
    return await _names(client, ns) == names


async def test_terminated_pods_over_the_threshold_go_oldest_first(api_server, ns_name) -> None:
    node = f"{ns_name[:20]}-n"
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await make_node(client, node)
        try:
            for i in range(4):
                pod = await _pod(client, ns_name, f"done-{i}", node)
                pod["status"]["phase"] = "Succeeded"
                await client.update_status(PODS, pod)
            await until(lambda: _count(client, ns_name, 2), timeout=5)
        finally:
            await delete_nodes(client, [node])


async def _count(client: Client, ns: str, n: int) -> bool:
    return len(await _names(client, ns)) == n


async def test_terminating_pods_on_an_out_of_service_node_are_forced(api_server, ns_name) -> None:
    node = f"{ns_name[:20]}-oos"
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await make_node(client, node, taints=[{"key": "node.kubernetes.io/out-of-service",
                                               "value": "nodeshutdown", "effect": "NoExecute"}])
        try:
            await _pod(client, ns_name, "stuck", node)
            await client.delete(PODS, "stuck", ns_name)
            assert await _names(client, ns_name) == {"stuck"}
            await until(lambda: _only(client, ns_name, set()), timeout=5)
        finally:
            await delete_nodes(client, [node])
