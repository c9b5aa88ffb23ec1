"""Table printers of the workload, networking, storage and policy kinds, as
kube-apiserver 1.32 prints them (kubernetes pkg/printers/internalversion/printers.go)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubelite.api.conversion import metric_source, to_stored
from kubelite.api.errors import APIError
from kubelite.api.registry import lookup
from kubelite.api.selectors import LabelSelector, format_label_selector, format_labels
from kubelite.api.tables_base import (
    AGE,
    CONTAINERS,
    IMAGES,
    NAME,
    Cells,
    Column,
    Obj,
    age,
    condition_true,
    containers_and_images,
    human_duration,
    meta,
    name,
    parse_time,
    printer,
    since,
    spec,
    status,
    template_spec,
    wide,
)

_READY = Column("Ready", doc="Number of the pod with ready state")


def _replicas(obj: Obj) -> int:
    # The apiserver defaults spec.replicas to 1 before anything is stored.
    return spec(obj).get("replicas", 1)


def _selector_wide(obj: Obj) -> str:
    return format_label_selector(spec(obj).get("selector"))


@printer(
    "deployments", NAME, _READY,
    Column("Up-to-date", doc=("apps.v1.DeploymentStatus", "updatedReplicas")),
    Column("Available", doc=("apps.v1.DeploymentStatus", "availableReplicas")),
    AGE, CONTAINERS, IMAGES,
    wide("Selector", ("apps.v1.DeploymentSpec", "selector")),
)
def _deployment(obj: Obj, now: datetime) -> Cells:
    st = status(obj)
    try:
        # printDeployment prints the selector as is: "" when missing, not <none>.
        selector = str(LabelSelector.from_object(spec(obj).get("selector")))
    except APIError:
        selector = "<invalid>"
    return [name(obj), f"{st.get('readyReplicas', 0)}/{_replicas(obj)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(obj, now),
            *containers_and_images(template_spec(obj)), selector]


@printer(
    "replicasets", NAME,
    Column("Desired", "integer", ("apps.v1.ReplicaSetSpec", "replicas")),
    Column("Current", "integer", ("apps.v1.ReplicaSetStatus", "replicas")),
    Column("Ready", "integer", ("apps.v1.ReplicaSetStatus", "readyReplicas")),
    AGE, CONTAINERS, IMAGES,
    wide("Selector", ("apps.v1.ReplicaSetSpec", "selector")),
)
def _replica_set(obj: Obj, now: datetime) -> Cells:
    st = status(obj)
    return [name(obj), _replicas(obj), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(obj, now), *containers_and_images(template_spec(obj)), _selector_wide(obj)]


@printer("statefulsets", NAME, _READY, AGE, CONTAINERS, IMAGES)
def _stateful_set(obj: Obj, now: datetime) -> Cells:
    return [name(obj), f"{status(obj).get('readyReplicas', 0)}/{_replicas(obj)}",
            age(obj, now), *containers_and_images(template_spec(obj))]


@printer(
    "daemonsets", NAME,
    Column("Desired", "integer", ("apps.v1.DaemonSetStatus", "desiredNumberScheduled")),
    Column("Current", "integer", ("apps.v1.DaemonSetStatus", "currentNumberScheduled")),
    Column("Ready", "integer", ("apps.v1.DaemonSetStatus", "numberReady")),
    Column("Up-to-date", "integer", ("apps.v1.DaemonSetStatus", "updatedNumberScheduled")),
    Column("Available", "integer", ("apps.v1.DaemonSetStatus", "numberAvailable")),
    Column("Node Selector", doc=("core.v1.PodSpec", "nodeSelector")),
    AGE, CONTAINERS, IMAGES,
    wide("Selector", ("apps.v1.DaemonSetSpec", "selector")),
)
def _daemon_set(obj: Obj, now: datetime) -> Cells:
    st = status(obj)
    pod_spec = template_spec(obj)
    return [name(obj), st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0),
            st.get("numberAvailable", 0), format_labels(pod_spec.get("nodeSelector")),
            age(obj, now), *containers_and_images(pod_spec), _selector_wide(obj)]


@printer(
    "controllerrevisions", NAME,
    Column("Controller", doc="Controller of the object"),
    Column("Revision", doc=("apps.v1.ControllerRevision", "revision")),
    AGE,
)
def _controller_revision(obj: Obj, now: datetime) -> Cells:
    controller = "<none>"
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            api_version = ref.get("apiVersion", "")
            group = api_version.split("/")[0] if "/" in api_version else ""
            kind = ref.get("kind", "")
            controller = (f"{kind}.{group}" if group else kind).lower() + "/" + ref.get("name", "")
            break
    return [name(obj), controller, obj.get("revision", 0), age(obj, now)]


# ---------------------------------------------------------------- batch


def _job_status(job: Obj) -> str:
    conditions = status(job).get("conditions")
    if condition_true(conditions, "Complete"):
        return "Complete"
    if condition_true(conditions, "Failed"):
        return "Failed"
    if meta(job).get("deletionTimestamp"):
        return "Terminating"
    if condition_true(conditions, "Suspended"):
        return "Suspended"
    if condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job_duration(job: Obj, now: datetime) -> str:
    st = status(job)
    start = parse_time(st.get("startTime"))
    if start is None:
        return ""
    end = parse_time(st.get("completionTime")) or now
    return human_duration((end - start).total_seconds())


@printer(
    "jobs", NAME,
    Column("Status", doc="Status of the job."),
    Column("Completions", doc=("batch.v1.JobStatus", "succeeded")),
    Column("Duration", doc="Time required to complete the job."),
    AGE, CONTAINERS, IMAGES,
    wide("Selector", ("batch.v1.JobSpec", "selector")),
)
def _job(job: Obj, now: datetime) -> Cells:
    sp = spec(job)
    succeeded = status(job).get("succeeded", 0)
    if sp.get("completions") is not None:
        completions = f"{succeeded}/{sp['completions']}"
    elif (sp.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {sp['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    return [name(job), _job_status(job), completions, _job_duration(job, now), age(job, now),
            *containers_and_images(template_spec(job)), _selector_wide(job)]


def _print_bool(value: Any) -> str:
    """printBoolPtr."""
    if value is None:
        return "<unset>"
    return "True" if value else "False"


@printer(
    "cronjobs", NAME,
    Column("Schedule", doc=("batch.v1.CronJobSpec", "schedule")),
    Column("Timezone", doc=("batch.v1.CronJobSpec", "timeZone")),
    Column("Suspend", "boolean", ("batch.v1.CronJobSpec", "suspend")),
    Column("Active", "integer", ("batch.v1.CronJobStatus", "active")),
    Column("Last Schedule", doc=("batch.v1.CronJobStatus", "lastScheduleTime")),
    AGE, CONTAINERS, IMAGES,
    wide("Selector", ("batch.v1.JobSpec", "selector")),
)
def _cron_job(cj: Obj, now: datetime) -> Cells:
    sp, st = spec(cj), status(cj)
    job_spec = (sp.get("jobTemplate") or {}).get("spec") or {}
    last = since(st["lastScheduleTime"], now) if st.get("lastScheduleTime") else "<none>"
    return [name(cj), sp.get("schedule", ""), sp.get("timeZone") or "<none>",
            _print_bool(sp.get("suspend")), len(st.get("active") or ()), last, age(cj, now),
            *containers_and_images((job_spec.get("template") or {}).get("spec")),
            format_label_selector(job_spec.get("selector"))]


# ---------------------------------------------------------------- networking


def _ingress_hosts(rules: Any) -> str:
    # A port of formatHosts, including how it counts rules without a host.
    rules = rules or []
    hosts: list[str] = []
    more = False
    for rule in rules:
        if len(hosts) == 3:
            more = True
        if not more and rule.get("host"):
            hosts.append(rule["host"])
    if not hosts:
        return "*"
    text = ",".join(hosts)
    return f"{text} + {len(rules) - 3} more..." if more else text


@printer(
    "ingresses", NAME,
    Column("Class", doc="The name of the IngressClass resource that should be used for "
                        "additional configuration"),
    Column("Hosts", doc="Hosts that incoming requests are matched against before the "
                        "ingress rule"),
    Column("Address", doc="Address is a list containing ingress points for the load-balancer"),
    Column("Ports", doc="Ports of TLS configurations that open"),
    AGE,
)
def _ingress(ing: Obj, now: datetime) -> Cells:
    sp = spec(ing)
    lb = (status(ing).get("loadBalancer") or {}).get("ingress") or ()
    addresses = sorted({i.get("ip") or i.get("hostname") for i in lb} - {None, ""})
    return [name(ing), sp.get("ingressClassName") or "<none>", _ingress_hosts(sp.get("rules")),
            ",".join(addresses), "80, 443" if sp.get("tls") else "80", age(ing, now)]


@printer(
    "ingressclasses", NAME,
    Column("Controller", doc="Controller that is responsible for handling this class"),
    Column("Parameters", doc="A reference to a resource with additional parameters"),
    AGE,
)
def _ingress_class(ic: Obj, now: datetime) -> Cells:
    params = spec(ic).get("parameters")
    text = "<none>"
    if params:
        kind = params.get("kind", "")
        if params.get("apiGroup") is not None:
            kind += "." + params["apiGroup"]
        text = f"{kind}/{params.get('name', '')}"
    return [name(ic), spec(ic).get("controller", ""), text, age(ic, now)]


@printer("networkpolicies", NAME,
         Column("Pod-Selector", doc=("networking.v1.NetworkPolicySpec", "podSelector")), AGE)
def _network_policy(np: Obj, now: datetime) -> Cells:
    # podSelector is a struct, not a pointer, in Go: missing means empty.
    return [name(np), format_label_selector(spec(np).get("podSelector") or {}), age(np, now)]


# ---------------------------------------------------------------- cluster-level kinds


@printer("leases", NAME, Column("Holder", doc=("coordination.v1.LeaseSpec", "holderIdentity")),
         AGE)
def _lease(lease: Obj, now: datetime) -> Cells:
    return [name(lease), spec(lease).get("holderIdentity") or "", age(lease, now)]


_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class",
                  "storageclass.beta.kubernetes.io/is-default-class")


@printer(
    "storageclasses", NAME,
    Column("Provisioner", doc=("storage.v1.StorageClass", "provisioner")),
    Column("ReclaimPolicy", doc=("storage.v1.StorageClass", "reclaimPolicy")),
    Column("VolumeBindingMode", doc=("storage.v1.StorageClass", "volumeBindingMode")),
    Column("AllowVolumeExpansion", doc=("storage.v1.StorageClass", "allowVolumeExpansion")),
    AGE,
)
def _storage_class(sc: Obj, now: datetime) -> Cells:
    annotations = meta(sc).get("annotations") or {}
    label = name(sc)
    if any(annotations.get(a) == "true" for a in _DEFAULT_CLASS):
        label += " (default)"
    return [label, sc.get("provisioner", ""), sc.get("reclaimPolicy") or "Delete",
            sc.get("volumeBindingMode") or "Immediate", bool(sc.get("allowVolumeExpansion")),
            age(sc, now)]


@printer(
    "priorityclasses", NAME,
    Column("Value", "integer", ("scheduling.v1.PriorityClass", "value")),
    Column("Global-Default", "boolean", ("scheduling.v1.PriorityClass", "globalDefault")),
    AGE,
    Column("PreemptionPolicy", doc=("scheduling.v1.PriorityClass", "preemptionPolicy")),
)
def _priority_class(pc: Obj, now: datetime) -> Cells:
    return [name(pc), pc.get("value", 0), bool(pc.get("globalDefault")), age(pc, now),
            pc.get("preemptionPolicy") or ""]


@printer(
    "poddisruptionbudgets", NAME,
    Column("Min Available", doc="The minimum number of pods that must be available."),
    Column("Max Unavailable", doc="The maximum number of pods that may be unavailable."),
    Column("Allowed Disruptions", "integer",
           "Calculated number of pods that may be disrupted at this time."),
    AGE,
)
def _pod_disruption_budget(pdb: Obj, now: datetime) -> Cells:
    sp = spec(pdb)
    min_available = sp.get("minAvailable")
    max_unavailable = sp.get("maxUnavailable")
    return [name(pdb), "N/A" if min_available is None else str(min_available),
            "N/A" if max_unavailable is None else str(max_unavailable),
            status(pdb).get("disruptionsAllowed", 0), age(pdb, now)]


_HPA_V1 = lookup("autoscaling", "v1", "horizontalpodautoscalers")
_MAX_TARGETS = 2


def _metric_target(metric: Obj, current: Obj | None) -> str:
    kind = metric.get("type")
    found = metric_source(metric)
    if found is None:
        return "<unknown type>"
    source_key, source = found
    target = source.get("target") or {}
    now = ((current or {}).get(source_key) or {}).get("current")
    if kind in ("Resource", "ContainerResource"):
        if target.get("averageValue") is not None:
            seen = now.get("averageValue") if now else None
            value = f"{seen or '<unknown>'}/{target['averageValue']}"
        else:
            seen = now.get("averageUtilization") if now else None
            utilization = target.get("averageUtilization")
            value = (f"{'<unknown>' if seen is None else f'{seen}%'}/"
                     f"{'<auto>' if utilization is None else f'{utilization}%'}")
        return f"{source.get('name')}: {value}"
    if kind == "Pods":
        return f"{(now or {}).get('averageValue') or '<unknown>'}/{target.get('averageValue')}"
    # Object and External
    if target.get("averageValue") is not None:
        return f"{(now or {}).get('averageValue') or '<unknown>'}/{target['averageValue']} (avg)"
    return f"{(now or {}).get('value') or '<unknown>'}/{target.get('value')}"


def _hpa_targets(hpa: Obj) -> str:
    metrics = [m for m in spec(hpa).get("metrics") or [] if isinstance(m, dict)]
    if not metrics:
        return "<none>"
    current = status(hpa).get("currentMetrics") or []
    shown = [_metric_target(m, current[i] if i < len(current) else None)
             for i, m in enumerate(metrics)]
    if len(shown) > _MAX_TARGETS:
        return f"{', '.join(shown[:_MAX_TARGETS])} + {len(shown) - _MAX_TARGETS} more..."
    return ", ".join(shown)


@printer(
    "horizontalpodautoscalers", NAME,
    Column("Reference", doc=("autoscaling.v2.HorizontalPodAutoscalerSpec", "scaleTargetRef")),
    Column("Targets", doc=("autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
    Column("MinPods", doc=("autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
    Column("MaxPods", "integer", ("autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
    Column("Replicas", "integer",
           ("autoscaling.v2.HorizontalPodAutoscalerStatus", "currentReplicas")),
    AGE,
)
def _horizontal_pod_autoscaler(hpa: Obj, now: datetime) -> Cells:
    # Kubernetes prints from the internal form whatever version was asked for.
    if hpa.get("apiVersion") == _HPA_V1.api_version:
        hpa = to_stored(_HPA_V1, hpa)
    sp = spec(hpa)
    ref = sp.get("scaleTargetRef") or {}
    min_pods = sp.get("minReplicas")
    return [name(hpa), f"{ref.get('kind', '')}/{ref.get('name', '')}", _hpa_targets(hpa),
            "<unset>" if min_pods is None else str(min_pods), sp.get("maxReplicas", 0),
            status(hpa).get("currentReplicas", 0), age(hpa, now)]
