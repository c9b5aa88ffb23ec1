"""Table printers of the core (v1) kinds, as kube-apiserver 1.32 prints them
(kubernetes pkg/printers/internalversion/printers.go)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubelite.api.selectors import format_labels
from kubelite.api.tables_base import (
    AGE,
    NAME,
    Cells,
    Column,
    Obj,
    age,
    condition_true,
    human_duration,
    meta,
    more_list,
    name,
    parse_time,
    printer,
    quantity,
    since,
    spec,
    status,
    wide,
)

# ---------------------------------------------------------------- pods

_POD_COMPLETED = {
    "Succeeded": [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}],
    "Failed": [{"type": "Completed", "status": "True", "reason": "Failed",
                "message": "The pod failed."}],
}
_NODE_LOST = "NodeLost"  # node.NodeUnreachablePodReason


def _pod_conditions(pod: Obj) -> list[dict[str, str]] | None:
    return _POD_COMPLETED.get(status(pod).get("phase", ""))


def _restartable(container: Any) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return bool(container) and container.get("restartPolicy") == "Always"


def _later(current: datetime | None, status_: Any) -> datetime | None:
    """The later of `current` and the container's last termination time."""
    finished = parse_time((((status_.get("lastState") or {}).get("terminated")) or {})
                          .get("finishedAt"))
    if finished is None or (current is not None and finished <= current):
        return current
    return finished


def _terminated_reason(term: Any, prefix: str) -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def pod_summary(pod: Obj, now: datetime) -> tuple[str, str, str]:
    """READY, STATUS and RESTARTS of a pod, derived exactly as printPod does."""
    sp, st = spec(pod), status(pod)
    init_specs = {c.get("name"): c for c in sp.get("initContainers") or ()}
    total = len(sp.get("containers") or ()) + sum(map(_restartable, init_specs.values()))
    phase = st.get("phase") or ""
    reason = st.get("reason") or phase
    for cond in st.get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(st.get("initContainerStatuses") or ()):
        count = cs.get("restartCount") or 0
        restarts += count
        last_restart = _later(last_restart, cs)
        sidecar = _restartable(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, cs)
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and not term.get("exitCode"):
            continue
        if sidecar and cs.get("started"):
            ready += 1 if cs.get("ready") else 0
            continue
        if term is not None:
            reason = _terminated_reason(term, "Init:")
        elif wait is not None and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or condition_true(st.get("conditions"), "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        running = False
        for cs in reversed(st.get("containerStatuses") or ()):
            restarts += cs.get("restartCount") or 0
            last_restart = _later(last_restart, cs)
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait is not None and wait.get("reason"):
                reason = wait["reason"]
            elif term is not None:
                reason = _terminated_reason(term, "")
            elif cs.get("ready") and state.get("running") is not None:
                running = True
                ready += 1
        # A pod whose last container exited while others still run is not Completed.
        if reason == "Completed" and running:
            ready_cond = any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in st.get("conditions") or ())
            reason = "Running" if ready_cond else "NotReady"

    if meta(pod).get("deletionTimestamp"):
        if st.get("reason") == _NODE_LOST:
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{total}", reason, restarts_text


def _readiness_gates(pod: Obj) -> str:
    gates = spec(pod).get("readinessGates") or ()
    if not gates:
        return "<none>"
    conditions = status(pod).get("conditions") or ()
    passed = 0
    for gate in gates:
        for cond in conditions:
            if cond.get("type") == gate.get("conditionType"):
                passed += cond.get("status") == "True"
                break
    return f"{passed}/{len(gates)}"


