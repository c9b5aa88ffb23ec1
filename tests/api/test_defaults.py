"""Defaulting per kind, as kube-apiserver 1.32 fills objects; user values are kept."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest

from kubelite.api import defaults
from kubelite.api.defaults import apply_defaults, image_pull_policy, qos_class
from kubelite.api.registry import RESOURCES, by_kind


def dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def pod_spec(**extra: Any) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "nginx:1.25"}], **extra}


def template(**extra: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "a"}}, "spec": pod_spec(**extra)}


def make(api_version: str, kind: str, **body: Any) -> dict[str, Any]:
    meta = body.pop("metadata", {"name": "x", "namespace": "default"})
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def defaulted(obj: dict[str, Any]) -> dict[str, Any]:
    apply_defaults(by_kind(obj["apiVersion"], obj["kind"]), obj)
    return obj


PROBE = {"httpGet": {"port": 80}}
POD = make("v1", "Pod", spec=pod_spec(
    containers=[{
        "name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
        "livenessProbe": PROBE, "lifecycle": {"preStop": {"httpGet": {"port": 80}}},
        "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"limits": {"cpu": "1"}},
    }],
    volumes=[{"name": "e"}, {"name": "cm", "configMap": {"name": "c"}},
             {"name": "s", "secret": {"secretName": "s"}}, {"name": "h", "hostPath": {"path": "/x"}},
             {"name": "p", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
             {"name": "d", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
))
C = "spec.containers.0"

CASES = [
    # (id, object, path, expected)
    ("pod restartPolicy", POD, "spec.restartPolicy", "Always"),
    ("pod dnsPolicy", POD, "spec.dnsPolicy", "ClusterFirst"),
    ("pod grace period", POD, "spec.terminationGracePeriodSeconds", 30),
    ("pod schedulerName", POD, "spec.schedulerName", "default-scheduler"),
    ("pod securityContext", POD, "spec.securityContext", {}),
    ("pod enableServiceLinks", POD, "spec.enableServiceLinks", True),
    ("pod serviceAccountName", POD, "spec.serviceAccountName", "default"),
    ("pod deprecated serviceAccount", POD, "spec.serviceAccount", "default"),
    ("pod priority", POD, "spec.priority", 0),
    ("pod preemptionPolicy", POD, "spec.preemptionPolicy", "PreemptLowerPriority"),
    ("pod phase", POD, "status.phase", "Pending"),
    ("pod qosClass", POD, "status.qosClass", "Burstable"),
    ("container pull policy", POD, f"{C}.imagePullPolicy", "Always"),
    ("container termination path", POD, f"{C}.terminationMessagePath", "/dev/termination-log"),
    ("container termination policy", POD, f"{C}.terminationMessagePolicy", "File"),
    ("container port protocol", POD, f"{C}.ports.0.protocol", "TCP"),
    ("requests from limits", POD, f"{C}.resources.requests", {"cpu": "1"}),
    ("probe period", POD, f"{C}.livenessProbe.periodSeconds", 10),
    ("probe timeout", POD, f"{C}.livenessProbe.timeoutSeconds", 1),
    ("probe success", POD, f"{C}.livenessProbe.successThreshold", 1),
    ("probe failure", POD, f"{C}.livenessProbe.failureThreshold", 3),
    ("probe http scheme", POD, f"{C}.livenessProbe.httpGet.scheme", "HTTP"),
    ("probe http path", POD, f"{C}.livenessProbe.httpGet.path", "/"),
    ("lifecycle http scheme", POD, f"{C}.lifecycle.preStop.httpGet.scheme", "HTTP"),
    ("env fieldRef apiVersion", POD, f"{C}.env.0.valueFrom.fieldRef.apiVersion", "v1"),
    ("volume emptyDir", POD, "spec.volumes.0.emptyDir", {}),
    ("configMap defaultMode", POD, "spec.volumes.1.configMap.defaultMode", 420),
    ("secret defaultMode", POD, "spec.volumes.2.secret.defaultMode", 420),
    ("hostPath type", POD, "spec.volumes.3.hostPath.type", ""),
    ("projected token expiry", POD, "spec.volumes.4.projected.sources.0.serviceAccountToken.expirationSeconds", 3600),
    ("downwardAPI fieldRef", POD, "spec.volumes.5.downwardAPI.items.0.fieldRef.apiVersion", "v1"),
    ("deployment replicas", make("apps/v1", "Deployment", spec={"template": template()}), "spec.replicas", 1),
    ("deployment strategy", make("apps/v1", "Deployment", spec={"template": template()}), "spec.strategy",
     {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    ("deployment history", make("apps/v1", "Deployment", spec={"template": template()}), "spec.revisionHistoryLimit", 10),
    ("deployment deadline", make("apps/v1", "Deployment", spec={"template": template()}), "spec.progressDeadlineSeconds", 600),
    ("deployment template", make("apps/v1", "Deployment", spec={"template": template()}), "spec.template.spec.dnsPolicy", "ClusterFirst"),
    ("replicaset replicas", make("apps/v1", "ReplicaSet", spec={"template": template()}), "spec.replicas", 1),
    ("statefulset policy", make("apps/v1", "StatefulSet", spec={"template": template()}), "spec.podManagementPolicy", "OrderedReady"),
    ("statefulset strategy", make("apps/v1", "StatefulSet", spec={"template": template()}), "spec.updateStrategy",
     {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    ("statefulset history", make("apps/v1", "StatefulSet", spec={"template": template()}), "spec.revisionHistoryLimit", 10),
    ("statefulset retention", make("apps/v1", "StatefulSet", spec={"template": template()}),
     "spec.persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}),
    ("statefulset claim volumeMode", make("apps/v1", "StatefulSet", spec={"template": template(), "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}),
     "spec.volumeClaimTemplates.0.spec.volumeMode", "Filesystem"),
    ("daemonset strategy", make("apps/v1", "DaemonSet", spec={"template": template()}), "spec.updateStrategy",
     {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    ("job completions", make("batch/v1", "Job", spec={"template": template()}), "spec.completions", 1),
    ("job parallelism", make("batch/v1", "Job", spec={"template": template()}), "spec.parallelism", 1),
    ("job backoffLimit", make("batch/v1", "Job", spec={"template": template()}), "spec.backoffLimit", 6),
    ("job completionMode", make("batch/v1", "Job", spec={"template": template()}), "spec.completionMode", "NonIndexed"),
    ("job suspend", make("batch/v1", "Job", spec={"template": template()}), "spec.suspend", False),
    ("job podReplacementPolicy", make("batch/v1", "Job", spec={"template": template()}), "spec.podReplacementPolicy", "TerminatingOrFailed"),
    ("job parallelism only", make("batch/v1", "Job", spec={"parallelism": 3, "template": template()}), "spec", "no completions"),
    ("cronjob concurrency", make("batch/v1", "CronJob", spec={"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}), "spec.concurrencyPolicy", "Allow"),
    ("cronjob history", make("batch/v1", "CronJob", spec={"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}), "spec.successfulJobsHistoryLimit", 3),
    ("cronjob failed history", make("batch/v1", "CronJob", spec={"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}), "spec.failedJobsHistoryLimit", 1),
    ("cronjob pod template", make("batch/v1", "CronJob", spec={"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}}), "spec.jobTemplate.spec.template.spec.restartPolicy", "Always"),
    ("secret type", make("v1", "Secret"), "type", "Opaque"),
    ("namespace phase", make("v1", "Namespace", metadata={"name": "dev"}), "status.phase", "Active"),
    ("namespace label", make("v1", "Namespace", metadata={"name": "dev"}), "metadata.labels", {"kubernetes.io/metadata.name": "dev"}),
    ("namespace finalizer", make("v1", "Namespace", metadata={"name": "dev"}), "spec.finalizers", ["kubernetes"]),
    ("pvc volumeMode", make("v1", "PersistentVolumeClaim", spec={}), "spec.volumeMode", "Filesystem"),
    ("pvc phase", make("v1", "PersistentVolumeClaim", spec={}), "status.phase", "Pending"),
    ("pv reclaim", make("v1", "PersistentVolume", metadata={"name": "pv"}, spec={}), "spec.persistentVolumeReclaimPolicy", "Retain"),
    ("pv volumeMode", make("v1", "PersistentVolume", metadata={"name": "pv"}, spec={}), "spec.volumeMode", "Filesystem"),
    ("storageclass reclaim", make("storage.k8s.io/v1", "StorageClass", metadata={"name": "sc"}), "reclaimPolicy", "Delete"),
    ("storageclass binding", make("storage.k8s.io/v1", "StorageClass", metadata={"name": "sc"}), "volumeBindingMode", "Immediate"),
    ("endpoints protocol", make("v1", "Endpoints", subsets=[{"ports": [{"port": 80}]}]), "subsets.0.ports.0.protocol", "TCP"),
    ("endpointslice protocol", make("discovery.k8s.io/v1", "EndpointSlice", ports=[{"port": 80}]), "ports.0.protocol", "TCP"),
    ("endpointslice port name", make("discovery.k8s.io/v1", "EndpointSlice", ports=[{"port": 80}]), "ports.0.name", ""),
    ("priorityclass preemption", make("scheduling.k8s.io/v1", "PriorityClass", metadata={"name": "p"}, value=5), "preemptionPolicy", "PreemptLowerPriority"),
    ("node allocatable", make("v1", "Node", metadata={"name": "n"}, status={"capacity": {"cpu": "4"}}), "status.allocatable", {"cpu": "4"}),
    ("networkpolicy types", make("networking.k8s.io/v1", "NetworkPolicy", spec={"egress": [{}]}), "spec.policyTypes", ["Ingress", "Egress"]),
]


@pytest.mark.parametrize(("obj", "path", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kind_defaults(obj: dict[str, Any], path: str, expected: Any) -> None:
    out = defaulted(copy.deepcopy(obj))
    if expected == "no completions":
        assert "completions" not in out["spec"] and out["spec"]["parallelism"] == 3
    else:
        assert dig(out, path) == expected


SERVICE_CASES = [
    ("targetPort from port", {"ports": [{"port": 8080}]}, "ports.0.targetPort", 8080),
    ("named targetPort kept", {"ports": [{"port": 80, "targetPort": "http"}]}, "ports.0.targetPort", "http"),
    ("zero targetPort replaced", {"ports": [{"port": 80, "targetPort": 0}]}, "ports.0.targetPort", 80),
    ("protocol", {"ports": [{"port": 80}]}, "ports.0.protocol", "TCP"),
    ("type", {"ports": [{"port": 80}]}, "type", "ClusterIP"),
    ("sessionAffinity", {"ports": [{"port": 80}]}, "sessionAffinity", "None"),
    ("internalTrafficPolicy", {"ports": [{"port": 80}]}, "internalTrafficPolicy", "Cluster"),
    ("ipFamilyPolicy", {"ports": [{"port": 80}]}, "ipFamilyPolicy", "SingleStack"),
    ("ipFamilies", {"ports": [{"port": 80}]}, "ipFamilies", ["IPv4"]),
    ("nodeport externalTrafficPolicy", {"type": "NodePort", "ports": [{"port": 80}]}, "externalTrafficPolicy", "Cluster"),
    ("lb node ports", {"type": "LoadBalancer", "ports": [{"port": 80}]}, "allocateLoadBalancerNodePorts", True),
    ("clusterIPs from clusterIP", {"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}, "clusterIPs", ["10.96.0.9"]),
    ("headless without selector", {"clusterIP": "None"}, "ipFamilyPolicy", "RequireDualStack"),
    ("clientIP timeout", {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}, "sessionAffinityConfig.clientIP.timeoutSeconds", 10800),
]


@pytest.mark.parametrize(("spec", "path", "expected"), [c[1:] for c in SERVICE_CASES], ids=[c[0] for c in SERVICE_CASES])
def test_service_defaults(spec: dict[str, Any], path: str, expected: Any) -> None:
    svc = defaulted(make("v1", "Service", spec=copy.deepcopy(spec)))
    assert dig(svc["spec"], path) == expected


def test_external_name_service_gets_no_ip_fields() -> None:
    svc = defaulted(make("v1", "Service", spec={"type": "ExternalName", "externalName": "a.b"}))
    assert "ipFamilies" not in svc["spec"] and "externalTrafficPolicy" not in svc["spec"]


@pytest.mark.parametrize(("image", "policy"), [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("registry.local:5000/nginx", "Always"),
    ("registry.local:5000/nginx:1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
])
def test_image_pull_policy_by_tag(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy
    pod = defaulted(make("v1", "Pod", spec={"containers": [{"name": "c", "image": image}]}))
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


USER_SET = [
    ("pod policies", make("v1", "Pod", spec=pod_spec(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0,
                                                     schedulerName="mine", enableServiceLinks=False, serviceAccountName="robot"))),
    ("container fields", make("v1", "Pod", spec={"containers": [{
        "name": "c", "image": "nginx", "imagePullPolicy": "Never", "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"containerPort": 53, "protocol": "UDP"}],
        "readinessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 3, "failureThreshold": 9},
        "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}}}]})),
    ("deployment", make("apps/v1", "Deployment", spec={
        "replicas": 0, "revisionHistoryLimit": 2, "progressDeadlineSeconds": 60, "strategy": {"type": "Recreate"},
        "template": template()})),
    ("statefulset", make("apps/v1", "StatefulSet", spec={
        "podManagementPolicy": "Parallel", "updateStrategy": {"type": "OnDelete"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"}, "template": template()})),
    ("job", make("batch/v1", "Job", spec={"completions": 5, "parallelism": 2, "backoffLimit": 0, "suspend": True,
                                          "completionMode": "Indexed", "template": template()})),
    ("service", make("v1", "Service", spec={"type": "NodePort", "sessionAffinity": "ClientIP",
                                            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}},
                                            "externalTrafficPolicy": "Local", "ports": [{"port": 53, "protocol": "UDP", "targetPort": 5353}]})),
    ("secret type", make("v1", "Secret", type="kubernetes.io/tls")),
    ("pv reclaim", make("v1", "PersistentVolume", metadata={"name": "pv"}, spec={"persistentVolumeReclaimPolicy": "Delete", "volumeMode": "Block"})),
    ("storageclass", make("storage.k8s.io/v1", "StorageClass", metadata={"name": "s"}, reclaimPolicy="Retain", volumeBindingMode="WaitForFirstConsumer")),
    ("volume mode", make("v1", "Pod", spec=pod_spec(volumes=[{"name": "c", "configMap": {"name": "x", "defaultMode": 256}}]))),
]


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) <= len(big) and all(_subset(a, b) for a, b in zip(small, big, strict=False))
    return small == big


@pytest.mark.parametrize("obj", [c[1] for c in USER_SET], ids=[c[0] for c in USER_SET])
def test_user_values_are_kept(obj: dict[str, Any]) -> None:
    out = defaulted(copy.deepcopy(obj))
    assert _subset(obj, out)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_defaults_are_idempotent(resource: Any) -> None:
    obj = make(resource.api_version, resource.kind, spec={"template": template()})
    apply_defaults(resource, obj)
    again = copy.deepcopy(obj)
    apply_defaults(resource, again)
    assert again == obj


def test_not_ready_tolerations_added_once_with_module_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(defaults, "DEFAULT_NOT_READY_TOLERATION_SECONDS", 20)
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    pod = defaulted(make("v1", "Pod", spec=pod_spec(tolerations=[dict(own)])))
    assert pod["spec"]["tolerations"] == [own, {
        "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20}]
    templ = defaulted(make("apps/v1", "Deployment", spec={"template": template()}))
    assert "tolerations" not in templ["spec"]["template"]["spec"]


def test_match_all_toleration_suppresses_default_ones() -> None:
    pod = defaulted(make("v1", "Pod", spec=pod_spec(tolerations=[{"operator": "Exists"}])))
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]


def test_job_selector_generated_from_uid() -> None:
    job = defaulted(make("batch/v1", "Job", metadata={"name": "pi", "namespace": "default", "uid": "u-1"},
                         spec={"template": {"spec": pod_spec(restartPolicy="Never")}}))
    want = {"batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1", "job-name": "pi"}
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert job["spec"]["template"]["metadata"]["labels"] == want
    assert job["metadata"]["labels"] == want
    assert "manualSelector" not in job["spec"]


def test_job_labels_copy_users_template_labels_and_uid_is_assigned() -> None:
    job = defaulted(make("batch/v1", "Job", spec={"template": template()}))
    assert job["metadata"]["labels"] == {"app": "a"}
    assert job["metadata"]["uid"] and job["spec"]["template"]["metadata"]["labels"]["job-name"] == "x"


def test_manual_job_selector_is_left_alone() -> None:
    sel = {"matchLabels": {"app": "a"}}
    job = defaulted(make("batch/v1", "Job", spec={"manualSelector": True, "selector": copy.deepcopy(sel), "template": template()}))
    assert job["spec"]["selector"] == sel and job["spec"]["template"]["metadata"]["labels"] == {"app": "a"}


def test_secret_string_data_folds_into_data() -> None:
    secret = defaulted(make("v1", "Secret", data={"a": "eA=="}, stringData={"b": "hi"}))
    assert secret["data"] == {"a": "eA==", "b": "aGk="} and "stringData" not in secret


def test_cluster_scoped_objects_lose_namespace() -> None:
    pv = defaulted(make("v1", "PersistentVolume", metadata={"name": "pv", "namespace": "default"}, spec={}))
    assert "namespace" not in pv["metadata"]


@pytest.mark.parametrize(("containers", "qos"), [
    ([{"name": "a"}], "BestEffort"),
    ([{"name": "a", "resources": {"requests": {"cpu": "1"}}}], "Burstable"),
    ([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}}], "Guaranteed"),
    ([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}}], "Burstable"),
])
def test_qos_class(containers: list[dict[str, Any]], qos: str) -> None:
    assert qos_class({"containers": containers}) == qos


def test_wrongly_typed_values_are_left_for_validation() -> None:
    dep = defaulted(make("apps/v1", "Deployment", spec={"strategy": "fast", "template": template()}))
    assert dep["spec"]["strategy"] == "fast"


def test_qos_class_added_when_the_strategy_already_set_the_phase() -> None:
    pod = defaulted(make("v1", "Pod", spec=pod_spec(), status={"phase": "Pending"}))
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
CPU_80 = {"type": "Resource", "resource": {"name": "cpu", "target": {
    "type": "Utilization", "averageUtilization": 80}}}


def test_hpa_v2_defaults_min_replicas_a_cpu_target_and_partial_behavior() -> None:
    hpa = make("autoscaling/v2", "HorizontalPodAutoscaler",
               spec={"scaleTargetRef": REF, "maxReplicas": 5,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}})
    apply_defaults(by_kind("autoscaling/v2", "HorizontalPodAutoscaler"), hpa)
    spec = hpa["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [CPU_80]
    assert spec["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]},
        "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]}}
    # Without a behavior none is made up, and given values stay.
    given = make("autoscaling/v2", "HorizontalPodAutoscaler",
                 spec={"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                       "metrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"},
                                    "target": {"type": "AverageValue", "averageValue": "1"}}}]})
    before = copy.deepcopy(given)
    apply_defaults(by_kind("autoscaling/v2", "HorizontalPodAutoscaler"), given)
    assert given == before


def test_hpa_v1_defaults_only_min_replicas() -> None:
    hpa = make("autoscaling/v1", "HorizontalPodAutoscaler",
               spec={"scaleTargetRef": REF, "maxReplicas": 5})
    apply_defaults(by_kind("autoscaling/v1", "HorizontalPodAutoscaler"), hpa)
    assert hpa["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5}


PODS = by_kind("v1", "Pod")
assert PODS is not None


def _pod_with(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_a_repeated_pod_spec_is_defaulted_alike_and_apart() -> None:
    """Pod specs are defaulted once per distinct spec (a memo): the second pod gets
    the same fields, in objects of its own."""
    defaults._POD_SPECS.clear()
    spec = {"containers": [{"name": "c", "image": "nginx:1.25",
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    first, second = _pod_with(copy.deepcopy(spec)), _pod_with(copy.deepcopy(spec))
    apply_defaults(PODS, first)
    apply_defaults(PODS, second)
    assert len(defaults._POD_SPECS) == 1
    assert first == second
    assert second["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}
    assert second["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1",
                                                                         "memory": "1Gi"}
    second["spec"]["containers"][0]["image"] = "changed"
    second["spec"]["tolerations"].clear()
    assert first["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert len(first["spec"]["tolerations"]) == 2
    third = _pod_with(copy.deepcopy(spec))
    apply_defaults(PODS, third)
    assert third["spec"] == first["spec"]


@pytest.mark.parametrize("odd", [datetime.date(2024, 1, 1), float("nan")],
                         ids=["yaml-date", "nan"])
def test_values_json_cannot_carry_are_defaulted_as_they_are(odd: Any) -> None:
    """A YAML date or a NaN must reach validation as itself, never as JSON made it."""
    for _ in range(2):
        pod = _pod_with({"containers": [{"name": "c", "image": odd}]})
        apply_defaults(PODS, pod)
        image = pod["spec"]["containers"][0]["image"]
        assert type(image) is type(odd)
