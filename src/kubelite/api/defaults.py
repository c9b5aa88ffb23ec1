"""Defaulting of API objects, as kube-apiserver 1.32 does it on create and update.

`apply_defaults(resource, obj)` fills, in place, what Kubernetes fills between
decoding and validation: the `SetDefaults_*` functions of pkg/apis/*/v1,
plus the few values that Kubernetes sets elsewhere but every client sees on a
created object:
- admission: ServiceAccount (serviceAccountName "default"), Priority
  (priority 0), DefaultTolerationSeconds (not-ready / unreachable tolerations);
- registry strategies on create: the Job's generated selector and labels, the
  Namespace's `kubernetes` finalizer, a new Pod's Pending status and QoS class,
  a Service's clusterIPs and IP families (single-stack IPv4), and the removal
  of `metadata.namespace` from cluster-scoped objects;
- conversion: a Secret's `stringData` merged into `data`.

A value the user set is never overwritten. Everything here is idempotent, so
the server may call it on every create and update. The Job selector needs the
object's uid: the server assigns `metadata.uid` before calling this, or keeps
the one assigned here when there was none.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from kubelite.api.cleancache import json_key
from kubelite.api.conversion import DEFAULT_CPU_UTILIZATION, cpu_utilization
from kubelite.api.patch import deep_copy
from kubelite.api.registry import Resource
from kubelite.api.validation_values import is_ip, parse_quantity

# DefaultTolerationSeconds admission: how long pods stay bound to a NotReady or
# unreachable node before eviction. Kubernetes uses 300; kubelite uses 1 so that
# pods of a lost node are replaced within seconds (controllers/nodelifecycle.py).
DEFAULT_NOT_READY_TOLERATION_SECONDS = 1
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
SERVICE_IP_FAMILY = "IPv4"  # kubelite's service CIDR is single-stack IPv4

JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
              "controller-uid", "job-name")

Obj = dict[str, Any]


def apply_defaults(resource: Resource, obj: Obj) -> None:
    meta = obj.get("metadata")
    if not resource.namespaced and isinstance(meta, dict):
        meta.pop("namespace", None)
    fill = _KIND_DEFAULTS.get(resource.kind)
    if fill is not None:
        fill(obj)


# ---------------------------------------------------------------- helpers


def _d(parent: Any, key: str) -> Obj | None:
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else None


def _items(parent: Any, key: str) -> list[Obj]:
    value = parent.get(key) if isinstance(parent, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _ensure(parent: Obj, key: str) -> Obj:
    """The child object, created when absent; a wrongly typed value is left for validation
    to report, and the caller then fills a detached dict."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else {}


def _default(obj: Obj, **values: Any) -> None:
    # Go's zero values ("" for strings, nil pointers) mean "unset".
    for key, value in values.items():
        if obj.get(key) is None or obj.get(key) == "":
            obj[key] = value


def _default_nonzero(obj: Obj, **values: int) -> None:
    for key, value in values.items():
        if not obj.get(key):
            obj[key] = value


# ---------------------------------------------------------------- pods


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image without digest, IfNotPresent otherwise."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag and not digest and image:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _http_get(handler: Obj | None) -> None:
    action = _d(handler, "httpGet")
    if action is not None:
        _default(action, path="/", scheme="HTTP")


def _field_ref(holder: Obj) -> None:
    ref = _d(holder, "fieldRef")
    if ref is not None:
        _default(ref, apiVersion="v1")


