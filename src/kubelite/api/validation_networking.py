"""Per-kind rules for networking.k8s.io/v1 Ingress and IngressClass, as kube-apiserver 1.32.

The rules of pkg/apis/networking/validation: host rules (a DNS name, not an IP;
wildcards only as a leading `*.`), path rules per pathType (absolute, no `//`,
`/./`, `/../`, `%2f`, no trailing `/.` or `/..` for Exact and Prefix), backends
(a service with a name and one of port name or number, or a resource), TLS
hosts, the class name and the IngressClass controller.
"""

from __future__ import annotations

import re
from typing import Any

from kubelite.api.errors import Cause
from kubelite.api.validation_values import (
    each,
    invalid,
    is_dns1035_label,
    is_dns1123_subdomain,
    is_ip,
    is_port_name,
    is_port_num,
    max_len_msg,
    not_supported,
    required,
    strs,
    too_long,
)

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
MAX_CONTROLLER_LEN = 250

_WILDCARD_FMT = r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_WILDCARD = re.compile(_WILDCARD_FMT)
WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
    "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
    f"alphanumeric character (e.g. '*.example.com', regex used for validation is '{_WILDCARD_FMT}')"
)
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+")


def is_wildcard_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_msg(253)] if len(value) > 253 else []
    if not _WILDCARD.fullmatch(value):
        errs.append(WILDCARD_MSG)
    return errs


def _host(host: str, path: str, out: list[Cause]) -> None:
    if "*" in host:
        out.extend(invalid(path, host, m) for m in is_wildcard_dns1123_subdomain(host))
    else:
        out.extend(invalid(path, host, m) for m in is_dns1123_subdomain(host))


def validate_ingress(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    rules = spec.get("rules")
    if spec.get("defaultBackend") is not None:
        _backend(spec["defaultBackend"], "spec.defaultBackend", out)
    elif not rules:
        out.append(invalid("spec", rules or [], "either `defaultBackend` or `rules` must be specified"))
    for i, rule in each(rules):
        rpath = f"spec.rules[{i}]"
        host = rule.get("host")
        if isinstance(host, str) and host:
            if is_ip(host):
                out.append(invalid(f"{rpath}.host", host, "must be a DNS name, not an IP address"))
            _host(host, f"{rpath}.host", out)
        http = rule.get("http")
        if http is None:
            continue
        paths = http.get("paths")
        if not paths:
            out.append(required(f"{rpath}.http.paths"))
        for j, p in each(paths):
            _http_path(p, f"{rpath}.http.paths[{j}]", out)
    for t, tls in each(spec.get("tls")):
        for h, host in strs(tls.get("hosts")):
            _host(host, f"spec.tls[{t}].hosts[{h}]", out)
        secret = tls.get("secretName")
        if isinstance(secret, str) and secret:
            out.extend(invalid(f"spec.tls[{t}].secretName", secret, m)
                       for m in is_dns1123_subdomain(secret))
    class_name = spec.get("ingressClassName")
    if isinstance(class_name, str):
        out.extend(invalid("spec.ingressClassName", class_name, m)
                   for m in is_dns1123_subdomain(class_name))
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    # Checked on create in Kubernetes; on update the old object already passed it.
    if class_name is not None and LEGACY_CLASS_ANNOTATION in annotations \
            and not (obj.get("metadata") or {}).get("resourceVersion"):
        out.append(invalid(f"metadata.annotations.{LEGACY_CLASS_ANNOTATION}",
                           annotations[LEGACY_CLASS_ANNOTATION],
                           "can not be set when the class field is also set"))


def _http_path(p: dict[str, Any], path: str, out: list[Cause]) -> None:
    ptype = p.get("pathType")
    value = p.get("path") or ""
    if ptype is None:
        # Kubernetes adds "pathType must be specified"; the schema walk already reported
        # this field as required, and one cause per field reads better than two.
        out.append(required(f"{path}.pathType"))
        return
    if ptype in ("Exact", "Prefix"):
        if not value.startswith("/"):
            out.append(invalid(f"{path}.path", value, "must be an absolute path"))
        for seq in INVALID_PATH_SEQUENCES:
            if seq in value:
                out.append(invalid(f"{path}.path", value, f"must not contain '{seq}'"))
        for suffix in INVALID_PATH_SUFFIXES:
            if value.endswith(suffix):
                out.append(invalid(f"{path}.path", value, f"cannot end with '{suffix}'"))
    elif ptype == "ImplementationSpecific":
        if value and not value.startswith("/"):
            out.append(invalid(f"{path}.path", value, "must be an absolute path"))
    else:
        out.append(not_supported(f"{path}.pathType", ptype, PATH_TYPES))
    backend = p.get("backend")
    if backend is None:
        out.append(required(f"{path}.backend"))
    else:
        _backend(backend, f"{path}.backend", out)


def _backend(backend: dict[str, Any], path: str, out: list[Cause]) -> None:
    service = backend.get("service")
    resource = backend.get("resource")
    if service is not None and resource is not None:
        out.append(invalid(path, "", "cannot set both resource and service backends"))
    elif resource is not None:
        _local_object_ref(resource, f"{path}.resource", out)
    elif service is not None:
        name = service.get("name")
        if not name:
            out.append(required(f"{path}.service.name"))
        else:
            out.extend(invalid(f"{path}.service.name", name, m) for m in is_dns1035_label(name))
        port = service.get("port") or {}
        if port.get("name") and port.get("number"):
            out.append(invalid(path, "", "cannot set both port name & port number"))
        elif port.get("name"):
            out.extend(invalid(f"{path}.service.port.name", port["name"], m)
                       for m in is_port_name(port["name"]))
        elif isinstance(port.get("number"), int) and port["number"]:
            out.extend(invalid(f"{path}.service.port.number", port["number"], m)
                       for m in is_port_num(port["number"]))
        else:
            out.append(required(path, "port name or number is required"))
    else:
        out.append(invalid(path, "", "should either be a service or a resource"))


def _local_object_ref(ref: dict[str, Any], path: str, out: list[Cause]) -> None:
    group = ref.get("apiGroup")
    if isinstance(group, str) and group:
        out.extend(invalid(f"{path}.apiGroup", group, m) for m in is_dns1123_subdomain(group))
    for field in ("kind", "name"):
        value = ref.get(field)
        if not value:
            out.append(required(f"{path}.{field}", f"{field} is required"))
        elif value in (".", "..") or "/" in value or "%" in value:
            out.append(invalid(f"{path}.{field}", value,
                               "may not be '.' or '..' or contain '/' or '%'"))


def validate_ingressclass(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    controller = spec.get("controller") or ""
    path = "spec.controller"
    if len(controller) > MAX_CONTROLLER_LEN:
        out.append(too_long(path, MAX_CONTROLLER_LEN))
    if not controller:
        out.append(required(path))
    else:
        host, slash, rest = controller.partition("/")
        if not slash or not rest:
            out.append(invalid(path, controller, 'must be a domain-prefixed path (such as "acme.io/foo")'))
        else:
            out.extend(invalid(path, host, m) for m in is_dns1123_subdomain(host))
            if not _PATH_SEGMENT.fullmatch(rest):
                out.append(invalid(path, rest, "Invalid path"))
    if spec.get("parameters") is not None:
        _local_object_ref(spec["parameters"], "spec.parameters", out)
