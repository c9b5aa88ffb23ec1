"""The DaemonSet controller against a real API server with fake nodes."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client
from kubelite.controllers import daemonset_nodes as dn
from kubelite.controllers.daemonset import DaemonSetController
from tests.controllers.live_api import (
    api_server,
    delete_nodes,
    make_node,
    namespace,
    ns_name,
    reap,
    running,
    set_pod_running,
    until,
)

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
SETS = lookup("apps", "v1", "daemonsets")


def daemonset(tag: str, **pod_spec: object) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"nodeSelector": {"run": tag},
                                           "containers": [{"name": "c", "image": "busybox:v1"}],
                                           **pod_spec}}}}


def node(name: str, *, labels: dict | None = None, taints: list | None = None) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


@pytest.mark.parametrize(("pod_spec", "target", "runs"), [
    ({}, node("n", labels={"run": "x"}), True),
    ({"nodeSelector": {"run": "y"}}, node("n", labels={"run": "x"}), False),
    ({}, node("n", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]), True),
    ({}, node("n", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
     True),
    ({}, node("n", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]), False),
    ({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db",
                       "effect": "NoSchedule"}]},
     node("n", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]), True),
    ({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}},
     node("n", labels={"zone": "b"}), False),
], ids=["no constraints", "nodeSelector mismatch", "unreachable is tolerated by default",
        "cordoned is tolerated by default", "a foreign taint", "a matching toleration",
        "required affinity mismatch"])
def test_should_run(pod_spec: dict, target: dict, runs: bool) -> None:
    ds = {"spec": {"template": {"spec": pod_spec}}}
    assert dn.should_run(ds, target) is runs


def test_pin_to_node_keeps_expressions_and_adds_the_field() -> None:
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]}}}}
    pinned = dn.pin_to_node(spec, "n1")
    term = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]
    assert term["matchFields"] == [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
    assert term["matchExpressions"] == [{"key": "zone", "operator": "Exists"}]
    assert dn.target_node({"spec": pinned}) == "n1"
    assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute"} in pinned["tolerations"]


async def _pods(client: Client, ns: str) -> list[dict]:
    await reap(client, ns)
    return [p for p in (await client.list(PODS, ns))["items"]
            if not p["metadata"].get("deletionTimestamp")]


async def _by_node(client: Client, ns: str) -> dict[str, dict]:
    return {dn.target_node(p): p for p in await _pods(client, ns)}


async def test_one_pod_per_eligible_node_new_nodes_and_rolling_update(
        api_server: Path, ns_name: str) -> None:
    tag = secrets.token_hex(3)
    names = [f"ds-{tag}-{i}" for i in range(4)]
    async with running(api_server, DaemonSetController) as client:
        ns = await namespace(client, ns_name)
        try:
            for name in names[:2]:
                await make_node(client, name, labels={"run": tag})
            await make_node(client, names[2])  # not selected
            await client.create(SETS, daemonset(tag), ns)

            async def on(expected: set[str]) -> bool:
                pods = await _pods(client, ns)
                return len(pods) == len(expected) and set(await _by_node(client, ns)) == expected
            await until(lambda: on(set(names[:2])))
            pod = (await _by_node(client, ns))[names[0]]
            assert not pod["spec"].get("nodeName")  # the scheduler binds it
            assert pod["metadata"]["labels"]["controller-revision-hash"]
            assert pod["metadata"]["labels"]["pod-template-generation"] == "1"

            await make_node(client, names[3], labels={"run": tag})
            await until(lambda: on({names[0], names[1], names[3]}))
            for name, p in (await _by_node(client, ns)).items():
                await set_pod_running(client, p, node=name)

            async def counted() -> bool:
                st = (await client.get(SETS, "agent", ns)).get("status") or {}
                return (st.get("desiredNumberScheduled"), st.get("currentNumberScheduled"),
                        st.get("numberReady"), st.get("numberAvailable"),
                        st.get("updatedNumberScheduled")) == (3, 3, 3, 3, 3)
            await until(counted)

            await client.patch(SETS, "agent", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:v2"}]}}}}, namespace=ns)

            async def rolled() -> bool:
                pods = await _by_node(client, ns)
                for name, p in pods.items():
                    if p["spec"]["containers"][0]["image"] == "busybox:v2" and not p[
                            "spec"].get("nodeName"):
                        await set_pod_running(client, p, node=name)
                old = [p for p in pods.values()
                       if p["spec"]["containers"][0]["image"] == "busybox:v1"]
                # maxUnavailable 1: never two nodes without an available pod.
                assert len(pods) >= 2
                return not old and len(pods) == 3
            await until(rolled, timeout=20)
        finally:
            await delete_nodes(client, names)
