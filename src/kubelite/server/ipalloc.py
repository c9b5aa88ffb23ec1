"""ClusterIPs and NodePorts of Services, allocated by the API server on write.

As kube-apiserver's service REST storage: an allocation is made before the
object is stored and undone when the store refuses the write; values the write
drops are freed only once it is stored; a Service's values are freed when it is
finally removed (see Objects._remove). The allocation tables are not stored:
they are rebuilt from the stored Services on start, so they cannot drift from
the objects that hold the values.

Dynamic picks prefer the upper part of each range and leave the lower band to
users who choose their own values (Kubernetes' static subrange, KEP-3070/3668);
within a band the pick is random, so that concurrent creates rarely meet.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelite.api import errors
from kubelite.api.registry import lookup
from kubelite.api.validation_values import invalid

if TYPE_CHECKING:
    from kubelite.server.objects import Objects

Obj = dict[str, Any]
SERVICES = lookup("", "v1", "services")
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DEFAULT_NODE_PORTS = (30000, 32767)


class RangeFull(Exception):
    pass


class _Pool:
    """Integers in [first, last]: taken ones in a set, random picks upper band first."""

    def __init__(self, first: int, last: int, *, static_band: int) -> None:
        self.first, self.last = first, last
        self.split = min(first + static_band, last)
        self.taken: set[int] = set()

    def __contains__(self, value: int) -> bool:
        return self.first <= value <= self.last

    def pick(self) -> int:
        for lo, hi in ((self.split, self.last), (self.first, self.split - 1)):
            if hi < lo:
                continue
            size = hi - lo + 1
            start = random.randrange(size)
            for step in range(size):
                value = lo + (start + step) % size
                if value not in self.taken:
                    self.taken.add(value)
                    return value
        raise RangeFull("range is full")


def _band(size: int, *, low: int, high: int, step: int) -> int:
    """Kubernetes' size of the static band: size/step, between low and high."""
    return min(max(low, size // step), high)


def needs_cluster_ip(obj: Obj) -> bool:
    spec = obj.get("spec") or {}
    return spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None"


def needs_node_ports(obj: Obj) -> bool:
    return (obj.get("spec") or {}).get("type") in ("NodePort", "LoadBalancer")


def _node_ports(obj: Obj) -> set[int]:
    spec = obj.get("spec") or {}
    ports = {p["nodePort"] for p in spec.get("ports") or []
             if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]}
    if isinstance(spec.get("healthCheckNodePort"), int) and spec["healthCheckNodePort"]:
        ports.add(spec["healthCheckNodePort"])
    return ports


def _cluster_ips(obj: Obj) -> set[int]:
    out: set[int] = set()
    for ip in (obj.get("spec") or {}).get("clusterIPs") or []:
        try:
            out.add(int(ipaddress.ip_address(ip)))
        except ValueError:
            continue
    return out


@dataclass
class Reservation:
    """What one write holds: `commit()` once stored, `rollback()` if it was not."""

    allocator: ServiceAllocator | None = None
    ips: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)
    drop_ips: set[int] = field(default_factory=set)
    drop_ports: set[int] = field(default_factory=set)
    dry_run: bool = False

    def commit(self) -> None:
        if self.allocator is None:
            return
        if self.dry_run:
            self.rollback()
            return
        self.allocator.ips.taken.difference_update(self.drop_ips - self.ips)
        self.allocator.ports.taken.difference_update(self.drop_ports - self.ports)

    def rollback(self) -> None:
        if self.allocator is None:
            return
        self.allocator.ips.taken.difference_update(self.ips)
        self.allocator.ports.taken.difference_update(self.ports)
        self.ips.clear()
        self.ports.clear()


