"""EndpointSlice, Endpoints and ServiceLB controllers against a real API server."""

from __future__ import annotations

import time

from kubelite.api.registry import lookup
from kubelite.client import Client
from kubelite.controllers.endpoints import EndpointsController
from kubelite.controllers.endpointslice import EndpointSliceController
from kubelite.controllers.servicelb import ServiceLBController
from tests.controllers.live_api import (
    api_server,
    delete_nodes,
    make_node,
    namespace,
    ns_name,
    running,
    until,
)

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
ENDPOINTS = lookup("", "v1", "endpoints")


def service(name: str, *, target: int | str = 8080, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": target}], **spec}}


async def pod(client: Client, ns: str, name: str, app: str, ip: str, *, ready: bool = True,
              node: str = "node-a", port_name: str = "web", port: int = 8080) -> dict:
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [
                {"name": "c", "image": "busybox", "ports": [
                    {"name": port_name, "containerPort": port}]}]}}
    created = await client.create(PODS, body, ns)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}
    return await client.update_status(PODS, {**created, "status": status})


async def set_ready(client: Client, ns: str, name: str, ready: bool) -> None:
    current = await client.get(PODS, name, ns)
    current["status"]["conditions"][0]["status"] = "True" if ready else "False"
    await client.update_status(PODS, current)


async def slices_of(client: Client, ns: str, svc: str) -> list[dict]:
    items = (await client.list(SLICES, ns,
                               label_selector=f"kubernetes.io/service-name={svc}"))["items"]
    return items


def endpoints_by_name(slices: list[dict]) -> dict[str, dict]:
    return {e["targetRef"]["name"]: e for s in slices for e in s.get("endpoints") or []}


