"""The cluster DNS server against a real API server, queried with dnspython over
UDP and TCP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, load_kubeconfig
from kubelite.network.dns import ClusterDNS, ensure_kube_dns, local_nameservers
from tests.controllers.live_api import api_server, namespace, ns_name
from tests.ports import free_port, free_udp_and_tcp_port

__all__ = ["api_server", "ns_name"]

SERVICES = lookup("", "v1", "services")
SLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
PODS = lookup("", "v1", "pods")


@contextlib.asynccontextmanager
async def serving(kubeconfig: Path, **options) -> AsyncIterator[tuple[Client, ClusterDNS]]:
    async with Client(load_kubeconfig(kubeconfig)) as client:
        options.setdefault("upstreams", [])
        async with ClusterDNS(client, host="127.0.0.1", port=0, **options) as server:
            yield client, server


async def ask(server: ClusterDNS, name: str, rdtype: str = "A", *,
              tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(query, "127.0.0.1", port=server.port, timeout=5)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=server.port, timeout=5)


def texts(reply: dns.message.Message, rdtype: str = "A") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rr in reply.answer if rr.rdtype == wanted for rd in rr)


async def until_answer(server: ClusterDNS, name: str, rdtype: str = "A",
                       want: int = dns.rcode.NOERROR) -> dns.message.Message:
    """Informers follow the API asynchronously: ask until the answer is in."""
    deadline = time.monotonic() + 10
    while True:
        reply = await ask(server, name, rdtype)
        if reply.rcode() == want and (want != dns.rcode.NOERROR or reply.answer):
            return reply
        assert time.monotonic() < deadline, reply.to_text()
        await asyncio.sleep(0.05)


def service(name: str, *, headless: bool = False, ports=(("http", 80, "TCP"),)) -> dict:
    spec: dict = {"ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def endpoint_slice(service_name: str, endpoints: list[tuple[str, str | None, bool]],
                   port: int = 8080) -> dict:
    eps = []
    for ip, hostname, ready in endpoints:
        ep: dict = {"addresses": [ip], "conditions": {"ready": ready}}
        if hostname:
            ep["hostname"] = hostname
        eps.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service_name}-x",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


async def running_pod(client: Client, ns: str, name: str, ip: str) -> dict:
    pod = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "node-x",
                 "containers": [{"name": "c", "image": "busybox"}]}}, ns)
    status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
    return await client.update_status(PODS, {**pod, "status": status})


async def test_service_a_srv_ptr_and_negative_answers(api_server, ns_name) -> None:
    async with serving(api_server) as (client, server):
        ns = await namespace(client, ns_name)
        svc = await client.create(SERVICES, service("web", ports=(
            ("http", 80, "TCP"), ("dns", 53, "UDP"))), ns)
        ip = svc["spec"]["clusterIP"]
        name = f"web.{ns}.svc.cluster.local"

        reply = await until_answer(server, name)
        assert texts(reply) == [ip]
        assert reply.flags & dns.flags.AA
        assert all(5 <= rr.ttl <= 30 for rr in reply.answer)
        assert texts(await ask(server, name, tcp=True)) == [ip]
        assert texts(await ask(server, name.upper())) == [ip]

        srv = await ask(server, f"_http._tcp.{name}", "SRV")
        assert texts(srv, "SRV") == [f"0 100 80 {name}."]
        assert [rd.to_text() for rr in srv.additional for rd in rr] == [ip]
        assert texts(await ask(server, f"_dns._udp.{name}", "SRV", tcp=True), "SRV") == [
            f"0 100 53 {name}."]
        assert (await ask(server, f"_http._udp.{name}", "SRV")).rcode() == dns.rcode.NXDOMAIN

        ptr = await ask(server, dns.reversename.from_address(ip).to_text(), "PTR")
        assert texts(ptr, "PTR") == [f"{name}."]

        # The name exists without AAAA: NOERROR, no answer, the zone's SOA.
        empty = await ask(server, name, "AAAA")
        assert empty.rcode() == dns.rcode.NOERROR and not empty.answer
        assert empty.authority[0].rdtype == dns.rdatatype.SOA
        for missing in (f"nope.{ns}.svc.cluster.local", "x.y.z.cluster.local",
                        f"a.b.web.{ns}.svc.cluster.local"):
            reply = await ask(server, missing)
            assert reply.rcode() == dns.rcode.NXDOMAIN, missing
            assert reply.authority[0].rdtype == dns.rdatatype.SOA

        await client.delete(SERVICES, "web", ns)
        await until_answer(server, name, want=dns.rcode.NXDOMAIN)


async def test_headless_hostnames_and_pod_records(api_server, ns_name) -> None:
    async with serving(api_server) as (client, server):
        ns = await namespace(client, ns_name)
        await client.create(SERVICES, service("db", headless=True), ns)
        await client.create(SLICES, endpoint_slice("db", [
            ("10.244.7.10", "db-0", True), ("10.244.7.11", None, True),
            ("10.244.7.12", "db-2", False)]), ns)
        await running_pod(client, ns, "db-0", "10.244.7.10")
        await running_pod(client, ns, "lone", "10.244.7.20")
        name = f"db.{ns}.svc.cluster.local"

        # Only ready endpoints, each by its hostname or else its dashed address.
        assert texts(await until_answer(server, name)) == ["10.244.7.10", "10.244.7.11"]
        assert texts(await ask(server, f"db-0.{name}")) == ["10.244.7.10"]
        assert texts(await ask(server, f"10-244-7-11.{name}", tcp=True)) == ["10.244.7.11"]
        assert (await ask(server, f"db-2.{name}")).rcode() == dns.rcode.NXDOMAIN
        srv = await ask(server, f"_http._tcp.{name}", "SRV")
        assert texts(srv, "SRV") == [f"0 50 8080 10-244-7-11.{name}.",
                                     f"0 50 8080 db-0.{name}."]
        assert sorted(rd.to_text() for rr in srv.additional for rd in rr) == [
            "10.244.7.10", "10.244.7.11"]

        assert texts(await ask(server, dns.reversename.from_address("10.244.7.10").to_text(),
                               "PTR"), "PTR") == [f"db-0.{name}."]
        pod_name = f"10-244-7-20.{ns}.pod.cluster.local"
        assert texts(await until_answer(server, pod_name)) == ["10.244.7.20"]
        assert texts(await ask(server, dns.reversename.from_address("10.244.7.20").to_text(),
                               "PTR"), "PTR") == [f"{pod_name}."]
        # Verified pod records: a dashed address of no pod in the namespace is unknown.
        reply = await ask(server, f"10-244-7-99.{ns}.pod.cluster.local")
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert (await ask(server, "10-244-7-20.default.pod.cluster.local")).rcode() == (
            dns.rcode.NXDOMAIN)


async def test_large_answers_truncate_over_udp_and_fit_over_tcp(api_server, ns_name) -> None:
    async with serving(api_server) as (client, server):
        ns = await namespace(client, ns_name)
        await client.create(SERVICES, service("many", headless=True), ns)
        await client.create(SLICES, endpoint_slice(
            "many", [(f"10.244.8.{i}", None, True) for i in range(1, 81)]), ns)
        name = f"many.{ns}.svc.cluster.local"
        deadline = time.monotonic() + 10
        while not (reply := await ask(server, name, tcp=True)).answer:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(texts(reply)) == 80
        udp = await ask(server, name)
        assert udp.flags & dns.flags.TC and not udp.answer


async def test_external_names_refused_or_forwarded_to_local_resolver(
        api_server, ns_name, tmp_path: Path) -> None:
    async with serving(api_server) as (_, server):
        for tcp in (False, True):
            reply = await ask(server, "example.com", tcp=tcp)
            assert reply.rcode() == dns.rcode.REFUSED
        # A reverse name of no cluster address is not ours either.
        reply = await ask(server, "4.3.2.1.in-addr.arpa", "PTR")
        assert reply.rcode() == dns.rcode.REFUSED

    # A resolver on loopback is used: a second ClusterDNS plays it (its own
    # zone "upstream.test" stands for the outside world).
    async with Client(load_kubeconfig(api_server)) as client:
        ns = await namespace(client, ns_name)
        svc = await client.create(SERVICES, service("fw"), ns)
        async with ClusterDNS(client, host="127.0.0.1", port=0, domain="upstream.test",
                              upstreams=[]) as upstream:
            async with serving(api_server, upstreams=[("127.0.0.1", upstream.port)]) as (
                    _, server):
                for tcp in (False, True):
                    reply = await ask(server, f"fw.{ns}.svc.upstream.test", tcp=tcp)
                    assert texts(reply) == [svc["spec"]["clusterIP"]], reply.to_text()
                assert (await ask(server, "zzz.svc.upstream.test")).rcode() == (
                    dns.rcode.NXDOMAIN)

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver 127.0.0.1\n"
                      "options ndots:5\n")
    assert local_nameservers(resolv, exclude=(("127.0.0.1", 53),)) == [("127.0.0.53", 53)]


async def test_garbage_gets_formerr_or_nothing(api_server) -> None:
    async with serving(api_server) as (_, server):
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        class Catch(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                replies.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(
            Catch, remote_addr=("127.0.0.1", server.port))
        try:
            transport.sendto(b"\x12\x34\x01\x00" + b"\x00\x01" + b"\xff" * 10)
            reply = await asyncio.wait_for(replies.get(), 5)
            assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
            transport.sendto(b"\x00")  # too short to answer
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(replies.get(), 0.3)
        finally:
            transport.close()


async def test_ensure_kube_dns_service_and_slice(api_server) -> None:
    async with Client(load_kubeconfig(api_server)) as client:
        with contextlib.suppress(Exception):
            await client.delete(SLICES, "kube-dns-server", "kube-system")
        await ensure_kube_dns(client, address="10.99.0.1", port=5353)
        await ensure_kube_dns(client, address="10.99.0.2", port=53)
        svc = await client.get(SERVICES, "kube-dns", "kube-system")
        assert svc["spec"]["clusterIP"] == "10.96.0.10"
        assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
            ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")}
        assert not svc["spec"].get("selector")
        slice_ = await client.get(SLICES, "kube-dns-server", "kube-system")
        assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
        assert slice_["endpoints"][0]["addresses"] == ["10.99.0.2"]
        assert {(p["name"], p["port"]) for p in slice_["ports"]} == {("dns", 53),
                                                                     ("dns-tcp", 53)}

        async with ClusterDNS(client, host="127.0.0.1", port=0, upstreams=[]) as server:
            reply = await until_answer(server, "kube-dns.kube-system.svc.cluster.local")
            assert texts(reply) == ["10.96.0.10"]


async def test_kubelite_server_cluster_dns_flag(tmp_path: Path) -> None:
    dns_port = free_udp_and_tcp_port()
    api_port = free_port()
    log = open(tmp_path / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir", str(tmp_path / "d"),
         "--listen", f"127.0.0.1:{api_port}", "--disable-controllers",
         "--cluster-dns", f"127.0.0.1:{dns_port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        query = dns.message.make_query("kube-dns.kube-system.svc.cluster.local", "A")
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            with contextlib.suppress(dns.exception.Timeout, OSError):
                reply = await dns.asyncquery.udp(query, "127.0.0.1", port=dns_port, timeout=0.3)
                if reply.answer:
                    break
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            await asyncio.sleep(0.1)
        assert texts(reply) == ["10.96.0.10"]
        async with Client(load_kubeconfig(tmp_path / "d" / "kubeconfig")) as client:
            slice_ = await client.get(SLICES, "kube-dns-server", "kube-system")
        assert slice_["endpoints"][0]["addresses"] == ["127.0.0.1"]
        assert {p["port"] for p in slice_["ports"]} == {dns_port}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
