"""Per-kind rules for the non-workload kinds: Service, Ingress, ConfigMap, Secret, storage, ..."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kubelite.api.errors import Cause
from kubelite.api.validation_meta import validate_label_selector, validate_labels
from kubelite.api.validation_pod import PROTOCOLS, TAINT_EFFECTS
from kubelite.api.validation_values import (
    IP_MSG,
    GoRepr,
    check_enum,
    check_nonnegative,
    duplicate,
    each,
    forbidden,
    int_or_percent,
    invalid,
    is_cidr,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    is_port_name,
    is_port_num,
    is_qualified_name,
    not_supported,
    parse_quantity,
    required,
    strs,
    too_long,
)

MAX_SECRET_SIZE = 1024 * 1024
NODE_PORT_RANGE = (30000, 32767)
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
HIGHEST_USER_PRIORITY = 1_000_000_000


def validate_service(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    stype = spec.get("type")
    check_enum(stype, "spec.type", SERVICE_TYPES, out)
    ports = spec.get("ports") or []
    cluster_ip = spec.get("clusterIP")
    if stype == "ExternalName":
        name = spec.get("externalName")
        if not name:
            out.append(required("spec.externalName"))
        else:
            out.extend(invalid("spec.externalName", name, m) for m in is_dns1123_subdomain(name.rstrip(".")))
    elif not ports and cluster_ip != "None":
        out.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in each(ports):
        _service_port(port, f"spec.ports[{i}]", stype, len(ports) > 1, names, out)
    ips = spec.get("clusterIPs") or []
    for i, ip in strs(ips):
        if ip != "None" and not is_ip(ip):
            out.append(invalid(f"spec.clusterIPs[{i}]", ip, IP_MSG))
    if cluster_ip and ips and ips[0] != cluster_ip:
        out.append(invalid("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    elif cluster_ip and cluster_ip != "None" and not ips and not is_ip(cluster_ip):
        out.append(invalid("spec.clusterIP", cluster_ip, IP_MSG))
    validate_labels(spec.get("selector"), "spec.selector", out)
    check_enum(spec.get("sessionAffinity"), "spec.sessionAffinity", ("ClientIP", "None"), out)
    etp = spec.get("externalTrafficPolicy")
    if etp is not None:
        if stype not in ("NodePort", "LoadBalancer"):
            out.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
        else:
            check_enum(etp, "spec.externalTrafficPolicy", ("Cluster", "Local"), out)
    check_enum(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy", ("Cluster", "Local"), out)
    check_enum(spec.get("ipFamilyPolicy"), "spec.ipFamilyPolicy", ("SingleStack", "PreferDualStack", "RequireDualStack"), out)
    for i, family in strs(spec.get("ipFamilies")):
        check_enum(family, f"spec.ipFamilies[{i}]", ("IPv4", "IPv6"), out)


def _service_port(port: dict[str, Any], path: str, stype: Any, many: bool, names: set[str], out: list[Cause]) -> None:
    name = port.get("name")
    if name:
        out.extend(invalid(f"{path}.name", name, m) for m in is_dns1123_label(name))
        if name in names:
            out.append(duplicate(f"{path}.name", name))
        names.add(name)
    elif many:
        out.append(required(f"{path}.name"))
    number = port.get("port")
    if isinstance(number, int):
        out.extend(invalid(f"{path}.port", number, m) for m in is_port_num(number))
    protocol = port.get("protocol")
    if protocol is not None and protocol not in PROTOCOLS:
        out.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    target = port.get("targetPort")
    if isinstance(target, int):
        out.extend(invalid(f"{path}.targetPort", target, m) for m in is_port_num(target))
    elif isinstance(target, str) and target:
        out.extend(invalid(f"{path}.targetPort", target, m) for m in is_port_name(target))
    node_port = port.get("nodePort")
    if isinstance(node_port, int) and node_port != 0:
        if stype not in ("NodePort", "LoadBalancer"):
            out.append(forbidden(f"{path}.nodePort", f"may not be used when `type` is '{stype}'"))
        elif not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
            out.append(invalid(
                f"{path}.nodePort", node_port,
                "provided port is not in the valid range. The range of valid ports is "
                f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}",
            ))


def _data_keys(data: Any, path: str, out: list[Cause]) -> int:
    size = 0
    for key, value in (data or {}).items():
        out.extend(invalid(f"{path}[{key}]", key, m) for m in is_config_map_key(key))
        size += len(value) if isinstance(value, str) else 0
    return size


def validate_configmap(obj: dict[str, Any], out: list[Cause]) -> None:
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    size = sum(len(v.encode()) for v in data.values() if isinstance(v, str))
    _data_keys(data, "data", out)
    _data_keys(binary, "binaryData", out)
    for key in data:
        if key in binary:
            out.append(invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    size += sum(len(v) * 3 // 4 for v in binary.values() if isinstance(v, str))
    if size > MAX_SECRET_SIZE:
        out.append(too_long("", MAX_SECRET_SIZE))


def validate_secret(obj: dict[str, Any], out: list[Cause]) -> None:
    data = obj.get("data") or {}
    _data_keys(data, "data", out)
    _data_keys(obj.get("stringData"), "stringData", out)
    size = sum(len(_b64(v)) for v in data.values())
    size += sum(len(v.encode()) for v in (obj.get("stringData") or {}).values() if isinstance(v, str))
    if size > MAX_SECRET_SIZE:
        out.append(too_long("data", MAX_SECRET_SIZE))
    keys = set(data) | set(obj.get("stringData") or {})
    stype = obj.get("type")
    needed = {
        "kubernetes.io/tls": ("tls.crt", "tls.key"),
        "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
        "kubernetes.io/dockercfg": (".dockercfg",),
        "kubernetes.io/ssh-auth": ("ssh-privatekey",),
    }.get(stype or "", ())
    for key in needed:
        if key not in keys:
            out.append(required(f"data[{key}]"))
    if stype == "kubernetes.io/service-account-token":
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not annotations.get("kubernetes.io/service-account.name"):
            out.append(required("metadata.annotations[kubernetes.io/service-account.name]"))


def _b64(value: Any) -> bytes:
    try:
        return base64.b64decode(value) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        return b""


def validate_event(obj: dict[str, Any], out: list[Cause]) -> None:
    involved = obj.get("involvedObject")
    namespace = (obj.get("metadata") or {}).get("namespace")
    if isinstance(involved, dict) and involved.get("namespace") and namespace and involved["namespace"] != namespace:
        out.append(invalid("involvedObject.namespace", involved["namespace"], "does not match event.namespace"))
    check_enum(obj.get("type"), "type", ("Normal", "Warning"), out)


def validate_lease(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        out.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    check_nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions", out)


def validate_node(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    cidrs = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    for i, cidr in strs(cidrs):
        if not is_cidr(cidr):
            out.append(invalid(f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    seen: set[tuple[str, str]] = set()
    for i, taint in each(spec.get("taints")):
        key, effect = taint.get("key") or "", taint.get("effect") or ""
        if effect:
            check_enum(effect, f"spec.taints[{i}].effect", TAINT_EFFECTS, out)
        if (key, effect) in seen:
            out.append(duplicate(f"spec.taints[{i}]", GoRepr(f'core.Taint{{Key:"{key}", Effect:"{effect}"}}')))
        seen.add((key, effect))


def _storage_request(resources: Any, path: str, out: list[Cause]) -> None:
    requests = (resources or {}).get("requests") or {}
    if "storage" not in requests:
        out.append(required(f"{path}[storage]"))
        return
    q = parse_quantity(requests["storage"])
    if q is not None and q <= 0:
        out.append(invalid(f"{path}.requests[storage]", str(requests["storage"]), "must be greater than zero"))


def _access_modes(modes: Any, path: str, out: list[Cause], detail: str = "") -> None:
    if not modes:
        out.append(required(path, detail))
        return
    for _, mode in strs(modes):
        if mode not in ACCESS_MODES:
            out.append(not_supported(path, mode, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        out.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))


_PV_SOURCES = (
    "hostPath", "local", "nfs", "csi", "iscsi", "fc", "rbd", "cephfs", "cinder", "flexVolume",
    "glusterfs", "awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "azureFile",
    "vsphereVolume", "quobyte", "flocker", "photonPersistentDisk", "portworxVolume", "scaleIO",
    "storageos",
)


def validate_pv(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    capacity = spec.get("capacity")
    if not capacity:
        out.append(required("spec.capacity"))
    elif "storage" not in capacity or len(capacity) > 1:
        out.append(not_supported("spec.capacity", GoRepr("core.ResourceList{" + ", ".join(f'"{k}"' for k in capacity) + "}"), ("storage",)))
    _access_modes(spec.get("accessModes"), "spec.accessModes", out)
    check_enum(spec.get("persistentVolumeReclaimPolicy"), "spec.persistentVolumeReclaimPolicy", ("Delete", "Recycle", "Retain"), out)
    check_enum(spec.get("volumeMode"), "spec.volumeMode", ("Block", "Filesystem"), out)
    sources = [s for s in _PV_SOURCES if spec.get(s) is not None]
    if not sources:
        out.append(required("spec", "must specify a volume type"))
    elif len(sources) > 1:
        out.append(forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type"))


def validate_pvc(obj: dict[str, Any], out: list[Cause]) -> None:
    pvc_spec(obj.get("spec") or {}, "spec", out)


def pvc_spec(spec: dict[str, Any], path: str, out: list[Cause]) -> None:
    _access_modes(spec.get("accessModes"), f"{path}.accessModes", out, "at least 1 access mode is required")
    if spec.get("dataSource") is None and spec.get("dataSourceRef") is None:
        _storage_request(spec.get("resources"), f"{path}.resources", out)
    check_enum(spec.get("volumeMode"), f"{path}.volumeMode", ("Block", "Filesystem"), out)
    if spec.get("selector") is not None:
        validate_label_selector(spec["selector"], f"{path}.selector", out)


def validate_priorityclass(obj: dict[str, Any], out: list[Cause]) -> None:
    name = (obj.get("metadata") or {}).get("name") or ""
    value = obj.get("value")
    system = name.startswith("system-")
    if system and name not in ("system-cluster-critical", "system-node-critical"):
        out.append(invalid("metadata.name", name, "priority class names with 'system-' prefix are reserved"))
    if isinstance(value, int) and value > HIGHEST_USER_PRIORITY and not system:
        out.append(forbidden("value", f"maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"))
    check_enum(obj.get("preemptionPolicy"), "preemptionPolicy", ("Never", "PreemptLowerPriority"), out)


def validate_storageclass(obj: dict[str, Any], out: list[Cause]) -> None:
    provisioner = obj.get("provisioner")
    if provisioner:
        out.extend(invalid("provisioner", provisioner, m) for m in is_qualified_name(provisioner.lower()))
    check_enum(obj.get("reclaimPolicy"), "reclaimPolicy", ("Delete", "Retain"), out)
    check_enum(obj.get("volumeBindingMode"), "volumeBindingMode", ("Immediate", "WaitForFirstConsumer"), out)


def validate_endpointslice(obj: dict[str, Any], out: list[Cause]) -> None:
    family = obj.get("addressType")
    check_enum(family, "addressType", ("IPv4", "IPv6", "FQDN"), out)
    for i, ep in each(obj.get("endpoints")):
        addresses = ep.get("addresses") or []
        if not addresses:
            out.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
        for j, addr in strs(addresses):
            if family in ("IPv4", "IPv6") and not is_ip(addr):
                out.append(invalid(f"endpoints[{i}].addresses[{j}]", addr, IP_MSG))
    for i, port in each(obj.get("ports")):
        check_enum(port.get("protocol"), f"ports[{i}].protocol", PROTOCOLS, out)
        if isinstance(port.get("port"), int):
            out.extend(invalid(f"ports[{i}].port", port["port"], m) for m in is_port_num(port["port"]))


def validate_endpoints(obj: dict[str, Any], out: list[Cause]) -> None:
    for i, subset in each(obj.get("subsets")):
        for kind in ("addresses", "notReadyAddresses"):
            for j, addr in each(subset.get(kind)):
                ip = addr.get("ip")
                if ip and not is_ip(ip):
                    out.append(invalid(f"subsets[{i}].{kind}[{j}].ip", ip, IP_MSG))
        for j, port in each(subset.get("ports")):
            check_enum(port.get("protocol"), f"subsets[{i}].ports[{j}].protocol", PROTOCOLS, out)
            if isinstance(port.get("port"), int):
                out.extend(invalid(f"subsets[{i}].ports[{j}].port", port["port"], m) for m in is_port_num(port["port"]))


def validate_pdb(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        out.append(invalid("spec", GoRepr("policy.PodDisruptionBudgetSpec{...}"), "minAvailable and maxUnavailable cannot be both set"))
    for key in ("minAvailable", "maxUnavailable"):
        value = spec.get(key)
        if value is not None:
            pct = int_or_percent(value, f"spec.{key}", out)
            if isinstance(value, str) and pct is not None and pct > 100:
                out.append(invalid(f"spec.{key}", value, "must not be greater than 100%"))
    if spec.get("selector") is not None:
        validate_label_selector(spec["selector"], "spec.selector", out)
    check_enum(spec.get("unhealthyPodEvictionPolicy"), "spec.unhealthyPodEvictionPolicy", ("AlwaysAllow", "IfHealthyBudget"), out)


def validate_namespace(obj: dict[str, Any], out: list[Cause]) -> None:
    for i, fin in strs((obj.get("spec") or {}).get("finalizers")):
        if "/" not in fin and fin != "kubernetes":
            out.append(invalid(f"spec.finalizers[{i}]", fin, "name is neither a standard finalizer name nor is it fully qualified"))