def _container(c: Obj) -> None:
    if not c.get("imagePullPolicy"):
        image = c.get("image")
        c["imagePullPolicy"] = image_pull_policy(image if isinstance(image, str) else "")
    _default(c, terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
    for port in _items(c, "ports"):
        _default(port, protocol="TCP")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = _d(c, key)
        if probe is not None:
            _default_nonzero(probe, timeoutSeconds=1, periodSeconds=10,
                             successThreshold=1, failureThreshold=3)
            _http_get(probe)
    lifecycle = _d(c, "lifecycle")
    for key in ("postStart", "preStop"):
        _http_get(_d(lifecycle, key))
    for env in _items(c, "env"):
        source = _d(env, "valueFrom")
        if source is not None:
            _field_ref(source)


_SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "configMap": {"defaultMode": 420},
    "secret": {"defaultMode": 420},
    "downwardAPI": {"defaultMode": 420},
    "projected": {"defaultMode": 420},
    "hostPath": {"type": ""},
    "iscsi": {"iscsiInterface": "default"},
    "rbd": {"pool": "rbd", "user": "admin", "keyring": "/etc/ceph/keyring"},
    "azureDisk": {"cachingMode": "ReadWrite", "fsType": "ext4", "readOnly": False, "kind": "Shared"},
    "scaleIO": {"storageMode": "ThinProvisioned", "fsType": "xfs"},
}


def _volume_sources(holder: Obj) -> None:
    for key, defaults in _SOURCE_DEFAULTS.items():
        source = _d(holder, key)
        if source is not None:
            for field, value in defaults.items():
                if source.get(field) is None:
                    source[field] = value
    for item in _items(_d(holder, "downwardAPI"), "items"):
        _field_ref(item)
    for source in _items(_d(holder, "projected"), "sources"):
        token = _d(source, "serviceAccountToken")
        if token is not None:
            _default(token, expirationSeconds=3600)
        for item in _items(_d(source, "downwardAPI"), "items"):
            _field_ref(item)


def _volume(v: Obj) -> None:
    if not any(k != "name" and v[k] is not None for k in v):
        v["emptyDir"] = {}
    _volume_sources(v)
    claim = _d(_d(v, "ephemeral"), "volumeClaimTemplate")
    if claim is not None:
        _pvc_spec(_ensure(claim, "spec"))


def _pod_spec(spec: Obj | None) -> None:
    """SetDefaults_PodSpec and everything nested; shared by pods and pod templates."""
    if spec is None:
        return
    _default(spec, dnsPolicy="ClusterFirst", restartPolicy="Always", securityContext={},
             schedulerName="default-scheduler", terminationGracePeriodSeconds=30)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in _items(spec, group):
            _container(c)
    for v in _items(spec, "volumes"):
        _volume(v)


def _template(spec: Obj | None) -> None:
    _pod_spec(_d(_d(spec, "template"), "spec"))


def tolerates(toleration: Obj, key: str, effect: str) -> bool:
    """Whether a toleration tolerates a taint with an empty value (v1 Toleration.ToleratesTaint)."""
    if toleration.get("effect") and toleration["effect"] != effect:
        return False
    if toleration.get("key") and toleration["key"] != key:
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and bool(toleration.get("key")) and not toleration.get("value")


# Pod specs repeat: a Deployment's pods share one, and every update of a pod
# defaults its unchanged spec again. Defaulting one costs tens of microseconds of
# Python; looking the result up by the spec's JSON costs a few.
_POD_SPECS: dict[bytes, tuple[bytes, str]] = {}
_POD_SPECS_LIMIT = 1024


