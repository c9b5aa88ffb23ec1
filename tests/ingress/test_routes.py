"""Host and path matching of the routing table, and its building from API objects."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from kubelite.ingress.build import build_table, key_pair, ready_endpoints
from kubelite.ingress.routes import KeyPair, Route, TableBuilder, Upstream, normalize_host

A, B, C, D = (Upstream(name=n, endpoints=((f"10.0.0.{i}", 80),))
              for i, n in enumerate("abcd", 1))
DEF = Upstream(name="default")


def table():
    t = TableBuilder()
    t.add_route("foo.com", Route("Prefix", "/", A))
    t.add_route("foo.com", Route("Prefix", "/api", B))
    t.add_route("foo.com", Route("Exact", "/api", C))
    t.add_route("foo.com", Route("Prefix", "/api/v2/", D))
    t.add_route("*.bar.com", Route("Prefix", "/", B))
    t.add_route("x.bar.com", Route("Exact", "/only", C))
    t.add_route("", Route("Prefix", "/any", D))
    t.set_default(DEF)
    return t.build()


@dataclass(frozen=True)
class Case:
    name: str
    host: str
    path: str
    want: Upstream | None


CASES = [
    Case("prefix root catches everything else on its host", "foo.com", "/x/y", A),
    Case("exact wins over prefix of the same path", "foo.com", "/api", C),
    Case("prefix matches a trailing slash", "foo.com", "/api/", B),
    Case("prefix matches deeper elements", "foo.com", "/api/users", B),
    Case("prefix is element-wise, not a string prefix", "foo.com", "/apis", A),
    Case("longest prefix wins; a rule's trailing slash is ignored", "foo.com", "/api/v2", D),
    Case("longest prefix wins below it", "foo.com", "/api/v2/x", D),
    Case("host matching ignores case and port", "FOO.com:8080", "/api", C),
    Case("wildcard matches one label", "a.bar.com", "/z", B),
    Case("wildcard does not match the bare domain", "bar.com", "/z", DEF),
    Case("wildcard does not match two labels", "a.b.bar.com", "/z", DEF),
    Case("an exact host hides the wildcard", "x.bar.com", "/z", DEF),
    Case("an exact host serves its own path", "x.bar.com", "/only", C),
    Case("exact does not match a trailing slash", "x.bar.com", "/only/", DEF),
    Case("host-less rules serve unknown hosts", "other.org", "/any/thing", D),
    Case("unmatched path goes to the default backend", "other.org", "/nope", DEF),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_match(case: Case) -> None:
    assert table().match(case.host, case.path) == case.want


def test_no_default_backend_means_no_match() -> None:
    t = TableBuilder()
    t.add_route("foo.com", Route("Exact", "/", A))
    assert t.build().match("foo.com", "/x") is None


def test_equal_rules_keep_the_first_added() -> None:
    t = TableBuilder()
    t.add_route("foo.com", Route("Prefix", "/a", A))
    t.add_route("foo.com", Route("Prefix", "/a/", B))
    assert t.build().match("foo.com", "/a/b") == A


@pytest.mark.parametrize("raw,want", [("Foo.COM:80", "foo.com"), ("foo.com", "foo.com"),
                                      ("[::1]:443", "[::1]"), ("10.0.0.1:8080", "10.0.0.1")])
def test_normalize_host(raw: str, want: str) -> None:
    assert normalize_host(raw) == want


def test_certificates_by_exact_host_then_wildcard() -> None:
    one, star = KeyPair(b"c1", b"k1"), KeyPair(b"c2", b"k2")
    t = TableBuilder()
    t.add_certificate("a.foo.com", one)
    t.add_certificate("*.foo.com", star)
    built = t.build()
    assert built.certificate("A.foo.com") == one
    assert built.certificate("b.foo.com") == star
    assert built.certificate("foo.com") is None
    assert built.certificate(None) is None


# -- building from objects ---------------------------------------------------------

def ingress(name: str, spec: dict, *, created: str = "2024-01-01T00:00:00Z") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": spec}


def backend(svc: str, port: int | str) -> dict:
    return {"service": {"name": svc,
                        "port": {"number": port} if isinstance(port, int) else {"name": port}}}


SERVICES = {
    "ns/web": {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"},
                                  {"name": "admin", "port": 9000}]}},
    "ns/plain": {"spec": {"ports": [{"port": 80}]}},
}
SLICES = {
    "ns/web": [{"addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                          {"name": "admin", "port": 9090, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}},
                              {"addresses": ["10.244.2.5"], "conditions": {"ready": False}},
                              {"addresses": ["10.244.3.5"]}]}],
    "ns/plain": [{"addressType": "IPv4", "ports": [{"port": 5678}],
                  "endpoints": [{"addresses": ["10.244.1.9"], "conditions": {"ready": True}}]}],
}


def build(*ings: dict, secrets: dict | None = None):
    return build_table(ings, service=SERVICES.get, slices=lambda k: SLICES.get(k, []),
                       secret=(secrets or {}).get)


def test_backends_resolve_by_port_number_and_name_to_ready_endpoints() -> None:
    t = build(ingress("a", {"rules": [{"host": "w.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": backend("web", 80)},
        {"path": "/admin", "pathType": "Exact", "backend": backend("web", "admin")},
        {"path": "/p", "pathType": "ImplementationSpecific", "backend": backend("plain", 80)},
    ]}}]}))
    assert t.match("w.com", "/x").endpoints == (("10.244.1.5", 8080), ("10.244.3.5", 8080))
    assert t.match("w.com", "/admin").endpoints == (("10.244.1.5", 9090), ("10.244.3.5", 9090))
    assert t.match("w.com", "/p/q").endpoints == (("10.244.1.9", 5678),)


def test_unknown_service_or_port_routes_to_no_endpoints() -> None:
    t = build(ingress("a", {"rules": [{"http": {"paths": [
        {"path": "/gone", "pathType": "Prefix", "backend": backend("missing", 80)},
        {"path": "/bad", "pathType": "Prefix", "backend": backend("web", 81)},
    ]}}]}))
    assert t.match("x", "/gone").endpoints == ()
    assert t.match("x", "/bad").endpoints == ()


def test_older_ingress_wins_and_default_backend_is_the_oldest() -> None:
    newer = ingress("b", {"defaultBackend": backend("plain", 80), "rules": [{"host": "h", "http": {
        "paths": [{"path": "/", "pathType": "Prefix", "backend": backend("plain", 80)}]}}]},
        created="2024-02-01T00:00:00Z")
    older = ingress("a", {"defaultBackend": backend("web", 80), "rules": [{"host": "h", "http": {
        "paths": [{"path": "/", "pathType": "Prefix", "backend": backend("web", 80)}]}}]})
    t = build(newer, older)
    assert t.match("h", "/").name == "ns/web:80"
    assert t.match("other", "/").name == "ns/web:80"


def test_tls_hosts_get_the_secret_key_pair() -> None:
    secret = {"type": "kubernetes.io/tls", "data": {
        "tls.crt": base64.b64encode(b"CERT").decode(), "tls.key": base64.b64encode(b"KEY").decode()}}
    t = build(ingress("a", {"defaultBackend": backend("web", 80),
                            "tls": [{"hosts": ["s.com", "*.s.com"], "secretName": "tls"},
                                    {"hosts": ["m.com"], "secretName": "missing"}]}),
              secrets={"ns/tls": secret})
    assert t.certificate("s.com") == KeyPair(b"CERT", b"KEY")
    assert t.certificate("a.s.com") == KeyPair(b"CERT", b"KEY")
    assert t.certificate("m.com") is None


def test_key_pair_rejects_other_secret_types() -> None:
    assert key_pair({"type": "Opaque", "data": {"tls.crt": "QQ==", "tls.key": "QQ=="}}) is None
    assert key_pair(None) is None


def test_ready_endpoints_skip_other_families_and_protocols() -> None:
    slices = [{"addressType": "IPv6", "ports": [{"name": "", "port": 80}],
               "endpoints": [{"addresses": ["fd00::1"]}]},
              {"addressType": "IPv4", "ports": [{"name": "", "port": 53, "protocol": "UDP"}],
               "endpoints": [{"addresses": ["10.0.0.1"]}]}]
    assert ready_endpoints(slices, "") == ()