async def test_slices_follow_readiness_termination_and_zone(api_server, ns_name) -> None:
    async with running(api_server, EndpointSliceController, EndpointsController) as client:
        ns = await namespace(client, ns_name)
        node = f"zoned-{ns_name[-8:]}"
        await make_node(client, node, labels={"topology.kubernetes.io/zone": "z1"})
        try:
            await client.create(SERVICES, service("web"), ns)
            await pod(client, ns, "a", "web", "10.244.1.10", node=node)
            await pod(client, ns, "b", "web", "10.244.1.11", ready=False)
            await pod(client, ns, "other", "db", "10.244.1.12")

            async def both_seen():
                eps = endpoints_by_name(await slices_of(client, ns, "web"))
                return eps if set(eps) == {"a", "b"} else None

            eps = await until(both_seen)
            assert eps["a"]["conditions"] == {"ready": True, "serving": True,
                                              "terminating": False}
            assert eps["a"]["addresses"] == ["10.244.1.10"]
            assert eps["a"]["nodeName"] == node and eps["a"]["zone"] == "z1"
            assert eps["b"]["conditions"]["ready"] is False
            (slice_,) = await slices_of(client, ns, "web")
            assert slice_["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
            assert slice_["addressType"] == "IPv4"
            assert slice_["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
                "endpointslice-controller.k8s.io")
            assert slice_["metadata"]["ownerReferences"][0]["kind"] == "Service"

            async def legacy():
                ep = await client.get(ENDPOINTS, "web", ns)
                subsets = ep.get("subsets") or []
                return subsets if subsets and "addresses" in subsets[0] else None

            (subset,) = await until(legacy)
            assert [a["ip"] for a in subset["addresses"]] == ["10.244.1.10"]
            assert [a["ip"] for a in subset["notReadyAddresses"]] == ["10.244.1.11"]
            assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

            await set_ready(client, ns, "b", True)

            async def b_ready():
                eps = endpoints_by_name(await slices_of(client, ns, "web"))
                return eps["b"]["conditions"]["ready"]

            await until(b_ready)

            # A pod being deleted stays, marked terminating and not ready; serving
            # still tells whether it answers.
            await client.update(PODS, {**(await client.get(PODS, "a", ns)),
                                       "metadata": {**(await client.get(PODS, "a", ns))[
                                           "metadata"], "finalizers": ["test/hold"]}})
            await client.delete(PODS, "a", ns, grace_period_seconds=0)

            async def a_terminating():
                eps = endpoints_by_name(await slices_of(client, ns, "web"))
                return eps["a"]["conditions"]["terminating"] and eps["a"]

            terminating = await until(a_terminating)
            assert terminating["conditions"] == {"ready": False, "serving": True,
                                                 "terminating": True}

            async def a_left_legacy():
                ep = await client.get(ENDPOINTS, "web", ns)
                ips = [a["ip"] for s in ep["subsets"] for a in s.get("addresses") or []]
                return ips == ["10.244.1.11"]

            await until(a_left_legacy)
            current = await client.get(PODS, "a", ns)
            current["metadata"]["finalizers"] = []
            await client.update(PODS, current)

            async def a_gone():
                return set(endpoints_by_name(await slices_of(client, ns, "web"))) == {"b"}

            await until(a_gone)
        finally:
            await delete_nodes(client, [node])


async def test_named_target_ports_resolve_per_pod(api_server, ns_name) -> None:
    async with running(api_server, EndpointSliceController) as client:
        ns = await namespace(client, ns_name)
        await client.create(SERVICES, service("named", target="web"), ns)
        await pod(client, ns, "p1", "named", "10.244.2.1", port=8080)
        await pod(client, ns, "p2", "named", "10.244.2.2", port=9090)
        await pod(client, ns, "p3", "named", "10.244.2.3", port_name="other")

        async def two_slices():
            slices = await slices_of(client, ns, "named")
            got = {s["ports"][0]["port"]: [e["addresses"][0] for e in s["endpoints"]]
                   for s in slices if s.get("endpoints")}
            return got if len(got) == 2 else None

        assert await until(two_slices) == {8080: ["10.244.2.1"], 9090: ["10.244.2.2"]}


async def test_publish_not_ready_and_selectorless_services(api_server, ns_name) -> None:
    async with running(api_server, EndpointSliceController, EndpointsController) as client:
        ns = await namespace(client, ns_name)
        await client.create(SERVICES, service("pna", publishNotReadyAddresses=True,
                                              clusterIP="None"), ns)
        await pod(client, ns, "u", "pna", "10.244.3.1", ready=False)

        async def ready_anyway():
            eps = endpoints_by_name(await slices_of(client, ns, "pna"))
            return eps.get("u", {}).get("conditions", {}).get("ready")

        await until(ready_anyway)
        (slice_,) = await slices_of(client, ns, "pna")
        assert "service.kubernetes.io/headless" in slice_["metadata"]["labels"]

        manual = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"},
                  "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}}
        await client.create(SERVICES, manual, ns)
        empty = service("empty")
        await client.create(SERVICES, empty, ns)

        async def placeholder():
            slices = await slices_of(client, ns, "empty")
            return slices if slices else None

        (ph,) = await until(placeholder)
        assert ph["endpoints"] == [] and not ph.get("ports")
        assert await slices_of(client, ns, "manual") == []


async def test_load_balancer_status_lists_ready_node_addresses(api_server, ns_name) -> None:
    async with running(api_server, ServiceLBController) as client:
        ns = await namespace(client, ns_name)
        names = [f"lb-{ns_name[-8:]}-{i}" for i in range(2)]
        try:
            for i, name in enumerate(names):
                node = await make_node(client, name)
                node["status"] = {
                    "addresses": [{"type": "InternalIP", "address": f"192.0.2.{10 + i}"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}
                await client.update_status(NODES, node)
            await client.create(SERVICES, service("lb", type="LoadBalancer"), ns)

            async def status():
                svc = await client.get(SERVICES, "lb", ns)
                ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                mine = [i["ip"] for i in ingress if i["ip"] in ("192.0.2.10", "192.0.2.11")]
                return mine if len(mine) == 2 else None

            assert await until(status) == ["192.0.2.10", "192.0.2.11"]
            await delete_nodes(client, names[:1])

            async def shrunk():
                svc = await client.get(SERVICES, "lb", ns)
                ips = [i["ip"] for i in svc["status"]["loadBalancer"].get("ingress") or []]
                return "192.0.2.10" not in ips and "192.0.2.11" in ips

            await until(shrunk)
        finally:
            await delete_nodes(client, names)
