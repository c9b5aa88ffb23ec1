"""The cluster's DNS records, computed on demand from informer caches.

Follows the Kubernetes DNS specification (kubernetes/dns, docs/specification.md)
as CoreDNS' `kubernetes` plugin implements it:

    SVC.NS.svc.ZONE                A      clusterIP; headless: every ready endpoint address
                                   CNAME  externalName, for type ExternalName
                                   SRV    one per named port (as CoreDNS)
    _PORT._PROTO.SVC.NS.svc.ZONE   SRV    named ports; headless: one per ready endpoint
    HOST.SVC.NS.svc.ZONE           A      headless endpoint by hostname, or by dashed IP
    A-B-C-D.NS.pod.ZONE            A      a pod of NS with that IP ("pods verified": kubelite
                                          answers only for pods that exist, CoreDNS'
                                          default "pods insecure" answers any dashed IP)
    D.C.B.A.in-addr.arpa           PTR    Service clusterIPs, headless endpoints, pods

`Records.resolve` returns None for names it does not own (outside the zone, or
a reverse name of an address the cluster does not know), which the server
forwards or refuses, as CoreDNS' `fallthrough in-addr.arpa`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REVERSE_ZONE = dns.name.from_text("in-addr.arpa.")


@dataclass(slots=True)
class Answer:
    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    # The hostname the endpoint is known by under its Service: its own
    # hostname, else its dashed IP (as CoreDNS names SRV targets).
    host: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, number)


def dashed(ip: str) -> str:
    return ip.replace(".", "-")


def undashed(label: str) -> str | None:
    try:
        addr = ipaddress.IPv4Address(label.replace("-", "."))
    except ValueError:
        return None
    return str(addr) if label.count("-") == 3 else None


def pod_ip(pod: Obj) -> str | None:
    status = pod.get("status") or {}
    if (pod.get("spec") or {}).get("hostNetwork") or status.get("phase") in ("Succeeded",
                                                                              "Failed"):
        return None
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return next((ip for ip in ips if ip and ":" not in ip), None)


def service_key(slice_: Obj) -> list[str]:
    meta = slice_["metadata"]
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{name}"] if name else []


def slice_addresses(slice_: Obj) -> list[str]:
    if slice_.get("addressType", "IPv4") != "IPv4":
        return []
    return [a for ep in slice_.get("endpoints") or [] for a in (ep.get("addresses") or [])[:1]]


def service_ips(svc: Obj) -> list[str]:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return [ip] if ip and ip != "None" and ":" not in ip else []


def is_headless(svc: Obj) -> bool:
    return (svc.get("spec") or {}).get("clusterIP") == "None"


def ready_endpoints(slices: list[Obj]) -> list[Endpoint]:
    """Ready IPv4 endpoints of a Service's slices, each address once."""
    seen: dict[str, Endpoint] = {}
    for s in slices:
        if s.get("addressType", "IPv4") != "IPv4":
            continue
        ports = tuple((p.get("name") or "", p.get("protocol", "TCP"), int(p["port"]))
                      for p in s.get("ports") or [] if p.get("port"))
        for ep in s.get("endpoints") or []:
            # An unset condition means unknown, which Kubernetes treats as ready.
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in (ep.get("addresses") or [])[:1]:
                seen.setdefault(ip, Endpoint(ip=ip, host=ep.get("hostname") or dashed(ip),
                                             ports=ports))
    return list(seen.values())


Lookup = Callable[[str, str], list[Obj]]


