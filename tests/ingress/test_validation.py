"""Ingress and IngressClass validation: the field path and message of each refusal."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.api.registry import lookup
from kubelite.api.validation import validate

INGRESSES = lookup("networking.k8s.io", "v1", "ingresses")
CLASSES = lookup("networking.k8s.io", "v1", "ingressclasses")
BACKEND = {"service": {"name": "web", "port": {"number": 80}}}
P0 = "spec.rules[0].http.paths[0]"


def ingress(**path: Any) -> dict:
    p = {"path": "/", "pathType": "Prefix", "backend": BACKEND, **path}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ing", "namespace": "default"},
            "spec": {"rules": [{"host": "foo.example.com", "http": {"paths": [p]}}]}}


def with_spec(obj: dict, **changes: Any) -> dict:
    obj = copy.deepcopy(obj)
    obj["spec"].update(changes)
    return obj


def with_host(host: str) -> dict:
    obj = ingress()
    obj["spec"]["rules"][0]["host"] = host
    return obj


def without(key: str) -> dict:
    obj = ingress()
    del obj["spec"]["rules"][0]["http"]["paths"][0][key]
    return obj


@dataclass(frozen=True)
class Case:
    name: str
    obj: dict
    # (field, message fragment) pairs expected; empty means valid
    want: tuple[tuple[str, str], ...] = field(default=())


CASES = [
    Case("a plain ingress is valid", ingress()),
    Case("a wildcard host is valid", with_host("*.example.com")),
    Case("an unknown pathType is refused", ingress(pathType="Regex"),
         ((f"{P0}.pathType", 'Unsupported value: "Regex"'),)),
    Case("a missing pathType is refused", without("pathType"),
         ((f"{P0}.pathType", "Required value"),)),
    Case("a missing backend is refused", without("backend"),
         ((f"{P0}.backend", "Required value"),)),
    Case("an empty backend is refused", ingress(backend={}),
         ((f"{P0}.backend", "should either be a service or a resource"),)),
    Case("a backend without port is refused", ingress(backend={"service": {"name": "web"}}),
         ((f"{P0}.backend", "port name or number is required"),)),
    Case("a relative Prefix path is refused", ingress(path="api"),
         ((f"{P0}.path", "must be an absolute path"),)),
    Case("a path with // is refused", ingress(path="/a//b"),
         ((f"{P0}.path", "must not contain '//'"),)),
    Case("a path ending in /.. is refused", ingress(path="/a/..", pathType="Exact"),
         ((f"{P0}.path", "cannot end with '/..'"),)),
    Case("ImplementationSpecific may have no path",
         ingress(path="", pathType="ImplementationSpecific")),
    Case("an upper-case host is refused", with_host("Foo.com"),
         (("spec.rules[0].host", "a lowercase RFC 1123 subdomain"),)),
    Case("an IP host is refused", with_host("10.1.2.3"),
         (("spec.rules[0].host", "must be a DNS name, not an IP address"),)),
    Case("a wildcard inside a host is refused", with_host("foo.*.com"),
         (("spec.rules[0].host", "a wildcard DNS-1123 subdomain"),)),
    Case("a bad TLS host is refused",
         with_spec(ingress(), tls=[{"hosts": ["a_b.com"], "secretName": "s"}]),
         (("spec.tls[0].hosts[0]", "RFC 1123"),)),
    Case("a bad class name is refused", with_spec(ingress(), ingressClassName="Bad_Name"),
         (("spec.ingressClassName", "RFC 1123"),)),
    Case("neither rules nor a default backend is refused",
         with_spec(ingress(), rules=[]),
         (("spec", "either `defaultBackend` or `rules` must be specified"),)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_ingress(case: Case) -> None:
    errors, _ = validate(INGRESSES, case.obj)
    got = [(e.field, e.message) for e in errors]
    assert len(got) == len(case.want), got
    for (want_field, fragment), (got_field, message) in zip(case.want, got, strict=True):
        assert got_field == want_field and fragment in message, got


@pytest.mark.parametrize("controller,fragment", [
    ("kubelite.io/ingress-controller", None),
    ("no-slash", "must be a domain-prefixed path"),
    ("Bad_Host/x", "RFC 1123"),
    ("", "Required value"),
])
def test_ingress_class_controller(controller: str, fragment: str | None) -> None:
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
           "metadata": {"name": "c"}, "spec": {"controller": controller}}
    errors, _ = validate(CLASSES, obj)
    if fragment is None:
        assert errors == []
    else:
        assert [e.field for e in errors] == ["spec.controller"]
        assert fragment in errors[0].message
