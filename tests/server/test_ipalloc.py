"""ClusterIP and NodePort allocation through the API server's write path, on a real store."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.server.app import bootstrap
from kubelite.server.ipalloc import ServiceAllocator
from kubelite.server.objects import DeleteOptions, Objects
from kubelite.server.writes import Writer
from kubelite.store.sqlite import SqliteStore

SERVICES = lookup("", "v1", "services")
assert SERVICES is not None


def svc(name: str, *, type_: str = "ClusterIP", cluster_ip: str | None = None,
        node_ports: list[int | None] | None = None, **spec) -> dict:
    ports = [{"name": f"p{i}", "port": 80 + i, "targetPort": 8080,
              **({"nodePort": np} if np else {})}
             for i, np in enumerate(node_ports or [None])]
    body = {"type": type_, "selector": {"app": name}, "ports": ports, **spec}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


class Api:
    def __init__(self, path: Path, *, cidr: str = "10.96.0.0/16") -> None:
        self.path, self.cidr = path, cidr

    async def open(self) -> None:
        self.store = SqliteStore(self.path / "state.db")
        await self.store.start()
        self.objects = Objects(self.store)
        self.objects.service_allocator = await ServiceAllocator.recover(
            self.objects, service_cidr=self.cidr)
        await bootstrap(self.objects)
        self.writer = Writer(self.objects)

    async def close(self) -> None:
        await self.store.close()

    async def create(self, obj: dict, *, dry: bool = False) -> dict:
        stored, _ = await self.writer.create(SERVICES, "default", obj, manager="test",
                                             fv="Strict", dry=dry)
        return stored

    async def replace(self, obj: dict) -> dict:
        old = await self.objects.get(SERVICES, "default", obj["metadata"]["name"])
        obj["metadata"]["namespace"] = "default"
        stored, _ = await self.writer.update(SERVICES, obj, old, subresource="", manager="test",
                                             fv="Strict", dry=False, expected_rv=None)
        return stored

    async def delete(self, name: str) -> None:
        await self.objects.delete(SERVICES, "default", name, DeleteOptions())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    a = Api(tmp_path)
    await a.open()
    try:
        yield a
    finally:
        await a.close()


async def expect_invalid(coro, field: str, message: str) -> None:
    with pytest.raises(errors.APIError) as info:
        await coro
    exc = info.value
    assert exc.code == 422, exc.message
    causes = exc.details["causes"]
    assert [c["field"] for c in causes] == [field]
    assert causes[0]["message"] == message


async def test_dynamic_cluster_ip_comes_from_the_upper_band_of_the_range(api: Api) -> None:
    stored = await api.create(svc("web"))
    ip = ipaddress.ip_address(stored["spec"]["clusterIP"])
    assert ip in ipaddress.ip_network("10.96.0.0/16")
    assert int(ip) >= int(ipaddress.ip_address("10.96.1.0"))
    assert stored["spec"]["clusterIPs"] == [str(ip)]


async def test_chosen_ip_outside_the_range_is_refused_with_the_kubernetes_words(api: Api) -> None:
    await expect_invalid(
        api.create(svc("web", cluster_ip="10.0.0.5")), "spec.clusterIPs",
        'Invalid value: []string{"10.0.0.5"}: failed to allocate IP 10.0.0.5: the provided IP '
        "(10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16")


async def test_chosen_ip_taken_is_refused_and_freed_on_delete(api: Api) -> None:
    await api.create(svc("dns", cluster_ip="10.96.0.10"))
    await expect_invalid(
        api.create(svc("other", cluster_ip="10.96.0.10")), "spec.clusterIPs",
        'Invalid value: []string{"10.96.0.10"}: failed to allocate IP 10.96.0.10: provided IP '
        "is already allocated")
    await api.delete("dns")
    again = await api.create(svc("other", cluster_ip="10.96.0.10"))
    assert again["spec"]["clusterIP"] == "10.96.0.10"


async def test_headless_and_external_name_get_no_cluster_ip(api: Api) -> None:
    headless = await api.create(svc("h", cluster_ip="None"))
    assert headless["spec"]["clusterIP"] == "None"
    ext = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"type": "ExternalName", "externalName": "example.internal"}}
    stored = await api.create(ext)
    assert "clusterIP" not in stored["spec"]
    assert not api.objects.service_allocator.ips.taken


async def test_node_ports_allocated_validated_and_released(api: Api) -> None:
    stored = await api.create(svc("np", type_="NodePort", node_ports=[None, 30080]))
    ports = [p["nodePort"] for p in stored["spec"]["ports"]]
    assert ports[1] == 30080 and 30000 <= ports[0] <= 32767 and ports[0] != 30080
    await expect_invalid(
        api.create(svc("np2", type_="NodePort", node_ports=[30080])), "spec.ports[0].nodePort",
        "Invalid value: 30080: provided port is already allocated")
    # The failed create held nothing: its ClusterIP is free again.
    assert len(api.objects.service_allocator.ips.taken) == 1
    await api.delete("np")
    assert not api.objects.service_allocator.ports.taken
    await api.create(svc("np2", type_="NodePort", node_ports=[30080]))


async def test_load_balancer_gets_node_ports_unless_told_not_to(api: Api) -> None:
    lb = await api.create(svc("lb", type_="LoadBalancer"))
    assert lb["spec"]["ports"][0]["nodePort"]
    plain = await api.create(svc("lb2", type_="LoadBalancer", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in plain["spec"]["ports"][0]


async def test_update_keeps_omitted_values_and_cluster_ip_is_immutable(api: Api) -> None:
    first = await api.create(svc("web", type_="NodePort"))
    ip, node_port = first["spec"]["clusterIP"], first["spec"]["ports"][0]["nodePort"]
    replaced = await api.replace(svc("web", type_="NodePort"))
    assert replaced["spec"]["clusterIP"] == ip
    assert replaced["spec"]["ports"][0]["nodePort"] == node_port
    await expect_invalid(
        api.replace(svc("web", type_="NodePort", cluster_ip="10.96.5.5")), "spec.clusterIPs[0]",
        'Invalid value: []string{"10.96.5.5"}: may not change once set')
    # Back to ClusterIP: the NodePort goes and is free for others.
    back = await api.replace(svc("web"))
    assert "nodePort" not in back["spec"]["ports"][0]
    assert node_port not in api.objects.service_allocator.ports.taken
    assert int(ipaddress.ip_address(ip)) in api.objects.service_allocator.ips.taken


async def test_change_to_external_name_frees_the_cluster_ip(api: Api) -> None:
    first = await api.create(svc("web", cluster_ip="10.96.0.20"))
    changed = dict(first, spec={"type": "ExternalName", "externalName": "example.internal",
                                "clusterIP": "10.96.0.20"})
    stored = await api.replace(changed)
    assert "clusterIP" not in stored["spec"]
    assert not api.objects.service_allocator.ips.taken


async def test_dry_run_checks_but_holds_nothing(api: Api) -> None:
    stored = await api.create(svc("web", cluster_ip="10.96.0.30"), dry=True)
    assert stored["spec"]["clusterIP"] == "10.96.0.30"
    assert not api.objects.service_allocator.ips.taken


async def test_allocations_survive_a_restart(tmp_path: Path) -> None:
    first = Api(tmp_path)
    await first.open()
    try:
        stored = await first.create(svc("web", type_="NodePort", node_ports=[31000]))
    finally:
        await first.close()
    second = Api(tmp_path)
    await second.open()
    try:
        await expect_invalid(
            second.create(svc("web2", cluster_ip=stored["spec"]["clusterIP"])),
            "spec.clusterIPs",
            f'Invalid value: []string{{"{stored["spec"]["clusterIP"]}"}}: failed to allocate IP '
            f'{stored["spec"]["clusterIP"]}: provided IP is already allocated')
        await expect_invalid(
            second.create(svc("web3", type_="NodePort", node_ports=[31000])),
            "spec.ports[0].nodePort", "Invalid value: 31000: provided port is already allocated")
    finally:
        await second.close()


async def test_concurrent_creates_never_share_an_ip(tmp_path: Path) -> None:
    api = Api(tmp_path, cidr="10.96.0.0/27")  # 30 usable addresses
    await api.open()
    try:
        results = await asyncio.gather(*(api.create(svc(f"s{i}")) for i in range(32)),
                                       return_exceptions=True)
        ips = [r["spec"]["clusterIP"] for r in results if isinstance(r, dict)]
        failed = [r for r in results if isinstance(r, errors.APIError)]
        assert len(ips) == 30 == len(set(ips))
        assert len(failed) == 2 and all(f.code == 422 for f in failed)
        assert "range is full" in failed[0].message
    finally:
        await api.close()