def _pod(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    # Only a spec that JSON names exactly: a YAML date must reach validation as itself.
    key = json_key(spec)
    hit = _POD_SPECS.get(key) if key is not None else None
    if hit is not None:
        spec.clear()
        spec.update(orjson.loads(hit[0]))
        qos = hit[1]
    else:
        _pod_spec_fields(spec)
        qos = qos_class(spec)
        if key is not None:
            if len(_POD_SPECS) >= _POD_SPECS_LIMIT:
                _POD_SPECS.clear()
            _POD_SPECS[key] = (orjson.dumps(spec), qos)
    status = _ensure(obj, "status")
    _default(status, phase="Pending")
    # Resources cannot change after creation, so neither can the class.
    if "qosClass" not in status:
        status["qosClass"] = qos


def _pod_spec_fields(spec: Obj) -> None:
    """A pod's spec defaulted: a function of the spec alone, which _pod memoizes."""
    _pod_spec(spec)
    for group in ("containers", "initContainers"):
        for c in _items(spec, group):
            resources = _d(c, "resources")
            limits = _d(resources, "limits")
            if resources is not None and limits:
                requests = _ensure(resources, "requests")
                for name, value in limits.items():
                    requests.setdefault(name, value)
            if spec.get("hostNetwork") is True:
                for port in _items(c, "ports"):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")
    _default(spec, enableServiceLinks=True)
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    if not spec.get("priorityClassName") and spec.get("priority") is None:
        spec["priority"] = 0
        _default(spec, preemptionPolicy="PreemptLowerPriority")
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = spec["tolerations"] = []
    if isinstance(tolerations, list):
        for key in (NOT_READY_TAINT, UNREACHABLE_TAINT):
            if not any(isinstance(t, dict) and tolerates(t, key, "NoExecute") for t in tolerations):
                tolerations.append({
                    "key": key, "operator": "Exists", "effect": "NoExecute",
                    "tolerationSeconds": DEFAULT_NOT_READY_TOLERATION_SECONDS,
                })


def qos_class(spec: Obj) -> str:
    """The pod's QoS class (Guaranteed, Burstable or BestEffort), as kubelet and the API compute it."""
    requests: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    for c in _items(spec, "containers") + _items(spec, "initContainers"):
        resources = _d(c, "resources") or {}
        requests.append(_positive(_d(resources, "requests")))
        limits.append(_positive(_d(resources, "limits")))
    if not any(requests) and not any(limits):
        return "BestEffort"
    if any(found.keys() != {"cpu", "memory"} for found in limits):
        return "Burstable"
    # Only a pod that may be Guaranteed needs its totals: adding exact fractions
    # is what costs.
    return "Guaranteed" if _total(requests) == _total(limits) else "Burstable"


def _positive(quantities: Obj | None) -> dict[str, Any]:
    """The cpu and memory quantities `quantities` sets above zero."""
    found: dict[str, Any] = {}
    for name, raw in (quantities or {}).items():
        if name in ("cpu", "memory"):
            q = parse_quantity(raw)
            if q is not None and q > 0:
                found[name] = q
    return found


def _total(per_container: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for found in per_container:
        for name, q in found.items():
            totals[name] = totals.get(name, 0) + q
    return totals


# ---------------------------------------------------------------- workloads


def _deployment(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    _default(spec, replicas=1)
    strategy = _ensure(spec, "strategy")
    _default(strategy, type="RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _ensure(strategy, "rollingUpdate")
        _default(rolling, maxUnavailable="25%", maxSurge="25%")
    _default(spec, revisionHistoryLimit=10, progressDeadlineSeconds=600)
    _template(spec)


def _replicaset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is not None:
        _default(spec, replicas=1)
        _template(spec)


def _statefulset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    _default(spec, podManagementPolicy="OrderedReady")
    strategy = _ensure(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
        _ensure(strategy, "rollingUpdate")
    rolling = _d(strategy, "rollingUpdate")
    if strategy["type"] == "RollingUpdate" and rolling is not None:
        _default(rolling, partition=0)
    retention = _ensure(spec, "persistentVolumeClaimRetentionPolicy")
    _default(retention, whenDeleted="Retain", whenScaled="Retain")
    _default(spec, replicas=1, revisionHistoryLimit=10)
    _template(spec)
    for claim in _items(spec, "volumeClaimTemplates"):
        _pvc(claim)


def _daemonset(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    strategy = _ensure(spec, "updateStrategy")
    _default(strategy, type="RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = _ensure(strategy, "rollingUpdate")
        _default(rolling, maxUnavailable=1, maxSurge=0)
    _default(spec, revisionHistoryLimit=10)
    _template(spec)


def _job(obj: Obj) -> None:
    spec = _d(obj, "spec")
    meta = obj.get("metadata")
    if spec is None or not isinstance(meta, dict):
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    backoff = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    _default(spec, parallelism=1, backoffLimit=backoff, completionMode="NonIndexed", suspend=False)
    for rule in _items(_d(spec, "podFailurePolicy"), "rules"):
        for pattern in _items(rule, "onPodConditions"):
            _default(pattern, status="True")
    policy = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    _default(spec, podReplacementPolicy=policy)
    template = _d(spec, "template")
    template_meta = _d(template, "metadata")
    if template_meta and isinstance(template_meta.get("labels"), dict) and template_meta["labels"] \
            and not meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])
    if spec.get("manualSelector") is not True and template is not None:
        _generate_job_selector(meta, spec, template)
    _template(spec)


def _generate_job_selector(meta: Obj, spec: Obj, template: Obj) -> None:
    """The Job strategy's generateSelector: select the pods by the Job's uid."""
    if not meta.get("uid"):
        meta["uid"] = str(uuid.uuid4())
    labels = _ensure(_ensure(template, "metadata"), "labels")
    values = (meta["uid"], meta.get("name") or "", meta["uid"], meta.get("name") or "")
    for key, value in zip(JOB_LABELS, values, strict=True):
        labels.setdefault(key, value)
    selector = _ensure(spec, "selector")
    _ensure(selector, "matchLabels").setdefault(JOB_LABELS[0], meta["uid"])
    # Kubernetes copies template labels into empty Job labels when it reads the
    # stored Job back, after the selector labels were added.
    if not meta.get("labels"):
        meta["labels"] = dict(labels)


def _cronjob(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    _default(spec, concurrencyPolicy="Allow", suspend=False,
             successfulJobsHistoryLimit=3, failedJobsHistoryLimit=1)
    _template(_d(_d(spec, "jobTemplate"), "spec"))


# ---------------------------------------------------------------- services and networking


def _service(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    _default(spec, sessionAffinity="None")
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        config = _d(_d(spec, "sessionAffinityConfig"), "clientIP")
        if config is None or config.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    _default(spec, type="ClusterIP")
    stype = spec["type"]
    for port in _items(spec, "ports"):
        _default(port, protocol="TCP")
        if not port.get("targetPort") and port.get("port") is not None:
            port["targetPort"] = port["port"]
    if stype in ("NodePort", "LoadBalancer"):
        _default(spec, externalTrafficPolicy="Cluster")
    if stype in ("ClusterIP", "NodePort", "LoadBalancer"):
        _default(spec, internalTrafficPolicy="Cluster")
    if stype == "LoadBalancer":
        _default(spec, allocateLoadBalancerNodePorts=True)
        for ingress in _items(_d(_d(obj, "status"), "loadBalancer"), "ingress"):
            if ingress.get("ip"):
                _default(ingress, ipMode="VIP")
    if stype == "ExternalName":
        return
    cluster_ip = spec.get("clusterIP")
    if cluster_ip and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [cluster_ip]
    if cluster_ip == "None" and not spec.get("selector"):
        _default(spec, ipFamilyPolicy="RequireDualStack")
    else:
        _default(spec, ipFamilyPolicy="SingleStack")
    if not spec.get("ipFamilies"):
        listed = spec.get("clusterIPs")
        ips = [ip for ip in listed if isinstance(ip, str) and is_ip(ip)] if isinstance(listed, list) else []
        spec["ipFamilies"] = ["IPv6" if ":" in ip else "IPv4" for ip in ips] or [SERVICE_IP_FAMILY]


def _endpoints(obj: Obj) -> None:
    for subset in _items(obj, "subsets"):
        for port in _items(subset, "ports"):
            _default(port, protocol="TCP")


def _endpointslice(obj: Obj) -> None:
    for port in _items(obj, "ports"):
        if port.get("name") is None:
            port["name"] = ""
        _default(port, protocol="TCP")


def _networkpolicy(obj: Obj) -> None:
    spec = _d(obj, "spec")
    if spec is None:
        return
    if spec.get("podSelector") is None:
        spec["podSelector"] = {}
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]
    for direction in ("ingress", "egress"):
        for rule in _items(spec, direction):
            for port in _items(rule, "ports"):
                _default(port, protocol="TCP")


def _ingressclass(obj: Obj) -> None:
    params = _d(_d(obj, "spec"), "parameters")
    if params is not None:
        _default(params, scope="Cluster")


# ---------------------------------------------------------------- config and storage


def _secret(obj: Obj) -> None:
    _default(obj, type="Opaque")
    string_data = obj.get("stringData")
    # Mistyped stringData stays in place for validation to report.
    if isinstance(string_data, dict) and all(isinstance(v, str) for v in string_data.values()):
        del obj["stringData"]
        data = _ensure(obj, "data")
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()


def _namespace(obj: Obj) -> None:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and meta.get("name"):
        _ensure(meta, "labels")["kubernetes.io/metadata.name"] = meta["name"]
    spec = _ensure(obj, "spec")
    if spec.get("finalizers") is None:
        spec["finalizers"] = ["kubernetes"]
    _default(_ensure(obj, "status"), phase="Active")


def _pvc_spec(spec: Obj) -> None:
    _default(spec, volumeMode="Filesystem")


def _pvc(obj: Obj) -> None:
    _pvc_spec(_ensure(obj, "spec"))
    _default(_ensure(obj, "status"), phase="Pending")


def _pv(obj: Obj) -> None:
    spec = _ensure(obj, "spec")
    _default(spec, persistentVolumeReclaimPolicy="Retain", volumeMode="Filesystem")
    _volume_sources(spec)
    _default(_ensure(obj, "status"), phase="Pending")


def _node(obj: Obj) -> None:
    status = _d(obj, "status")
    if status is not None and status.get("allocatable") is None and isinstance(status.get("capacity"), dict):
        status["allocatable"] = dict(status["capacity"])


def _storageclass(obj: Obj) -> None:
    _default(obj, reclaimPolicy="Delete", volumeBindingMode="Immediate")


def _priorityclass(obj: Obj) -> None:
    _default(obj, preemptionPolicy="PreemptLowerPriority")


# autoscaling/v2's defaults for a behavior that is given in part. Scale-down's
# stabilization window stays unset: the controller's flag (300 s) decides it.
_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Pods", "value": 4, "periodSeconds": 15},
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}
_SCALE_DOWN = {"selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _hpa(obj: Obj) -> None:
    spec = _ensure(obj, "spec")
    _default(spec, minReplicas=1)
    if obj.get("apiVersion") != "autoscaling/v2":
        return  # v1 has no metrics or behavior; its conversion adds the CPU default
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_utilization(DEFAULT_CPU_UTILIZATION)]
    behavior = _d(spec, "behavior")
    if behavior is None:
        return
    for direction, defaults in (("scaleUp", _SCALE_UP), ("scaleDown", _SCALE_DOWN)):
        rules = behavior.get(direction)
        if rules is None:
            behavior[direction] = deep_copy(defaults)
        elif isinstance(rules, dict):
            for key, value in defaults.items():
                if rules.get(key) is None:
                    rules[key] = deep_copy(value)


_KIND_DEFAULTS: dict[str, Callable[[Obj], None]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpointslice,
    "NetworkPolicy": _networkpolicy,
    "IngressClass": _ingressclass,
    "Secret": _secret,
    "Namespace": _namespace,
    "PersistentVolumeClaim": _pvc,
    "PersistentVolume": _pv,
    "Node": _node,
    "StorageClass": _storageclass,
    "PriorityClass": _priorityclass,
    "HorizontalPodAutoscaler": _hpa,
}
