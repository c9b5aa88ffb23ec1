"""The cluster DNS server (kubelite's CoreDNS), on UDP and TCP.

It answers the `cluster.local` zone and reverse lookups of cluster addresses
from informers on Services, EndpointSlices and Pods (dns_records.py). Other
names go to the host's resolv.conf nameservers, but only to those on this
machine (loopback, or an address of a local interface), so that nothing a pod
asks ever leaves the machine; without such a nameserver the answer is REFUSED.

`ensure_kube_dns` publishes the server as Service kube-system/kube-dns at
10.96.0.10 with a selector-less EndpointSlice, so that pods reach it through
the service proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
import logging
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype

from kubelite.api.registry import lookup
from kubelite.client import AlreadyExists, ApiError, Client, Informer, NotFound
from kubelite.network import dns_records
from kubelite.network.dns_records import Answer, Records

log = logging.getLogger(__name__)
Obj = dict[str, Any]

SERVICES = lookup("", "v1", "services")
ENDPOINTSLICES = lookup("discovery.k8s.io", "v1", "endpointslices")
PODS = lookup("", "v1", "pods")
DEFAULT_CLUSTER_DNS_IP = "10.96.0.10"
KUBE_DNS_SLICE = "kube-dns-server"
MANAGED_BY = "kubelite-dns"
# Without EDNS a UDP answer may not exceed 512 bytes (RFC 1035); larger ones are
# truncated (TC) and the client retries over TCP.
UDP_MIN_PAYLOAD = 512
UDP_MAX_PAYLOAD = 1232
FORWARD_TIMEOUT = 2.0
TCP_IDLE_TIMEOUT = 10.0


def _index_services(svc: Obj) -> list[str]:
    return dns_records.service_ips(svc)


def _slim_pod(pod: Obj) -> Obj:
    """Only what DNS reads: the Pods informer holds every pod of the cluster."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    meta = pod["metadata"]
    return {"metadata": {"name": meta["name"], "namespace": meta.get("namespace"),
                         "resourceVersion": meta.get("resourceVersion")},
            "spec": {"hostNetwork": spec.get("hostNetwork", False)},
            "status": {"phase": status.get("phase"), "podIP": status.get("podIP"),
                       "podIPs": status.get("podIPs") or []}}


def _is_local_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr.is_loopback:
        return True
    # Binding succeeds only for an address of one of this machine's interfaces.
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def local_nameservers(resolv_conf: Path = Path("/etc/resolv.conf"), *,
                      exclude: tuple[tuple[str, int], ...] = ()) -> list[tuple[str, int]]:
    """The resolv.conf nameservers that are on this machine, minus `exclude` (ourselves)."""
    try:
        text = resolv_conf.read_text()
    except OSError:
        return []
    out: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            ip = fields[1].split("%")[0]
            with contextlib.suppress(ValueError):
                if _is_local_address(ip) and (ip, 53) not in exclude:
                    out.append((ip, 53))
    return out


