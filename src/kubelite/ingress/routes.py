"""The ingress routing table: host and path rules matched as the Ingress spec says.

A `RoutingTable` is immutable. The controller builds a new one on every change
and hands it to the proxy, which swaps one reference: a request reads the
table once when it starts, so requests in flight finish on the table they
began with, and no request ever sees half an update.

Matching (networking.k8s.io/v1 semantics, as ingress-nginx resolves conflicts):
- the host is matched case-insensitively without its port; an exact host rule
  wins over a wildcard `*.foo.com`, which matches exactly one more label
  (`bar.foo.com`, not `foo.com` nor `baz.bar.foo.com`); rules without a host
  serve every host that has no rule of its own;
- among one host's paths the longest path wins; at equal length Exact wins over
  Prefix; at equal rule the oldest Ingress wins;
- Prefix matches path element by element (`/foo` matches `/foo`, `/foo/` and
  `/foo/bar`, never `/foobar`; a trailing slash in the rule is ignored);
  ImplementationSpecific is treated as Prefix;
- a request no path matches goes to the default backend, if any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

PathType = Literal["Exact", "Prefix"]
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Upstream:
    """One Service port resolved to the addresses of its ready endpoints."""

    name: str  # "namespace/service:port", for logs and error pages
    endpoints: tuple[Address, ...] = ()


@dataclass(frozen=True, slots=True)
class Route:
    path_type: PathType
    path: str
    upstream: Upstream

    def matches(self, path: str) -> bool:
        if self.path_type == "Exact":
            return path == self.path
        prefix = self.path.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")

    @property
    def _rank(self) -> tuple[int, int]:
        length = len(self.path) if self.path_type == "Exact" else len(self.path.rstrip("/"))
        return (-length, 0 if self.path_type == "Exact" else 1)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """PEM certificate chain and private key, from a kubernetes.io/tls Secret."""

    cert: bytes
    key: bytes


def normalize_host(host: str) -> str:
    """The Host header's name part, lower case: `Foo.COM:8080` -> `foo.com`; IPv6 kept bracketed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _sorted(routes: Iterable[Route]) -> tuple[Route, ...]:
    # sorted() is stable, so among equal rules the one added first (oldest Ingress) wins.
    return tuple(sorted(routes, key=lambda r: r._rank))


@dataclass(frozen=True)
class RoutingTable:
    hosts: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)
    # keyed by the part after "*.": "*.foo.com" -> "foo.com"
    wildcards: Mapping[str, tuple[Route, ...]] = field(default_factory=dict)
    any_host: tuple[Route, ...] = ()
    default: Upstream | None = None
    # host name or "*.suffix" -> key pair, for SNI
    certificates: Mapping[str, KeyPair] = field(default_factory=dict)

    def routes_for(self, host: str) -> tuple[Route, ...]:
        host = normalize_host(host)
        found = self.hosts.get(host)
        if found is not None:
            return found
        _, dot, parent = host.partition(".")
        if dot:
            found = self.wildcards.get(parent)
            if found is not None:
                return found
        return self.any_host

    def match(self, host: str, path: str) -> Upstream | None:
        """The upstream serving `path` on `host`, or None when nothing does (404)."""
        for route in self.routes_for(host):
            if route.matches(path):
                return route.upstream
        return self.default

    def certificate(self, server_name: str | None) -> KeyPair | None:
        if not server_name:
            return None
        host = normalize_host(server_name)
        found = self.certificates.get(host)
        if found is None:
            _, dot, parent = host.partition(".")
            found = self.certificates.get("*." + parent) if dot else None
        return found


class TableBuilder:
    """Collects rules in Ingress order (oldest first), then freezes them into a table."""

    def __init__(self) -> None:
        self._hosts: dict[str, list[Route]] = {}
        self._default: Upstream | None = None
        self._certs: dict[str, KeyPair] = {}

    def add_route(self, host: str, route: Route) -> None:
        self._hosts.setdefault(host.lower(), []).append(route)

    def set_default(self, upstream: Upstream) -> None:
        if self._default is None:
            self._default = upstream

    def add_certificate(self, host: str, pair: KeyPair) -> None:
        self._certs.setdefault(host.lower(), pair)

    def build(self) -> RoutingTable:
        hosts = {h: _sorted(r) for h, r in self._hosts.items() if h and not h.startswith("*.")}
        wildcards = {h[2:]: _sorted(r) for h, r in self._hosts.items() if h.startswith("*.")}
        return RoutingTable(
            hosts=MappingProxyType(hosts),
            wildcards=MappingProxyType(wildcards),
            any_host=_sorted(self._hosts.get("", ())),
            default=self._default,
            certificates=MappingProxyType(dict(self._certs)),
        )
