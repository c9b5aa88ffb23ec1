"""Validation: schema walk, per-kind rules, update rules, with Kubernetes' paths and messages."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelite.api.defaults import apply_defaults
from kubelite.api.registry import RESOURCES, by_kind
from kubelite.api.validation import FIELD_TYPE_INVALID, FIELD_VALUE_UNKNOWN, to_api_error, validate

DELETE = object()
Obj = dict[str, Any]


def put(obj: Obj, changes: dict[str, Any]) -> Obj:
    """Copy of obj with dotted paths (list indices as numbers) set, or removed with DELETE."""
    out = copy.deepcopy(obj)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key: Any = int(last) if isinstance(node, list) else last
        if isinstance(node, list) and key == len(node):
            node.append(value)
        elif value is DELETE:
            del node[key]
        else:
            node[key] = value
    return out


def make(api_version: str, kind: str, *, name: str = "x", **body: Any) -> Obj:
    res = by_kind(api_version, kind)
    meta: Obj = {"name": name}
    if res.namespaced:
        meta["namespace"] = "default"
    obj = {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}
    apply_defaults(res, obj)
    return obj


def pod_spec(**extra: Any) -> Obj:
    return {"containers": [{"name": "c", "image": "nginx:1.25"}], **extra}


def template(**extra: Any) -> Obj:
    return {"metadata": {"labels": {"app": "a"}}, "spec": pod_spec(**extra)}


SEL = {"matchLabels": {"app": "a"}}
VALID: dict[str, Callable[[], Obj]] = {
    "Pod": lambda: make("v1", "Pod", spec=pod_spec()),
    "Deployment": lambda: make("apps/v1", "Deployment", spec={"selector": SEL, "template": template()}),
    "ReplicaSet": lambda: make("apps/v1", "ReplicaSet", spec={"selector": SEL, "template": template()}),
    # Its containers mount the claim template "d" without declaring it as a volume.
    "StatefulSet": lambda: make("apps/v1", "StatefulSet", spec={
        "selector": SEL, "serviceName": "web", "template": {
            "metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
                {"name": "c", "image": "nginx:1.25",
                 "volumeMounts": [{"name": "d", "mountPath": "/data"}]}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}),
    "DaemonSet": lambda: make("apps/v1", "DaemonSet", spec={"selector": SEL, "template": template()}),
    "Job": lambda: make("batch/v1", "Job", spec={"template": template(restartPolicy="Never")}),
    "CronJob": lambda: make("batch/v1", "CronJob", spec={
        "schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template(restartPolicy="OnFailure")}}}),
    "Service": lambda: make("v1", "Service", spec={"selector": {"app": "a"}, "ports": [{"port": 80}]}),
    "Ingress": lambda: make("networking.k8s.io/v1", "Ingress", spec={"rules": [{"host": "a.example.com", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}),
    "ConfigMap": lambda: make("v1", "ConfigMap", data={"app.conf": "x"}),
    "Secret": lambda: make("v1", "Secret", data={"a": "eA=="}),
    "Event": lambda: make("v1", "Event", name="p.1", reason="Started", message="m", type="Normal",
                          involvedObject={"kind": "Pod", "name": "p", "namespace": "default"},
                          lastTimestamp="2024-05-01T10:00:00Z"),
    "Lease": lambda: make("coordination.k8s.io/v1", "Lease", spec={
        "holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2024-05-01T10:00:00.123456Z"}),
    "Node": lambda: make("v1", "Node", spec={"podCIDR": "10.244.1.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]},
                         status={"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}}),
    "PersistentVolume": lambda: make("v1", "PersistentVolume", spec={
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}),
    "PersistentVolumeClaim": lambda: make("v1", "PersistentVolumeClaim", spec={
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
    "PriorityClass": lambda: make("scheduling.k8s.io/v1", "PriorityClass", value=1000),
    "StorageClass": lambda: make("storage.k8s.io/v1", "StorageClass", provisioner="kubelite.io/local"),
    "EndpointSlice": lambda: make("discovery.k8s.io/v1", "EndpointSlice", addressType="IPv4",
                                  endpoints=[{"addresses": ["10.244.0.5"]}], ports=[{"port": 80}]),
    "Endpoints": lambda: make("v1", "Endpoints", subsets=[{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]),
    "PodDisruptionBudget": lambda: make("policy/v1", "PodDisruptionBudget", spec={"minAvailable": 1, "selector": SEL}),
    "Namespace": lambda: make("v1", "Namespace", name="dev"),
    "ServiceAccount": lambda: make("v1", "ServiceAccount"),
    "NetworkPolicy": lambda: make("networking.k8s.io/v1", "NetworkPolicy", spec={"podSelector": SEL}),
    "IngressClass": lambda: make("networking.k8s.io/v1", "IngressClass", spec={"controller": "kubelite.io/ingress"}),
    "ControllerRevision": lambda: make("apps/v1", "ControllerRevision", data={"spec": {}}, revision=1),
    "Binding": lambda: make("v1", "Binding", target={"kind": "Node", "name": "n1"}),
}


def check(kind: str, obj: Obj, **kw: Any) -> tuple[list[Any], list[str]]:
    api_version = obj["apiVersion"]
    return validate(by_kind(api_version, kind), obj, **kw)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_objects_pass(kind: str) -> None:
    assert check(kind, VALID[kind]()) == ([], [])


LONG = "a" * 254
CASES = [
    # (id, kind, changes, field, message fragment)
    ("unknown field", "Deployment", {"spec.foo": 1}, "spec.foo", 'unknown field "spec.foo"'),
    ("unknown nested field", "Pod", {"spec.containers.0.imagePolicy": "x"}, "spec.containers[0].imagePolicy", 'unknown field "spec.containers[0].imagePolicy"'),
    ("string for int32", "Deployment", {"spec.replicas": "3"}, "spec.replicas", "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ("int32 overflow", "Deployment", {"spec.replicas": 2**31}, "spec.replicas", "cannot unmarshal number 2147483648"),
    ("string for bool", "Pod", {"spec.hostNetwork": "yes"}, "spec.hostNetwork", "of type bool"),
    ("object for list", "Pod", {"spec.containers": {"name": "c"}}, "spec.containers", "cannot unmarshal object"),
    ("bad quantity", "Pod", {"spec.containers.0.resources": {"limits": {"cpu": "1x"}}}, "spec.containers[0].resources.limits[cpu]", "quantities must match the regular expression"),
    ("bad date-time", "Event", {"lastTimestamp": "yesterday"}, "lastTimestamp", 'parsing time "yesterday"'),
    ("bad base64", "Secret", {"data": {"a": "!!!"}}, "data[a]", "illegal base64 data at input byte 0"),
    ("required by schema", "Pod", {"spec.containers.0.name": DELETE}, "spec.containers[0].name", "Required value"),
    ("null list item", "Pod", {"spec.containers": [None]}, "spec.containers[0].name", "Required value"),
    ("kind enum", "ConfigMap", {"kind": "Config"}, "kind", 'Unsupported value: "Config": supported values: "ConfigMap"'),
    ("name required", "ConfigMap", {"metadata.name": DELETE}, "metadata.name", "Required value: name or generateName is required"),
    ("name subdomain", "ConfigMap", {"metadata.name": "Bad_Name"}, "metadata.name", "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    ("name too long", "ConfigMap", {"metadata.name": LONG}, "metadata.name", "must be no more than 253 characters"),
    ("generateName", "Pod", {"metadata.name": DELETE, "metadata.generateName": "Web-"}, "metadata.generateName", "a lowercase RFC 1123 subdomain"),
    ("namespace name is a label", "Namespace", {"metadata.name": "a.b"}, "metadata.name", "a lowercase RFC 1123 label must consist of"),
    ("service name is DNS-1035", "Service", {"metadata.name": "1web"}, "metadata.name", "a DNS-1035 label must consist of"),
    ("label key", "Pod", {"metadata.labels": {"bad key": "v"}}, "metadata.labels", 'Invalid value: "bad key": name part must consist of'),
    ("label value", "Pod", {"metadata.labels": {"k": "bad value"}}, "metadata.labels", "a valid label must be an empty string or consist of"),
    ("label prefix", "Pod", {"metadata.labels": {"Ex.com/k": "v"}}, "metadata.labels", "prefix part a lowercase RFC 1123 subdomain"),
    ("annotation key", "Pod", {"metadata.annotations": {"a/b/c": "v"}}, "metadata.annotations", "a qualified name must consist of"),
    ("annotation size", "ConfigMap", {"metadata.annotations": {"a": "x" * 262144}}, "metadata.annotations", "Too long: must have at most 262144 bytes"),
    ("finalizer", "ConfigMap", {"metadata.finalizers": ["foo"]}, "metadata.finalizers[0]", "name is neither a standard finalizer name nor is it fully qualified"),
    ("containers required", "Pod", {"spec.containers": []}, "spec.containers", "Required value"),
    ("container names unique", "Pod", {"spec.containers.1": {"name": "c", "image": "i"}}, "spec.containers[1].name", 'Duplicate value: "c"'),
    ("container name", "Pod", {"spec.containers.0.name": "C_1"}, "spec.containers[0].name", "a lowercase RFC 1123 label"),
    ("image required", "Pod", {"spec.containers.0.image": DELETE}, "spec.containers[0].image", "Required value"),
    ("container port range", "Pod", {"spec.containers.0.ports": [{"containerPort": 70000}]}, "spec.containers[0].ports[0].containerPort", "Invalid value: 70000: must be between 1 and 65535, inclusive"),
    ("container port protocol", "Pod", {"spec.containers.0.ports": [{"containerPort": 80, "protocol": "tcp"}]}, "spec.containers[0].ports[0].protocol", 'Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"'),
    ("requests over limits", "Deployment", {"spec.template.spec.containers.0.resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}, "spec.template.spec.containers[0].resources.requests[cpu]", 'Invalid value: "2": must be less than or equal to cpu limit of 1'),
    ("negative quantity", "Pod", {"spec.containers.0.resources": {"limits": {"memory": "-1"}}}, "spec.containers[0].resources.limits[memory]", "must be greater than or equal to 0"),
    ("restartPolicy", "Pod", {"spec.restartPolicy": "Sometimes"}, "spec.restartPolicy", 'Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"'),
    ("dnsPolicy", "Pod", {"spec.dnsPolicy": "Google"}, "spec.dnsPolicy", 'supported values: "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"'),
    ("mount of unknown volume", "Pod", {"spec.containers.0.volumeMounts": [{"name": "v", "mountPath": "/v"}]}, "spec.containers[0].volumeMounts[0].name", 'Not found: "v"'),
    ("probe handler", "Pod", {"spec.containers.0.livenessProbe": {"periodSeconds": 3}}, "spec.containers[0].livenessProbe", "must specify a handler type"),
    ("toleration operator", "Pod", {"spec.tolerations": [{"key": "k", "operator": "Like"}]}, "spec.tolerations[0].operator", 'Unsupported value: "Like"'),
    ("selector mismatch", "Deployment", {"spec.template.metadata.labels": {"app": "b"}}, "spec.template.metadata.labels", 'Invalid value: map[string]string{"app":"b"}: `selector` does not match template `labels`'),
    ("negative replicas", "Deployment", {"spec.replicas": -1}, "spec.replicas", "Invalid value: -1: must be greater than or equal to 0"),
    ("selector required", "Deployment", {"spec.selector": DELETE}, "spec.selector", "Required value"),
    ("empty selector", "Deployment", {"spec.selector": {}}, "spec.selector", "empty selector is invalid for deployment"),
    ("selector operator", "Deployment", {"spec.selector": {"matchExpressions": [{"key": "app", "operator": "Is"}]}}, "spec.selector.matchExpressions[0].operator", "not a valid selector operator"),
    ("deployment restartPolicy", "Deployment", {"spec.template.spec.restartPolicy": "Never"}, "spec.template.spec.restartPolicy", 'Unsupported value: "Never": supported values: "Always"'),
    ("deployment strategy", "Deployment", {"spec.strategy": {"type": "Recreate", "rollingUpdate": {}}}, "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"),
    ("maxUnavailable percent", "Deployment", {"spec.strategy.rollingUpdate.maxUnavailable": "50"}, "spec.strategy.rollingUpdate.maxUnavailable", "a valid percent string must be"),
    ("replicaset replicas", "ReplicaSet", {"spec.replicas": -2}, "spec.replicas", "must be greater than or equal to 0"),
    ("replicaset mismatch", "ReplicaSet", {"spec.selector": {"matchLabels": {"app": "z"}}}, "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    ("statefulset serviceName", "StatefulSet", {"spec.serviceName": DELETE}, "spec.serviceName", "Required value"),
    ("statefulset replicas", "StatefulSet", {"spec.replicas": -1}, "spec.replicas", "must be greater than or equal to 0"),
    ("statefulset policy", "StatefulSet", {"spec.podManagementPolicy": "Random"}, "spec.podManagementPolicy", "must be 'OrderedReady' or 'Parallel'"),
    ("statefulset mount", "StatefulSet", {"spec.template.spec.containers.0.volumeMounts.0.name": "e"}, "spec.template.spec.containers[0].volumeMounts[0].name", 'Not found: "e"'),
    ("statefulset claim", "StatefulSet", {"spec.volumeClaimTemplates.0.spec.accessModes": []}, "spec.volumeClaimTemplates[0].spec.accessModes", "at least 1 access mode is required"),
    ("daemonset mismatch", "DaemonSet", {"spec.selector": {"matchLabels": {"app": "z"}}}, "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    ("job restartPolicy", "Job", {"spec.template.spec.restartPolicy": "Always"}, "spec.template.spec.restartPolicy", 'Unsupported value: "Always": supported values: "OnFailure", "Never"'),
    ("job manual selector", "Job", {"spec.manualSelector": True, "spec.selector": {"matchLabels": {"app": "z"}}}, "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    ("job parallelism", "Job", {"spec.parallelism": -1}, "spec.parallelism", "must be greater than or equal to 0"),
    ("job indexed", "Job", {"spec.completionMode": "Indexed", "spec.completions": DELETE}, "spec.completions", "Required value: when completion mode is Indexed"),
    ("cron schedule", "CronJob", {"spec.schedule": "every minute"}, "spec.schedule", "expected exactly 5 fields, found 2: [every minute]"),
    ("cron range", "CronJob", {"spec.schedule": "61 * * * *"}, "spec.schedule", "above maximum (59)"),
    ("cronjob name", "CronJob", {"metadata.name": "a" * 53}, "metadata.name", "must be no more than 52 characters"),
    ("cronjob policy", "CronJob", {"spec.concurrencyPolicy": "Never"}, "spec.concurrencyPolicy", 'supported values: "Allow", "Forbid", "Replace"'),
    ("service port", "Service", {"spec.ports.0.port": 0}, "spec.ports[0].port", "Invalid value: 0: must be between 1 and 65535, inclusive"),
    ("service port names", "Service", {"spec.ports.1": {"port": 81}}, "spec.ports[0].name", "Required value"),
    ("service duplicate port name", "Service", {"spec.ports": [{"name": "h", "port": 80}, {"name": "h", "port": 81}]}, "spec.ports[1].name", 'Duplicate value: "h"'),
    ("service nodePort range", "Service", {"spec.type": "NodePort", "spec.ports.0.nodePort": 80}, "spec.ports[0].nodePort", "provided port is not in the valid range. The range of valid ports is 30000-32767"),
    ("service nodePort type", "Service", {"spec.ports.0.nodePort": 30080}, "spec.ports[0].nodePort", "may not be used when `type` is 'ClusterIP'"),
    ("service clusterIP", "Service", {"spec.clusterIP": "abc", "spec.clusterIPs": ["abc"]}, "spec.clusterIPs[0]", "must be a valid IP address"),
    ("service type", "Service", {"spec.type": "Internal"}, "spec.type", 'Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"'),
    ("service selector", "Service", {"spec.selector": {"app": "a b"}}, "spec.selector", "a valid label must be"),
    ("service targetPort", "Service", {"spec.ports.0.targetPort": 0}, "spec.ports[0].targetPort", "must be between 1 and 65535"),
    ("externalName required", "Service", {"spec.type": "ExternalName", "spec.ports": DELETE}, "spec.externalName", "Required value"),
    ("ingress pathType", "Ingress", {"spec.rules.0.http.paths.0.pathType": "Glob"}, "spec.rules[0].http.paths[0].pathType", 'Unsupported value: "Glob": supported values: "Exact", "ImplementationSpecific", "Prefix"'),
    ("ingress pathType required", "Ingress", {"spec.rules.0.http.paths.0.pathType": DELETE}, "spec.rules[0].http.paths[0].pathType", "Required value"),
    ("ingress absolute path", "Ingress", {"spec.rules.0.http.paths.0.path": "api"}, "spec.rules[0].http.paths[0].path", 'Invalid value: "api": must be an absolute path'),
    ("ingress host", "Ingress", {"spec.rules.0.host": "Bad_Host"}, "spec.rules[0].host", "a lowercase RFC 1123 subdomain"),
    ("configmap key", "ConfigMap", {"data": {"bad key": "v"}}, "data[bad key]", "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
    ("configmap size", "ConfigMap", {"data": {"a": "x" * (1024 * 1024 + 1)}}, "", "Too long: must have at most 1048576 bytes"),
    ("secret key", "Secret", {"data": {"a/b": "eA=="}}, "data[a/b]", "a valid config key"),
    ("tls secret keys", "Secret", {"type": "kubernetes.io/tls"}, "data[tls.crt]", "Required value"),
    ("event involvedObject", "Event", {"involvedObject": DELETE}, "involvedObject", "Required value"),
    ("event namespace", "Event", {"involvedObject.namespace": "other"}, "involvedObject.namespace", "does not match event.namespace"),
    ("lease duration", "Lease", {"spec.leaseDurationSeconds": 0}, "spec.leaseDurationSeconds", "must be greater than 0"),
    ("node taint effect", "Node", {"spec.taints.0.effect": "Evict"}, "spec.taints[0].effect", 'Unsupported value: "Evict"'),
    ("node podCIDR", "Node", {"spec.podCIDR": "10.244.1.0"}, "spec.podCIDRs[0]", "must be a valid CIDR value"),
    ("pv capacity", "PersistentVolume", {"spec.capacity": DELETE}, "spec.capacity", "Required value"),
    ("pv accessModes", "PersistentVolume", {"spec.accessModes": DELETE}, "spec.accessModes", "Required value"),
    ("pv source", "PersistentVolume", {"spec.hostPath": DELETE}, "spec", "must specify a volume type"),
    ("pvc accessModes", "PersistentVolumeClaim", {"spec.accessModes": DELETE}, "spec.accessModes", "Required value: at least 1 access mode is required"),
    ("pvc storage", "PersistentVolumeClaim", {"spec.resources": {}}, "spec.resources[storage]", "Required value"),
    ("pvc access mode value", "PersistentVolumeClaim", {"spec.accessModes": ["ReadWriteSometimes"]}, "spec.accessModes", "Unsupported value"),
    ("priority range", "PriorityClass", {"value": 2_000_000_000}, "value", "maximum allowed value of a user defined priority is 1000000000"),
    ("priority system prefix", "PriorityClass", {"metadata.name": "system-mine"}, "metadata.name", "priority class names with 'system-' prefix are reserved"),
    ("storageclass reclaim", "StorageClass", {"reclaimPolicy": "Recycle"}, "reclaimPolicy", 'supported values: "Delete", "Retain"'),
    ("endpointslice address", "EndpointSlice", {"endpoints.0.addresses": ["x"]}, "endpoints[0].addresses[0]", "must be a valid IP address"),
    ("pdb both", "PodDisruptionBudget", {"spec.maxUnavailable": 1}, "spec", "minAvailable and maxUnavailable cannot be both set"),
]


@pytest.mark.parametrize(("kind", "changes", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejected_with_kubernetes_path_and_message(kind: str, changes: dict[str, Any], field: str, fragment: str) -> None:
    obj = put(VALID[kind](), changes)
    before = copy.deepcopy(obj)
    errors, _ = check(kind, obj)
    assert any(e.field == field and fragment in e.message for e in errors), [e.render() for e in errors]
    assert obj == before  # validation never mutates what it refuses


def test_field_validation_modes() -> None:
    dep = put(VALID["Deployment"](), {"spec.foo": 1, "spec.template.spec.bar": 2})
    errors, warnings = check("Deployment", dep, field_validation="Strict")
    assert [e.reason for e in errors] == [FIELD_VALUE_UNKNOWN] * 2 and warnings == []
    errors, warnings = check("Deployment", dep, field_validation="Warn")
    assert errors == [] and sorted(warnings) == ['unknown field "spec.foo"', 'unknown field "spec.template.spec.bar"']
    assert check("Deployment", dep, field_validation="Ignore") == ([], [])
    with pytest.raises(ValueError):
        check("Deployment", dep, field_validation="Lenient")


def test_to_api_error_maps_decode_strict_and_invalid() -> None:
    res = by_kind("apps/v1", "Deployment")
    typed, _ = check("Deployment", put(VALID["Deployment"](), {"spec.replicas": "3", "spec.foo": 1}))
    assert typed[0].reason == FIELD_TYPE_INVALID
    err = to_api_error(res, "x", typed)
    assert (err.code, err.message) == (400, 'Deployment in version "v1" cannot be handled as a Deployment: '
                                       "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32")
    unknown, _ = check("Deployment", put(VALID["Deployment"](), {"spec.foo": 1, "spec.bar": 2}))
    err = to_api_error(res, "x", unknown)
    assert (err.code, err.message) == (400, 'strict decoding error: unknown field "spec.bar", unknown field "spec.foo"') or \
        (err.code, err.message) == (400, 'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"')
    invalid, _ = check("Deployment", put(VALID["Deployment"](), {"spec.replicas": -1}))
    err = to_api_error(res, "x", invalid)
    assert err.code == 422 and err.message == 'Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    assert err.details["causes"] == [{"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "spec.replicas"}]
    assert to_api_error(res, "x", []) is None


UPDATE_REJECTED = [
    # (id, kind, changes, field, message fragment)
    ("name", "ConfigMap", {"metadata.name": "y"}, "metadata.name", 'Invalid value: "y": field is immutable'),
    ("uid", "ConfigMap", {"metadata.uid": "other"}, "metadata.uid", "field is immutable"),
    ("deployment selector", "Deployment", {"spec.selector": {"matchLabels": {"app": "b"}}, "spec.template.metadata.labels": {"app": "b"}}, "spec.selector",
     'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable'),
    ("replicaset selector", "ReplicaSet", {"spec.selector": {"matchLabels": {"app": "a", "x": "y"}}, "spec.template.metadata.labels.x": "y"}, "spec.selector", "field is immutable"),
    ("daemonset selector", "DaemonSet", {"spec.selector": {"matchLabels": {"app": "a", "x": "y"}}, "spec.template.metadata.labels.x": "y"}, "spec.selector", "field is immutable"),
    ("job template", "Job", {"spec.template.spec.containers.0.image": "busybox"}, "spec.template", "field is immutable"),
    ("job selector", "Job", {"spec.selector.matchLabels.extra": "1", "spec.template.metadata.labels.extra": "1"}, "spec.selector", "field is immutable"),
    ("statefulset serviceName", "StatefulSet", {"spec.serviceName": "other"}, "spec", "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
    ("pod restartPolicy", "Pod", {"spec.restartPolicy": "Never"}, "spec", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
    ("pod toleration removed", "Pod", {"spec.tolerations": []}, "spec.tolerations", "existing toleration can not be modified"),
    ("pod deadline raised", "Pod", {"spec.activeDeadlineSeconds": 100}, "spec.activeDeadlineSeconds", "must be less than or equal to previous value"),
    ("service clusterIP", "Service", {"spec.clusterIP": "10.96.0.9", "spec.clusterIPs": ["10.96.0.9"]}, "spec.clusterIPs[0]", 'Invalid value: []string{"10.96.0.9"}: may not change once set'),
    ("pvc access modes", "PersistentVolumeClaim", {"spec.accessModes": ["ReadWriteMany"]}, "spec", "spec is immutable after creation except resources.requests"),
    ("pvc shrink", "PersistentVolumeClaim", {"spec.resources.requests.storage": "500Mi", "status.phase": "Bound"}, "spec.resources.requests.storage", "field can not be less than previous value"),
    ("immutable configmap", "ConfigMap", {"immutable": True, "data": {"app.conf": "y"}}, "data", "Forbidden: field is immutable when `immutable` is set"),
    ("immutable flag", "ConfigMap", {"immutable": False}, "immutable", "field is immutable when `immutable` is set"),
    ("secret type", "Secret", {"type": "kubernetes.io/basic-auth"}, "type", "field is immutable"),
    ("priority value", "PriorityClass", {"value": 5}, "value", "Forbidden: may not be changed in an update."),
    ("storageclass provisioner", "StorageClass", {"provisioner": "other.io/x"}, "provisioner", "updates to provisioner are forbidden."),
]

OLD_PATCH: dict[str, dict[str, Any]] = {
    "Service": {"spec.clusterIP": "10.96.0.5", "spec.clusterIPs": ["10.96.0.5"]},
    "Pod": {"spec.activeDeadlineSeconds": 50},
    "ConfigMap": {},
    "PersistentVolumeClaim": {"status.phase": "Bound"},
}


def stored(kind: str) -> Obj:
    obj = put(VALID[kind](), OLD_PATCH.get(kind, {}))
    obj["metadata"].update(uid="u-1", creationTimestamp="2024-05-01T10:00:00Z", resourceVersion="7")
    return obj


@pytest.mark.parametrize(("kind", "changes", "field", "fragment"), [c[1:] for c in UPDATE_REJECTED], ids=[c[0] for c in UPDATE_REJECTED])
def test_update_rejected(kind: str, changes: dict[str, Any], field: str, fragment: str) -> None:
    old = stored(kind)
    if field == "data" or field == "immutable":
        old["immutable"] = True
    new = put(old, changes)
    errors, _ = check(kind, new, old=old)
    assert any(e.field == field and fragment in e.message for e in errors), [e.render() for e in errors]


UPDATE_ALLOWED = [
    ("pod image", "Pod", {"spec.containers.0.image": "nginx:1.26"}),
    ("pod toleration added", "Pod", {"spec.tolerations.2": {"key": "k", "operator": "Exists"}}),
    ("pod deadline lowered", "Pod", {"spec.activeDeadlineSeconds": 10}),
    ("pod labels", "Pod", {"metadata.labels": {"x": "y"}}),
    ("pod status", "Pod", {"status.phase": "Running", "status.podIP": "10.244.0.7", "status.conditions": [{"type": "Ready", "status": "True"}]}),
    ("pod without uid in body", "Pod", {"metadata.uid": DELETE, "metadata.creationTimestamp": DELETE}),
    ("deployment scale and template", "Deployment", {"spec.replicas": 5, "spec.template.spec.containers.0.image": "nginx:2"}),
    ("deployment status", "Deployment", {"status": {"replicas": 3, "readyReplicas": 2, "observedGeneration": 4}}),
    ("statefulset mutable fields", "StatefulSet", {"spec.replicas": 3, "spec.updateStrategy": {"type": "OnDelete"}, "spec.minReadySeconds": 5}),
    ("job status", "Job", {"status": {"active": 1, "startTime": "2024-05-01T10:00:00Z"}}),
    ("service ports", "Service", {"spec.ports.0.port": 8080}),
    ("service body without clusterIP", "Service", {"spec.clusterIP": DELETE, "spec.clusterIPs": DELETE}),
    ("pvc growth when bound", "PersistentVolumeClaim", {"spec.resources.requests.storage": "2Gi"}),
    ("pvc bound to a volume", "PersistentVolumeClaim", {"spec.volumeName": "pv-1"}),
    ("configmap data", "ConfigMap", {"data": {"app.conf": "y"}}),
    ("node status", "Node", {"status.conditions": [{"type": "Ready", "status": "True"}]}),
    ("namespace labels", "Namespace", {"metadata.labels.team": "a"}),
]


@pytest.mark.parametrize(("kind", "changes"), [c[1:] for c in UPDATE_ALLOWED], ids=[c[0] for c in UPDATE_ALLOWED])
def test_update_allowed(kind: str, changes: dict[str, Any]) -> None:
    old = stored(kind)
    assert check(kind, put(old, changes), old=old) == ([], [])


def test_suspended_job_may_retarget_its_pods() -> None:
    old = put(stored("Job"), {"spec.suspend": True})
    new = put(old, {"spec.template.spec.nodeSelector": {"zone": "a"}})
    assert check("Job", new, old=old) == ([], [])


def test_status_counters_are_checked() -> None:
    dep = put(VALID["Deployment"](), {"status": {"replicas": 1, "readyReplicas": 2}})
    errors, _ = check("Deployment", dep, old=dep)
    assert [e.render() for e in errors] == ["status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["metadata", "spec", "status", "name", "labels", "containers", "template", "ports",
                         "selector", "data", "type", "image", "port", "replicas", "x"]), children, max_size=4),
    max_leaves=16,
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from([r for r in RESOURCES]), body=json_values, old=st.booleans())
def test_garbage_never_raises(kind: Any, body: Any, old: bool) -> None:
    obj = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": "x", "namespace": "d"}}
    if isinstance(body, dict):
        obj.update(body)
    apply_defaults(kind, obj)
    errors, _ = validate(kind, obj, old=copy.deepcopy(obj) if old else None)
    assert all(e.reason and isinstance(e.field, str) for e in errors)
    to_api_error(kind, "x", errors)
