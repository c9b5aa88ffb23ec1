"""PodSpec and container rules (core/validation ValidatePodSpec), the ones users hit first."""

from __future__ import annotations

from typing import Any

from kubelite.api.cleancache import CleanCache
from kubelite.api.errors import Cause
from kubelite.api.validation_meta import validate_labels
from kubelite.api.validation_values import (
    check_enum,
    check_nonnegative,
    duplicate,
    each,
    forbidden,
    go_value,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_port_name,
    is_port_num,
    is_qualified_name,
    not_supported,
    parse_quantity,
    required,
)

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROTOCOLS = ("SCTP", "TCP", "UDP")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


# Pod specs (by path and value) validated without a finding.
_CLEAN = CleanCache()


def validate_pod_spec(spec: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(spec, dict):
        return
    key = _CLEAN.key(spec, tag=path)
    if _CLEAN.is_clean(key):
        return
    before = len(out)
    _validate_pod_spec(spec, path, out)
    if len(out) == before:
        _CLEAN.add(key)


def _validate_pod_spec(spec: dict[str, Any], path: str, out: list[Cause]) -> None:
    volumes = _validate_volumes(spec.get("volumes"), f"{path}.volumes", out)
    containers = spec.get("containers")
    if not containers:
        out.append(required(f"{path}.containers"))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in each(spec.get(group)):
            _validate_container(c, f"{path}.{group}[{i}]", names, volumes, group == "containers", out)
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in RESTART_POLICIES:
        out.append(not_supported(f"{path}.restartPolicy", restart, RESTART_POLICIES))
    check_enum(spec.get("dnsPolicy"), f"{path}.dnsPolicy", DNS_POLICIES, out)
    grace = spec.get("terminationGracePeriodSeconds")
    check_nonnegative(grace, f"{path}.terminationGracePeriodSeconds", out)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        out.append(invalid(f"{path}.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"))
    for key in ("serviceAccountName", "nodeName"):
        value = spec.get(key)
        if value:
            for msg in is_dns1123_subdomain(value):
                out.append(invalid(f"{path}.{key}", value, msg))
    hostname = spec.get("hostname")
    if hostname:
        for msg in is_dns1123_label(hostname):
            out.append(invalid(f"{path}.hostname", hostname, msg))
    subdomain = spec.get("subdomain")
    if subdomain:
        for msg in is_dns1123_label(subdomain):
            out.append(invalid(f"{path}.subdomain", subdomain, msg))
    validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector", out)
    for i, tol in each(spec.get("tolerations")):
        _validate_toleration(tol, f"{path}.tolerations[{i}]", out)


def _validate_volumes(volumes: Any, path: str, out: list[Cause]) -> set[str]:
    names: set[str] = set()
    for i, vol in each(volumes):
        name = vol.get("name")
        if not name:
            continue  # the schema walk reported it
        vpath = f"{path}[{i}].name"
        for msg in is_dns1123_label(name):
            out.append(invalid(vpath, name, msg))
        if name in names:
            out.append(duplicate(vpath, name))
        names.add(name)
    return names


def _validate_container(
    c: Any, path: str, names: set[str], volumes: set[str], regular: bool, out: list[Cause]
) -> None:
    if not isinstance(c, dict):
        return
    name = c.get("name")
    if name:
        for msg in is_dns1123_label(name):
            out.append(invalid(f"{path}.name", name, msg))
        if name in names:
            out.append(duplicate(f"{path}.name", name))
        names.add(name)
    if not c.get("image"):
        out.append(required(f"{path}.image"))
    check_enum(c.get("imagePullPolicy"), f"{path}.imagePullPolicy", PULL_POLICIES, out)
    check_enum(
        c.get("terminationMessagePolicy"), f"{path}.terminationMessagePolicy",
        TERMINATION_MESSAGE_POLICIES, out,
    )
    port_names: set[str] = set()
    for i, port in each(c.get("ports")):
        _validate_container_port(port, f"{path}.ports[{i}]", port_names, out)
    for i, env in each(c.get("env")):
        if not env.get("name"):
            continue
        if env.get("value") and env.get("valueFrom"):
            out.append(invalid(
                f"{path}.env[{i}].valueFrom", "",
                "may not be specified when `value` is not empty",
            ))
    for i, mount in each(c.get("volumeMounts")):
        mname = mount.get("name")
        if mname and mname not in volumes:
            out.append(not_found(f"{path}.volumeMounts[{i}].name", mname))
    _validate_resources(c.get("resources"), f"{path}.resources", out)
    if regular:
        for probe in _PROBES:
            _validate_probe(c.get(probe), f"{path}.{probe}", out, success_one=probe != "readinessProbe")


def not_found(path: str, value: Any) -> Cause:
    return Cause("FieldValueNotFound", f"Not found: {go_value(value)}", path)


def _validate_container_port(port: Any, path: str, names: set[str], out: list[Cause]) -> None:
    cport = port.get("containerPort")
    if isinstance(cport, int):
        if cport == 0:
            out.append(required(f"{path}.containerPort"))
        else:
            out.extend(invalid(f"{path}.containerPort", cport, m) for m in is_port_num(cport))
    hport = port.get("hostPort")
    if isinstance(hport, int) and hport != 0:
        out.extend(invalid(f"{path}.hostPort", hport, m) for m in is_port_num(hport))
    name = port.get("name")
    if name:
        out.extend(invalid(f"{path}.name", name, m) for m in is_port_name(name))
        if name in names:
            out.append(duplicate(f"{path}.name", name))
        names.add(name)
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        out.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))