@printer(
    "pods", NAME,
    Column("Ready", doc="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", doc="The aggregate status of the containers in this pod."),
    Column("Restarts", doc="The number of times the containers in this pod have been "
                           "restarted and when the last container in this pod has restarted."),
    AGE,
    wide("IP", ("core.v1.PodStatus", "podIP")),
    wide("Node", ("core.v1.PodSpec", "nodeName")),
    wide("Nominated Node", ("core.v1.PodStatus", "nominatedNodeName")),
    wide("Readiness Gates", ("core.v1.PodSpec", "readinessGates")),
    conditions=_pod_conditions,
)
def _pod(pod: Obj, now: datetime) -> Cells:
    ready, reason, restarts = pod_summary(pod, now)
    st = status(pod)
    ips = st.get("podIPs")
    ip = (ips[0].get("ip") if ips else st.get("podIP")) or "<none>"
    return [name(pod), ready, reason, restarts, age(pod, now), ip,
            spec(pod).get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            _readiness_gates(pod)]


# ---------------------------------------------------------------- nodes, namespaces

_ROLE_PREFIX = "node-role.kubernetes.io/"


def _node_address(node: Obj, type_: str) -> str:
    for addr in status(node).get("addresses") or ():
        if addr.get("type") == type_:
            return addr.get("address", "")
    return "<none>"