class ClusterDNS:
    """`async with ClusterDNS(client, host=..., port=...)`: serves until exit.

    `upstreams` are the resolvers for names outside the cluster (None: the
    local ones of /etc/resolv.conf); an empty list refuses such names.
    """

    def __init__(self, client: Client, *, host: str, port: int = 53,
                 domain: str = "cluster.local", ttl: int = 5,
                 upstreams: list[tuple[str, int]] | None = None) -> None:
        assert SERVICES is not None and ENDPOINTSLICES is not None and PODS is not None
        if not 5 <= ttl <= 30:
            raise ValueError(f"ttl must be within 5..30 s, got {ttl}")
        self.host = host
        self.port = port
        self.upstreams = upstreams
        self.services = Informer(client, SERVICES, indexers={"key": _key, "ip": _index_services})
        self.slices = Informer(client, ENDPOINTSLICES, indexers={
            "service": dns_records.service_key, "ip": dns_records.slice_addresses})
        self.pods = Informer(client, PODS, transform=_slim_pod, indexers={
            "ip": lambda p: [ip] if (ip := dns_records.pod_ip(p)) else []})
        self.records = Records(services=self._by(self.services), slices=self._by(self.slices),
                               pods=self._by(self.pods), domain=domain, ttl=ttl)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _by(informer: Informer) -> dns_records.Lookup:
        def get(index: str, value: str) -> list[Obj]:
            if index == "key":
                obj = informer.get(value)
                return [obj] if obj is not None else []
            return informer.by_index(index, value)
        return get

    async def start(self, *, sync_timeout: float = 30.0) -> None:
        """Listen once the caches are filled, so that the first answers are right."""
        for informer in (self.services, self.slices, self.pods):
            informer.start()
        await asyncio.wait_for(asyncio.gather(
            self.services.has_synced.wait(), self.slices.has_synced.wait(),
            self.pods.has_synced.wait()), sync_timeout)
        if self.upstreams is None:
            self.upstreams = await asyncio.to_thread(
                local_nameservers, exclude=((self.host, self.port),))
        loop = asyncio.get_running_loop()
        wanted = self.port
        for _ in range(10):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, wanted), reuse_port=False)
            self.port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
            except OSError:
                transport.close()
                # A port the kernel picked for UDP may be taken for TCP: pick again.
                if wanted != 0:
                    raise
                continue
            self._udp = transport
            break
        else:
            raise OSError(f"no port free for both UDP and TCP on {self.host}")
        log.info("cluster DNS on %s:%d (udp, tcp), upstreams %s", self.host, self.port,
                 self.upstreams or "none (external names refused)")

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._tcp_tasks):
                task.cancel()
            await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for informer in (self.services, self.slices, self.pods):
            await informer.stop()

    async def __aenter__(self) -> ClusterDNS:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def answer(self, wire: bytes, *, tcp: bool) -> bytes | None:
        """The reply to one query message; None for garbage not worth an answer."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.NOTIMP if query.opcode() != dns.opcode.QUERY
                               else dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        found = self.records.resolve(question.name, question.rdtype)
        if found is None:
            return await self._forward(query, wire, tcp=tcp)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        _fill(response, found)
        limit = 65535 if tcp else max(UDP_MIN_PAYLOAD, min(query.payload, UDP_MAX_PAYLOAD)
                                      if query.edns >= 0 else UDP_MIN_PAYLOAD)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer, response.authority, response.additional = [], [], []
            response.flags |= dns.flags.TC
            return response.to_wire()

    async def _forward(self, query: dns.message.Message, wire: bytes, *, tcp: bool) -> bytes:
        for host, port in self.upstreams or ():
            try:
                if tcp:
                    reply = await dns.asyncquery.tcp(query, host, port=port,
                                                     timeout=FORWARD_TIMEOUT)
                else:
                    reply = await dns.asyncquery.udp(query, host, port=port,
                                                     timeout=FORWARD_TIMEOUT,
                                                     ignore_trailing=True)
                return reply.to_wire()
            except (dns.exception.DNSException, OSError) as exc:
                log.debug("forward to %s:%d failed: %s", host, port, exc)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.REFUSED if not self.upstreams else dns.rcode.SERVFAIL)
        return response.to_wire()

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                wire = await asyncio.wait_for(
                    reader.readexactly(struct.unpack("!H", header)[0]), TCP_IDLE_TIMEOUT)
                reply = await self.answer(wire, tcp=True)
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: ClusterDNS) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Forwarded queries wait on an upstream: answer each in its own task.
        task = asyncio.create_task(self._reply(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.server.answer(data, tcp=False)
        except Exception:
            log.exception("DNS query from %s failed", addr[0])
            reply = _servfail(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks:
            task.cancel()


def _key(obj: Obj) -> list[str]:
    meta = obj["metadata"]
    return [f"{meta.get('namespace')}/{meta['name']}"]


def _fill(response: dns.message.Message, found: Answer) -> None:
    response.set_rcode(found.rcode)
    response.answer = list(found.answer)
    response.authority = list(found.authority)
    response.additional = list(found.additional)


def _header_reply(wire: bytes, rcode: int) -> bytes | None:
    if len(wire) < 12:
        return None
    flags = struct.unpack("!H", wire[2:4])[0]
    if flags & 0x8000:
        return None  # a response: never answer one (reflection loops)
    reply_flags = 0x8000 | (flags & 0x7900) | rcode  # QR, opcode and RD kept
    return wire[:2] + struct.pack("!HHHHH", reply_flags, 0, 0, 0, 0)


def _formerr(wire: bytes) -> bytes | None:
    return _header_reply(wire, dns.rcode.FORMERR)


def _servfail(wire: bytes) -> bytes | None:
    return _header_reply(wire, dns.rcode.SERVFAIL)


def kube_dns_objects(*, address: str, port: int,
                     cluster_ip: str = DEFAULT_CLUSTER_DNS_IP) -> tuple[Obj, Obj]:
    """The Service kube-system/kube-dns and its selector-less EndpointSlice."""
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS",
              "kubernetes.io/cluster-service": "true"}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
        "spec": {"clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "type": "ClusterIP",
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP",
                            "targetPort": port}]}}
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": KUBE_DNS_SLICE, "namespace": "kube-system",
                     "labels": {dns_records.SERVICE_NAME_LABEL: "kube-dns",
                                "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                  {"name": "dns-tcp", "port": port, "protocol": "TCP"}]}
    return service, endpoint_slice


async def ensure_kube_dns(client: Client, *, address: str, port: int,
                          cluster_ip: str = DEFAULT_CLUSTER_DNS_IP) -> None:
    """Create kube-system/kube-dns, or point its EndpointSlice at `address:port`.

    An existing Service is left as it is (a clusterIP cannot change), but logged
    when it is not at `cluster_ip`.
    """
    assert SERVICES is not None and ENDPOINTSLICES is not None
    service, endpoint_slice = kube_dns_objects(address=address, port=port,
                                               cluster_ip=cluster_ip)
    # Get before create: the API server checks the clusterIP before the name, so
    # creating an existing kube-dns again fails as 422 "already allocated", not 409.
    try:
        current = await client.get(SERVICES, "kube-dns", "kube-system")
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            await client.create(SERVICES, service, "kube-system")
    else:
        if (current.get("spec") or {}).get("clusterIP") != cluster_ip:
            log.warning("Service kube-system/kube-dns exists with clusterIP %s, not %s",
                        current["spec"].get("clusterIP"), cluster_ip)
    try:
        current = await client.get(ENDPOINTSLICES, KUBE_DNS_SLICE, "kube-system")
    except NotFound:
        await client.create(ENDPOINTSLICES, endpoint_slice, "kube-system")
        return
    wanted = copy.deepcopy(current)
    wanted["metadata"]["labels"] = endpoint_slice["metadata"]["labels"]
    for field in ("addressType", "endpoints", "ports"):
        wanted[field] = endpoint_slice[field]
    if wanted != current:
        await client.update(ENDPOINTSLICES, wanted, "kube-system")


def parse_address(value: str) -> tuple[str, int]:
    """`ADDR[:PORT]` (IPv6 as `[ADDR]:PORT`), port 53 by default."""
    host, sep, port = value.rpartition(":")
    if not sep or (host.count(":") and not host.endswith("]")):
        host, port = value, "53"
    host = host.strip("[]")
    ipaddress.ip_address(host)
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad port in {value!r}")
    return host, int(port)


@contextlib.asynccontextmanager
async def serving(kubeconfig: Path, *, host: str, port: int = 53,
                  cluster_ip: str = DEFAULT_CLUSTER_DNS_IP) -> AsyncIterator[ClusterDNS]:
    """The DNS server beside the API server (`kubelite server --cluster-dns`), published
    as kube-system/kube-dns."""
    from kubelite.client import load_kubeconfig

    config = await asyncio.to_thread(load_kubeconfig, kubeconfig)
    async with Client(config, user_agent="kubelite-dns") as client:
        async with ClusterDNS(client, host=host, port=port) as server:
            try:
                await ensure_kube_dns(client, address=host, port=server.port,
                                      cluster_ip=cluster_ip)
            except ApiError as exc:
                log.error("cannot publish cluster DNS as kube-system/kube-dns: %s", exc)
            yield server