class ServiceAllocator:
    def __init__(self, *, service_cidr: str = DEFAULT_SERVICE_CIDR,
                 node_ports: tuple[int, int] = DEFAULT_NODE_PORTS) -> None:
        self.network = ipaddress.ip_network(service_cidr, strict=False)
        first, last = int(self.network.network_address) + 1, int(self.network.broadcast_address) - 1
        size = last - first + 1
        self.ips = _Pool(first, last, static_band=_band(size, low=16, high=256, step=16))
        self.port_range = node_ports
        nsize = node_ports[1] - node_ports[0] + 1
        self.ports = _Pool(node_ports[0], node_ports[1],
                           static_band=_band(nsize, low=16, high=128, step=32))

    @classmethod
    async def recover(cls, objects: Objects, **options: Any) -> ServiceAllocator:
        """An allocator holding what the stored Services hold."""
        assert SERVICES is not None
        alloc = cls(**options)
        items, _, _ = await objects.list(SERVICES, None)
        for svc in items:
            alloc.hold(svc)
        return alloc

    def hold(self, svc: Obj) -> None:
        if needs_cluster_ip(svc):
            self.ips.taken.update(ip for ip in _cluster_ips(svc) if ip in self.ips)
        self.ports.taken.update(p for p in _node_ports(svc) if p in self.ports)

    def release(self, svc: Obj) -> None:
        self.ips.taken.difference_update(_cluster_ips(svc))
        self.ports.taken.difference_update(_node_ports(svc))

    # ---- one write ----------------------------------------------------------------

    def reserve(self, new: Obj, old: Obj | None, *, dry_run: bool = False) -> Reservation:
        """Fill in and reserve `new`'s ClusterIP and NodePorts (in place); on a 422 the
        reservation made so far is undone."""
        held = Reservation(self, dry_run=dry_run)
        try:
            if old is not None:
                _drop_type_dependent(new, old)
                _patch_allocated(new, old)
                held.drop_ips = _cluster_ips(old)
                held.drop_ports = _node_ports(old)
            self._reserve_ips(new, held)
            self._reserve_ports(new, held)
            # What the new object still holds is not dropped.
            if needs_cluster_ip(new):
                held.drop_ips -= _cluster_ips(new)
            if needs_node_ports(new):
                held.drop_ports -= _node_ports(new)
        except BaseException:
            held.rollback()
            raise
        return held

    def _reserve_ips(self, svc: Obj, held: Reservation) -> None:
        if not needs_cluster_ip(svc):
            return
        spec = svc["spec"]
        if not spec.get("clusterIP"):
            try:
                value = self.ips.pick()
            except RangeFull as exc:
                raise _invalid(svc, "spec.clusterIPs", spec.get("clusterIPs") or [],
                               f"failed to allocate IP: {exc}") from None
            held.ips.add(value)
            ip = str(ipaddress.ip_address(value))
            spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
            return
        ips = spec.get("clusterIPs") or [spec["clusterIP"]]
        spec["clusterIPs"] = ips
        for text in ips:
            value = int(ipaddress.ip_address(text))
            if value in held.drop_ips:
                continue  # this Service holds it already
            problem = None
            if value not in self.ips:
                problem = (f"the provided IP ({text}) is not in the valid range. The range of "
                           f"valid IPs is {self.network}")
            elif value in self.ips.taken:
                problem = "provided IP is already allocated"
            if problem is not None:
                raise _invalid(svc, "spec.clusterIPs", ips,
                               f"failed to allocate IP {text}: {problem}")
            self.ips.taken.add(value)
            held.ips.add(value)

    def _reserve_ports(self, svc: Obj, held: Reservation) -> None:
        if not needs_node_ports(svc):
            return
        spec = svc["spec"]
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        # User-chosen ports first, so that a dynamic pick cannot take one of them.
        for i, port in enumerate(spec.get("ports") or []):
            if isinstance(port, dict) and port.get("nodePort"):
                self._take_port(svc, port["nodePort"], f"spec.ports[{i}].nodePort", held)
        if spec.get("healthCheckNodePort"):
            self._take_port(svc, spec["healthCheckNodePort"], "spec.healthCheckNodePort", held)
        if spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is False:
            return
        for i, port in enumerate(ports):
            if not port.get("nodePort"):
                port["nodePort"] = self._pick_port(svc, f"spec.ports[{i}].nodePort", held)
        if (spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
                and not spec.get("healthCheckNodePort")):
            spec["healthCheckNodePort"] = self._pick_port(svc, "spec.healthCheckNodePort", held)

    def _take_port(self, svc: Obj, port: int, path: str, held: Reservation) -> None:
        if port in held.drop_ports or port in held.ports:
            return
        if port not in self.ports:
            lo, hi = self.port_range
            raise _invalid(svc, path, port, "provided port is not in the valid range. The "
                           f"range of valid ports is {lo}-{hi}")
        if port in self.ports.taken:
            raise _invalid(svc, path, port, "provided port is already allocated")
        self.ports.taken.add(port)
        held.ports.add(port)

    def _pick_port(self, svc: Obj, path: str, held: Reservation) -> int:
        try:
            port = self.ports.pick()
        except RangeFull as exc:
            raise _invalid(svc, path, 0, str(exc)) from None
        held.ports.add(port)
        return port


def _invalid(svc: Obj, path: str, value: Any, detail: str) -> errors.APIError:
    return errors.invalid("", "Service", svc["metadata"].get("name", ""),
                          [invalid(path, value, detail)])


def _drop_type_dependent(new: Obj, old: Obj) -> None:
    """Values the old type needed and the new one does not go, unless the user changed
    them in this very write (then validation or allocation speaks), as Kubernetes'
    dropTypeDependentFields."""
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if spec.get("type") == "ExternalName" and spec.get("clusterIP") == old_spec.get("clusterIP"):
            for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(key, None)
    if needs_node_ports(old) and not needs_node_ports(new):
        old_ports = {p.get("name"): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if port.get("nodePort") and old_ports.get(port.get("name")) == port["nodePort"]:
                port.pop("nodePort")
        if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)


def _patch_allocated(new: Obj, old: Obj) -> None:
    """A replace that omits allocated values keeps them (Kubernetes' patchAllocatedValues):
    `kubectl replace` of a manifest without clusterIP is no attempt to change it."""
    spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP")
        if not spec.get("clusterIPs"):
            spec["clusterIPs"] = old_spec.get("clusterIPs")
    if needs_node_ports(old) and needs_node_ports(new):
        in_new = {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")}
        by_name = {p.get("name", ""): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            if not port.get("nodePort"):
                value = by_name.get(port.get("name", ""))
                if value and value not in in_new:
                    port["nodePort"] = value
                    in_new.add(value)
        if not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]


def reserve(objects: Objects, new: Obj, old: Obj | None, *, plural: str,
            dry_run: bool) -> Reservation:
    """The write path's hook: a no-op reservation for anything but Services."""
    allocator = getattr(objects, "service_allocator", None)
    if plural != "services" or allocator is None:
        return Reservation()
    return allocator.reserve(new, old, dry_run=dry_run)


__all__ = ["DEFAULT_NODE_PORTS", "DEFAULT_SERVICE_CIDR", "Reservation", "ServiceAllocator",
           "needs_cluster_ip", "needs_node_ports", "reserve"]
