"""From API objects (Ingresses, Services, EndpointSlices, Secrets) to a RoutingTable.

Pure functions over the informers' dicts, so the whole translation is tested
without a server. A backend names a Service port by number or by name; it is
resolved to that Service port's name, and then to the EndpointSlice port of the
same name (as kube-proxy does), giving the pods' target port. Only endpoints
whose `conditions.ready` is not false are used. A backend that resolves to
nothing still gets a route, with no endpoints, so its requests are answered
503 rather than falling through to another rule.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable
from typing import Any

from kubelite.ingress.routes import KeyPair, Route, RoutingTable, TableBuilder, Upstream

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TLS_SECRET_TYPE = "kubernetes.io/tls"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def creation_order(ingress: Obj) -> tuple[str, str, str]:
    meta = _meta(ingress)
    return (meta.get("creationTimestamp") or "", meta.get("namespace") or "", meta.get("name") or "")


def slice_service_key(slice_: Obj) -> str | None:
    name = (_meta(slice_).get("labels") or {}).get(SERVICE_NAME_LABEL)
    return f"{_meta(slice_).get('namespace')}/{name}" if name else None


def _service_port(service: Obj, port: Obj) -> Obj | None:
    for sp in (service.get("spec") or {}).get("ports") or []:
        if "number" in port and port.get("number") and sp.get("port") == port["number"]:
            return sp
        if port.get("name") and sp.get("name") == port["name"]:
            return sp
    return None


def ready_endpoints(slices: Iterable[Obj], port_name: str) -> tuple[tuple[str, int], ...]:
    found: dict[tuple[str, int], None] = {}
    for slice_ in slices:
        if slice_.get("addressType", "IPv4") != "IPv4":
            continue
        numbers = [p.get("port") for p in slice_.get("ports") or []
                   if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == "TCP"]
        if not numbers or not numbers[0]:
            continue
        for ep in slice_.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in ep.get("addresses") or []:
                found[(ip, int(numbers[0]))] = None
    return tuple(found)


def resolve_backend(
    backend: Obj,
    namespace: str,
    *,
    service: Callable[[str], Obj | None],
    slices: Callable[[str], list[Obj]],
) -> Upstream:
    ref = backend.get("service") or {}
    port = ref.get("port") or {}
    key = f"{namespace}/{ref.get('name')}"
    name = f"{key}:{port.get('number') or port.get('name')}"
    svc = service(key) if ref else None
    sp = _service_port(svc, port) if svc is not None else None
    if sp is None:
        return Upstream(name=name)
    return Upstream(name=name, endpoints=ready_endpoints(slices(key), sp.get("name") or ""))


def key_pair(secret: Obj | None) -> KeyPair | None:
    if secret is None or secret.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        return None
    data = secret.get("data") or {}
    try:
        cert = base64.b64decode(data.get("tls.crt") or "", validate=True)
        key = base64.b64decode(data.get("tls.key") or "", validate=True)
    except (binascii.Error, ValueError):
        return None
    return KeyPair(cert=cert, key=key) if cert and key else None


def build_table(
    ingresses: Iterable[Obj],
    *,
    service: Callable[[str], Obj | None],
    slices: Callable[[str], list[Obj]],
    secret: Callable[[str], Obj | None],
) -> RoutingTable:
    """Merge `ingresses` (already filtered to this controller's class) into one table.
    `service`, `slices` and `secret` look objects up by `namespace/name` (slices by
    their Service's key)."""
    builder = TableBuilder()
    for ing in sorted(ingresses, key=creation_order):
        ns = _meta(ing).get("namespace") or "default"
        spec = ing.get("spec") or {}

        def upstream(backend: Obj, ns: str = ns) -> Upstream:
            return resolve_backend(backend, ns, service=service, slices=slices)

        if spec.get("defaultBackend"):
            builder.set_default(upstream(spec["defaultBackend"]))
        for rule in spec.get("rules") or []:
            host = rule.get("host") or ""
            for p in (rule.get("http") or {}).get("paths") or []:
                ptype = "Exact" if p.get("pathType") == "Exact" else "Prefix"
                builder.add_route(host, Route(ptype, p.get("path") or "/",
                                              upstream(p.get("backend") or {})))
        for tls in spec.get("tls") or []:
            pair = key_pair(secret(f"{ns}/{tls['secretName']}")) if tls.get("secretName") else None
            if pair is None:
                log.info("ingress %s/%s: TLS secret %r missing or invalid; default certificate used",
                         ns, _meta(ing).get("name"), tls.get("secretName"))
                continue
            for host in tls.get("hosts") or []:
                builder.add_certificate(host, pair)
    return builder.build()