def _validate_resources(res: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(res, dict):
        return
    limits = res.get("limits") or {}
    parsed_limits = {}
    for name, raw in limits.items():
        q = parsed_limits[name] = parse_quantity(raw)
        if q is not None and q < 0:
            out.append(invalid(f"{path}.limits[{name}]", str(raw), "must be greater than or equal to 0"))
    for name, raw in (res.get("requests") or {}).items():
        q = parse_quantity(raw)
        if q is None:
            continue
        if q < 0:
            out.append(invalid(f"{path}.requests[{name}]", str(raw), "must be greater than or equal to 0"))
        limit = parsed_limits.get(name)
        if limit is not None and q > limit:
            out.append(invalid(
                f"{path}.requests[{name}]", str(raw),
                f"must be less than or equal to {name} limit of {limits[name]}",
            ))


def _validate_probe(probe: Any, path: str, out: list[Cause], *, success_one: bool) -> None:
    if not isinstance(probe, dict):
        return
    handlers = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if probe.get(k) is not None]
    if not handlers:
        out.append(required(path, "must specify a handler type"))
    elif len(handlers) > 1:
        out.append(forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        check_nonnegative(probe.get(key), f"{path}.{key}", out)
    success = probe.get("successThreshold")
    if success_one and isinstance(success, int) and success != 1:
        out.append(invalid(f"{path}.successThreshold", success, "must be 1"))
    for handler in ("httpGet", "tcpSocket"):
        action = probe.get(handler)
        if isinstance(action, dict):
            _validate_port_ref(action.get("port"), f"{path}.{handler}.port", out)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        check_enum(http.get("scheme"), f"{path}.httpGet.scheme", ("HTTP", "HTTPS"), out)


def _validate_port_ref(port: Any, path: str, out: list[Cause]) -> None:
    if isinstance(port, int):
        out.extend(invalid(path, port, m) for m in is_port_num(port))
    elif isinstance(port, str):
        out.extend(invalid(path, port, m) for m in is_port_name(port))


def _validate_toleration(tol: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(tol, dict):
        return
    key = tol.get("key") or ""
    op = tol.get("operator") or ""
    value = tol.get("value") or ""
    effect = tol.get("effect") or ""
    if key:
        out.extend(invalid(f"{path}.key", key, m) for m in is_qualified_name(key))
    if not key and op != "Exists":
        out.append(invalid(
            f"{path}.operator", op,
            'operator must be Exists when `key` is empty, which means "match all values and all keys"',
        ))
    if tol.get("tolerationSeconds") is not None and effect != "NoExecute":
        out.append(invalid(f"{path}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
    if op in ("", "Equal"):
        msgs = is_label_value(value)
        if msgs:
            out.append(invalid(f"{path}.operator", value, ";".join(msgs)))
    elif op == "Exists":
        if value:
            out.append(invalid(f"{path}.operator", value, "value must be empty when `operator` is 'Exists'"))
    else:
        out.append(not_supported(f"{path}.operator", op, TOLERATION_OPERATORS))
    if effect:
        check_enum(effect, f"{path}.effect", TAINT_EFFECTS, out)