@printer(
    "nodes", NAME,
    Column("Status", doc="The status of the node"),
    Column("Roles", doc="The roles of the node"),
    AGE,
    Column("Version", doc=("core.v1.NodeSystemInfo", "kubeletVersion")),
    wide("Internal-IP", ("core.v1.NodeStatus", "addresses")),
    wide("External-IP", ("core.v1.NodeStatus", "addresses")),
    wide("OS-Image", ("core.v1.NodeSystemInfo", "osImage")),
    wide("Kernel-Version", ("core.v1.NodeSystemInfo", "kernelVersion")),
    wide("Container-Runtime", ("core.v1.NodeSystemInfo", "containerRuntimeVersion")),
)
def _node(node: Obj, now: datetime) -> Cells:
    ready = None
    for cond in status(node).get("conditions") or ():
        if cond.get("type") == "Ready":
            ready = cond
    states = ["Unknown" if ready is None else
              "Ready" if ready.get("status") == "True" else "NotReady"]
    if spec(node).get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = set()
    for key, value in (meta(node).get("labels") or {}).items():
        if key.startswith(_ROLE_PREFIX) and len(key) > len(_ROLE_PREFIX):
            roles.add(key[len(_ROLE_PREFIX):])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    info = status(node).get("nodeInfo") or {}
    return [name(node), ",".join(states), ",".join(sorted(roles)) or "<none>", age(node, now),
            info.get("kubeletVersion", ""), _node_address(node, "InternalIP"),
            _node_address(node, "ExternalIP"), info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


@printer("namespaces", NAME, Column("Status", doc="The status of the namespace"), AGE)
def _namespace(ns: Obj, now: datetime) -> Cells:
    return [name(ns), status(ns).get("phase", ""), age(ns, now)]


# ---------------------------------------------------------------- services, endpoints


def _load_balancer(lb: Any) -> list[str]:
    found = {i.get("ip") or i.get("hostname") for i in (lb or {}).get("ingress") or ()}
    return sorted(found - {None, ""})


def _external_ip(svc: Obj) -> str:
    sp = spec(svc)
    type_ = sp.get("type", "ClusterIP")
    external = sp.get("externalIPs") or []
    if type_ in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if type_ == "LoadBalancer":
        # The apiserver prints wide, so the address list is never clipped.
        addresses = _load_balancer(status(svc).get("loadBalancer")) + external
        return ",".join(addresses) or "<pending>"
    if type_ == "ExternalName":
        return sp.get("externalName", "")
    return "<unknown>"


def _service_ports(ports: Any) -> str:
    pieces = []
    for p in ports or ():
        proto = p.get("protocol", "TCP")
        node_port = p.get("nodePort")
        pieces.append(f"{p.get('port')}:{node_port}/{proto}" if node_port
                      else f"{p.get('port')}/{proto}")
    return ",".join(pieces) or "<none>"


@printer(
    "services", NAME,
    Column("Type", doc=("core.v1.ServiceSpec", "type")),
    Column("Cluster-IP", doc=("core.v1.ServiceSpec", "clusterIP")),
    Column("External-IP", doc=("core.v1.ServiceSpec", "externalIPs")),
    Column("Port(s)", doc=("core.v1.ServiceSpec", "ports")),
    AGE,
    wide("Selector", ("core.v1.ServiceSpec", "selector")),
)
def _service(svc: Obj, now: datetime) -> Cells:
    sp = spec(svc)
    ips = sp.get("clusterIPs") or ([sp["clusterIP"]] if sp.get("clusterIP") else [])
    return [name(svc), sp.get("type", ""), ips[0] if ips else "<none>", _external_ip(svc),
            _service_ports(sp.get("ports")), age(svc, now), format_labels(sp.get("selector"))]


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _format_endpoints(subsets: Any) -> str:
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in subsets:
        addresses = subset.get("addresses") or ()
        ports = subset.get("ports") or ()
        # Headless services may have no ports: then the bare addresses count.
        for port in ports or (None,):
            count += len(addresses)
            for addr in addresses[:max(0, 3 - len(shown))]:
                ip = addr.get("ip", "")
                shown.append(ip if port is None else _host_port(ip, port.get("port")))
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


@printer("endpoints", NAME, Column("Endpoints", doc=("core.v1.Endpoints", "subsets")), AGE)
def _endpoints(ep: Obj, now: datetime) -> Cells:
    return [name(ep), _format_endpoints(ep.get("subsets")), age(ep, now)]


@printer(
    "endpointslices", NAME,
    Column("AddressType", doc=("discovery.v1.EndpointSlice", "addressType")),
    Column("Ports", doc=("discovery.v1.EndpointSlice", "ports")),
    Column("Endpoints", doc=("discovery.v1.EndpointSlice", "endpoints")),
    AGE,
)
def _endpoint_slice(eps: Obj, now: datetime) -> Cells:
    ports = [str(p["port"]) if p.get("port") is not None else p.get("name") or "*"
             for p in eps.get("ports") or ()]
    addresses = [a for e in eps.get("endpoints") or () for a in e.get("addresses") or ()]
    return [name(eps), eps.get("addressType", ""), more_list(ports), more_list(addresses),
            age(eps, now)]


# ---------------------------------------------------------------- config, accounts


@printer("configmaps", NAME, Column("Data", doc=("core.v1.ConfigMap", "data")), AGE)
def _config_map(cm: Obj, now: datetime) -> Cells:
    return [name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age(cm, now)]


@printer("secrets", NAME, Column("Type", doc=("core.v1.Secret", "type")),
         Column("Data", doc=("core.v1.Secret", "data")), AGE)
def _secret(secret: Obj, now: datetime) -> Cells:
    return [name(secret), secret.get("type", ""), len(secret.get("data") or {}), age(secret, now)]


@printer("serviceaccounts", NAME,
         Column("Secrets", doc=("core.v1.ServiceAccount", "secrets")), AGE)
def _service_account(sa: Obj, now: datetime) -> Cells:
    return [name(sa), len(sa.get("secrets") or ()), age(sa, now)]


# ---------------------------------------------------------------- events


def _event_source(event: Obj) -> str:
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


@printer(
    "events",
    Column("Last Seen", doc=("core.v1.Event", "lastTimestamp")),
    Column("Type", doc=("core.v1.Event", "type")),
    Column("Reason", doc=("core.v1.Event", "reason")),
    Column("Object", doc=("core.v1.Event", "involvedObject")),
    wide("Subobject", ("core.v1.ObjectReference", "fieldPath")),
    wide("Source", ("core.v1.Event", "source")),
    Column("Message", doc=("core.v1.Event", "message")),
    wide("First Seen", ("core.v1.Event", "firstTimestamp")),
    wide("Count", ("core.v1.Event", "count")),
    Column("Name", priority=1, format="name", doc=("ObjectMeta", "name")),
)
def _event(event: Obj, now: datetime) -> Cells:
    first = (since(event["firstTimestamp"], now) if event.get("firstTimestamp")
             else since(event.get("eventTime"), now))
    last = since(event["lastTimestamp"], now) if event.get("lastTimestamp") else first
    count = event.get("count") or 0
    series = event.get("series")
    if series is not None:
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count") or 0
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = event.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [last, event.get("type", ""), event.get("reason", ""), target,
            involved.get("fieldPath", ""), _event_source(event),
            (event.get("message") or "").strip(), first, count, name(event)]


# ---------------------------------------------------------------- volumes

_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"),
                 ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP"))
_BETA_CLASS = "volume.beta.kubernetes.io/storage-class"


def _access_modes(modes: Any) -> str:
    present = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def _terminating_phase(obj: Obj) -> str:
    return "Terminating" if meta(obj).get("deletionTimestamp") else status(obj).get("phase", "")


@printer(
    "persistentvolumes", NAME,
    Column("Capacity", doc=("core.v1.PersistentVolumeSpec", "capacity")),
    Column("Access Modes", doc=("core.v1.PersistentVolumeSpec", "accessModes")),
    Column("Reclaim Policy", doc=("core.v1.PersistentVolumeSpec",
                                  "persistentVolumeReclaimPolicy")),
    Column("Status", doc=("core.v1.PersistentVolumeStatus", "phase")),
    Column("Claim", doc=("core.v1.PersistentVolumeSpec", "claimRef")),
    Column("StorageClass", doc="StorageClass of the pv"),
    Column("VolumeAttributesClass", doc="VolumeAttributesClass of the pv"),
    Column("Reason", doc=("core.v1.PersistentVolumeStatus", "reason")),
    AGE,
    wide("VolumeMode", ("core.v1.PersistentVolumeSpec", "volumeMode")),
)
def _persistent_volume(pv: Obj, now: datetime) -> Cells:
    sp = spec(pv)
    ref = sp.get("claimRef")
    claim = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
    annotations = meta(pv).get("annotations") or {}
    storage_class = annotations.get(_BETA_CLASS, sp.get("storageClassName", ""))
    return [name(pv), quantity((sp.get("capacity") or {}).get("storage")),
            _access_modes(sp.get("accessModes")), sp.get("persistentVolumeReclaimPolicy", ""),
            _terminating_phase(pv), claim, storage_class,
            sp.get("volumeAttributesClassName") or "<unset>", status(pv).get("reason", ""),
            age(pv, now), sp.get("volumeMode") or "<unset>"]


@printer(
    "persistentvolumeclaims", NAME,
    Column("Status", doc=("core.v1.PersistentVolumeClaimStatus", "phase")),
    Column("Volume", doc=("core.v1.PersistentVolumeClaimSpec", "volumeName")),
    Column("Capacity", doc=("core.v1.PersistentVolumeClaimStatus", "capacity")),
    Column("Access Modes", doc=("core.v1.PersistentVolumeClaimStatus", "accessModes")),
    Column("StorageClass", doc="StorageClass of the pvc"),
    Column("VolumeAttributesClass", doc="VolumeAttributesClass of the pvc"),
    AGE,
    wide("VolumeMode", ("core.v1.PersistentVolumeClaimSpec", "volumeMode")),
)
def _persistent_volume_claim(pvc: Obj, now: datetime) -> Cells:
    sp, st = spec(pvc), status(pvc)
    capacity = modes = ""
    # Capacity and modes are only shown once the claim is bound to a volume.
    if sp.get("volumeName"):
        modes = _access_modes(st.get("accessModes"))
        capacity = quantity((st.get("capacity") or {}).get("storage"))
    annotations = meta(pvc).get("annotations") or {}
    storage_class = annotations.get(_BETA_CLASS, sp.get("storageClassName") or "")
    return [name(pvc), _terminating_phase(pvc), sp.get("volumeName", ""), capacity, modes,
            storage_class, sp.get("volumeAttributesClassName") or "<unset>", age(pvc, now),
            sp.get("volumeMode") or "<unset>"]