class Records:
    """Answers for the cluster zone and the reverse zone from three object sources.

    `services(index, value)`, `slices(index, value)` and `pods(index, value)` return
    cached objects by index: services by "key" (namespace/name), "namespace" and "ip";
    slices by "service" (namespace/name) and "ip"; pods by "ip".
    """

    def __init__(self, *, services: Lookup, slices: Lookup, pods: Lookup,
                 domain: str = "cluster.local", ttl: int = 5) -> None:
        self.services = services
        self.slices = slices
        self.pods = pods
        self.zone = dns.name.from_text(domain.rstrip(".") + ".")
        self.ttl = ttl
        self.soa = dns.rrset.from_text(
            self.zone, ttl, "IN", "SOA",
            f"ns.dns.{self.zone} hostmaster.{self.zone} 1 7200 1800 86400 {ttl}")

    def resolve(self, qname: dns.name.Name, qtype: int) -> Answer | None:
        if qname.is_subdomain(self.zone):
            labels = [label.decode().lower() for label in qname.relativize(self.zone).labels]
            labels.reverse()
            return self._zone(qname, qtype, labels)
        if qname.is_subdomain(REVERSE_ZONE):
            return self._reverse(qname, qtype)
        return None

    def _rr(self, name: dns.name.Name | str, rdtype: str, *texts: str) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(name, self.ttl, "IN", rdtype, list(texts))

    def _name(self, *labels: str) -> dns.name.Name:
        return dns.name.Name(tuple(label.encode() for label in labels)).concatenate(self.zone)

    def _negative(self, rcode: int) -> Answer:
        return Answer(rcode=rcode, authority=[self.soa])

    def _records(self, qname: dns.name.Name, qtype: int, rdtype: int,
                 texts: list[str]) -> Answer:
        """A name that exists: its records of the asked type, or an empty NOERROR."""
        if qtype in (rdtype, dns.rdatatype.ANY) and texts:
            return Answer(answer=[self._rr(qname, dns.rdatatype.to_text(rdtype), *texts)])
        return self._negative(dns.rcode.NOERROR)

    def _zone(self, qname: dns.name.Name, qtype: int, labels: list[str]) -> Answer:
        if not labels:
            if qtype == dns.rdatatype.SOA:
                return Answer(answer=[self.soa])
            return self._records(qname, qtype, dns.rdatatype.NS, [f"ns.dns.{self.zone}"])
        if labels[0] == "svc":
            return self._svc(qname, qtype, labels[1:])
        if labels[0] == "pod" and len(labels) <= 3:
            if len(labels) < 3:
                return self._negative(dns.rcode.NOERROR)
            ip = undashed(labels[2])
            if ip and any(p["metadata"].get("namespace") == labels[1] and pod_ip(p) == ip
                          for p in self.pods("ip", ip)):
                return self._records(qname, qtype, dns.rdatatype.A, [ip])
        if labels[0] == "dns" and labels[1:] == ["ns"] or labels == ["dns"]:
            return self._negative(dns.rcode.NOERROR)
        return self._negative(dns.rcode.NXDOMAIN)

    def _svc(self, qname: dns.name.Name, qtype: int, labels: list[str]) -> Answer:
        if not labels:
            return self._negative(dns.rcode.NOERROR)
        namespace = labels[0]
        if len(labels) == 1:
            exists = bool(self.services("namespace", namespace))
            return self._negative(dns.rcode.NOERROR if exists else dns.rcode.NXDOMAIN)
        key = f"{namespace}/{labels[1]}"
        svc = next(iter(self.services("key", key)), None)
        if svc is None:
            return self._negative(dns.rcode.NXDOMAIN)
        spec = svc.get("spec") or {}
        rest = labels[2:]
        if spec.get("type") == "ExternalName":
            if rest:
                return self._negative(dns.rcode.NXDOMAIN)
            target = spec.get("externalName", "").rstrip(".") + "."
            return Answer(answer=[self._rr(qname, "CNAME", target)])
        endpoints = ready_endpoints(self.slices("service", key)) if is_headless(svc) else []
        base = (labels[1], namespace, "svc")
        if not rest:
            if qtype == dns.rdatatype.SRV:
                return self._srv(qname, qtype, svc, endpoints, base, None, None)
            ips = [e.ip for e in endpoints] if is_headless(svc) else service_ips(svc)
            return self._records(qname, qtype, dns.rdatatype.A, ips)
        if len(rest) == 1:
            if rest[0] in ("_tcp", "_udp", "_sctp"):
                return self._negative(dns.rcode.NOERROR)
            ips = [e.ip for e in endpoints if e.host == rest[0]]
            if ips:
                return self._records(qname, qtype, dns.rdatatype.A, ips)
            return self._negative(dns.rcode.NXDOMAIN)
        if len(rest) == 2 and rest[0].startswith("_") and rest[1].startswith("_"):
            return self._srv(qname, qtype, svc, endpoints, base, rest[0][1:], rest[1][1:])
        return self._negative(dns.rcode.NXDOMAIN)

    def _srv(self, qname: dns.name.Name, qtype: int, svc: Obj, endpoints: list[Endpoint],
             base: tuple[str, ...], protocol: str | None, port_name: str | None) -> Answer:
        """SRV records of named ports; protocol and port_name None mean every named port."""
        wanted = [p for p in (svc.get("spec") or {}).get("ports") or []
                  if p.get("name") and (port_name is None or p["name"].lower() == port_name)
                  and (protocol is None or p.get("protocol", "TCP").lower() == protocol)]
        if not wanted:
            return self._negative(dns.rcode.NXDOMAIN if port_name else dns.rcode.NOERROR)
        texts: list[str] = []
        additional: dict[str, dns.rrset.RRset] = {}
        if not is_headless(svc):
            target = self._name(*base)
            texts = [f"0 100 {p['port']} {target}" for p in wanted]
            additional[str(target)] = self._rr(target, "A", *service_ips(svc))
        else:
            for p in wanted:
                matches = [(e, num) for e in endpoints for name, proto, num in e.ports
                           if name == p["name"] and proto == p.get("protocol", "TCP")]
                for e, number in matches:
                    target = self._name(e.host, *base)
                    texts.append(f"0 {max(1, 100 // len(matches))} {number} {target}")
                    additional[str(target)] = self._rr(target, "A", e.ip)
        if qtype not in (dns.rdatatype.SRV, dns.rdatatype.ANY) or not texts:
            return self._negative(dns.rcode.NOERROR)
        return Answer(answer=[self._rr(qname, "SRV", *dict.fromkeys(texts))],
                      additional=[rr for rr in additional.values() if len(rr)])

    def _reverse(self, qname: dns.name.Name, qtype: int) -> Answer | None:
        parts = qname.relativize(REVERSE_ZONE).labels
        if len(parts) != 4:
            return None
        try:
            ip = str(ipaddress.IPv4Address(".".join(p.decode() for p in reversed(parts))))
        except ValueError:
            return None
        names = self.ptr_names(ip)
        if not names:
            return None
        return self._records(qname, qtype, dns.rdatatype.PTR, [str(n) for n in names])

    def ptr_names(self, ip: str) -> list[dns.name.Name]:
        """What an address is called: Services, headless endpoints, else its pods."""
        names = [self._name(s["metadata"]["name"], s["metadata"]["namespace"], "svc")
                 for s in self.services("ip", ip)]
        for s in self.slices("ip", ip):
            for key in service_key(s):
                namespace, _, name = key.partition("/")
                svc = next(iter(self.services("key", key)), None)
                if svc is None or not is_headless(svc):
                    continue
                names += [self._name(e.host, name, namespace, "svc")
                          for e in ready_endpoints([s]) if e.ip == ip]
        if not names:
            names = [self._name(dashed(ip), p["metadata"]["namespace"], "pod")
                     for p in self.pods("ip", ip) if pod_ip(p) == ip]
        return list(dict.fromkeys(names))
