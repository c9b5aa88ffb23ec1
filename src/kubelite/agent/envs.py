"""A container's environment as kubelet builds it: service links, envFrom, env with
valueFrom (configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef) and
`$(VAR)` expansion; and the downward API values that env and volumes share.

Precedence, lowest first: the image's env (applied by the runtime contract's
caller), service links, envFrom in order, env in order.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from kubelite.api.validation_values import parse_quantity

if TYPE_CHECKING:
    # refs.py raises ContainerConfigError from here.
    from kubelite.agent.refs import ObjectSource

Obj = dict[str, Any]


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing ConfigMap, Secret or key);
    shown as the waiting reason CreateContainerConfigError and retried."""

    reason = "CreateContainerConfigError"


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes a
    dollar, and anything else (undefined names, a lone `$`) is kept verbatim."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = value.find(")", i + 2)
            if end < 0:
                out.append(value[i:])
                break
            name = value[i + 2:end]
            out.append(env[name] if name in env else value[i:end + 1])
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_LABEL_KEY = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")


def _format_map(values: Mapping[str, str]) -> str:
    # The downward API's file format for whole label/annotation maps.
    return "\n".join(f'{k}="{_escape(v)}"' for k, v in sorted(values.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def field_value(pod: Obj, path: str, *, host_ip: str, pod_ip: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if m := _LABEL_KEY.fullmatch(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        return _format_map(meta.get(path.split(".")[1]) or {})
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(pod: Obj, ref: Obj, *, container_name: str,
                   allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef: the container's request or limit (a missing limit is the
    node's allocatable) divided by `divisor`, rounded up."""
    name = ref.get("containerName") or container_name
    spec = pod.get("spec") or {}
    container = next((c for c in [*(spec.get("containers") or []),
                                  *(spec.get("initContainers") or [])]
                      if c.get("name") == name), None)
    if container is None:
        raise ContainerConfigError(f"container {name!r} not found for resourceFieldRef")
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or not resource:
        raise ContainerConfigError(f"unsupported resourceFieldRef resource {ref.get('resource')!r}")
    values = (container.get("resources") or {}).get(kind) or {}
    raw = values.get(resource)
    if raw is None and kind == "limits":
        raw = allocatable.get(resource)
    amount = parse_quantity(raw if raw is not None else 0) or Fraction(0)
    divisor = parse_quantity(ref.get("divisor") or 1) or Fraction(1)
    result = math.ceil(amount / divisor)
    # As kubelet: a CPU limit never reads as zero cores.
    if resource == "cpu" and kind == "limits" and result == 0 and amount > 0:
        result = 1
    return str(result)


def decoded(obj: Obj, *, secret: bool) -> dict[str, bytes]:
    """A ConfigMap's or Secret's values as bytes (binaryData and Secret data are base64)."""
    if secret:
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("binaryData") or {}).items():
        out[k] = base64.b64decode(v)
    return out


def _as_text(obj: Obj, *, secret: bool) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in decoded(obj, secret=secret).items()}


def service_links(services: list[Obj], *, namespace: str, enable: bool) -> dict[str, str]:
    """Docker-link style variables (FOO_SERVICE_HOST, FOO_PORT_80_TCP, ...); with
    enableServiceLinks false only the `kubernetes` Service's are set."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        meta, spec = svc["metadata"], svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        is_master = meta.get("namespace") == "default" and meta["name"] == "kubernetes"
        if meta.get("namespace") != namespace and not is_master:
            continue
        if not enable and not is_master:
            continue
        prefix = meta["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
        for port in ports:
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port.get("port"))
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first.get('port')}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            base = f"{prefix}_PORT_{port.get('port')}_{proto}"
            env[base] = f"{proto.lower()}://{ip}:{port.get('port')}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(port.get("port"))
            env[f"{base}_ADDR"] = ip
    return env


async def container_env(
    pod: Obj,
    container: Obj,
    *,
    source: ObjectSource,
    host_ip: str,
    pod_ip: str,
    allocatable: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The container's env in order (envFrom and env as written, then the service
    links they did not override); raises ContainerConfigError for a missing
    ConfigMap, Secret or key that is not optional."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    links = service_links(await source.services(namespace), namespace=namespace,
                          enable=spec.get("enableServiceLinks", True) is not False)
    values: dict[str, str] = {}

    async def lookup(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = await source.get(kind, namespace, name)  # type: ignore[arg-type]
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind[:-1]} "{name}" not found')
        return _as_text(obj, secret=kind == "secrets")

    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix") or ""
        for key, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = env_from.get(key)
            if ref is None:
                continue
            data = await lookup(kind, ref.get("name", ""), bool(ref.get("optional")))
            for k, v in (data or {}).items():
                values[prefix + k] = v
    for env in container.get("env") or []:
        name = env.get("name", "")
        if "valueFrom" not in env:
            values[name] = expand(str(env.get("value") or ""), {**links, **values})
            continue
        value = await _value_from(pod, container, env["valueFrom"], lookup, namespace,
                                  host_ip=host_ip, pod_ip=pod_ip, allocatable=allocatable)
        if value is not None:
            values[name] = value
    ordered = list(values.items())
    ordered += [(k, v) for k, v in links.items() if k not in values]
    return ordered


async def _value_from(pod: Obj, container: Obj, source: Obj, lookup: Any, namespace: str, *,
                      host_ip: str, pod_ip: str, allocatable: Mapping[str, str]) -> str | None:
    if ref := source.get("fieldRef"):
        return field_value(pod, ref.get("fieldPath", ""), host_ip=host_ip, pod_ip=pod_ip)
    if ref := source.get("resourceFieldRef"):
        return resource_value(pod, ref, container_name=container.get("name", ""),
                              allocatable=allocatable)
    for key, kind, title in (("configMapKeyRef", "configmaps", "ConfigMap"),
                             ("secretKeyRef", "secrets", "Secret")):
        ref = source.get(key)
        if ref is None:
            continue
        optional = bool(ref.get("optional"))
        data = await lookup(kind, ref.get("name", ""), optional)
        if data is None:
            return None
        if ref.get("key") not in data:
            if optional:
                return None
            raise ContainerConfigError(
                f"couldn't find key {ref.get('key')} in {title} {namespace}/{ref.get('name')}")
        return data[ref["key"]]
    raise ContainerConfigError("valueFrom names no source")
