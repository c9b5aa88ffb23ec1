"""meta.k8s.io/v1 Tables: columns, cells and pod STATUS as kube-apiserver 1.32 prints them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubelite.api.errors import APIError
from kubelite.api.tables import PRINTERS, human_duration, to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(ago: timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str = "x", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "resourceVersion": "7",
            "creationTimestamp": ts(timedelta(minutes=10)), **extra}


def cells(plural: str, obj: dict[str, Any]) -> list[Any]:
    return to_table(plural, [obj], now=NOW)["rows"][0]["cells"]


# ---------------------------------------------------------------- human_duration

# apimachinery duration_test.go (TestHumanDuration and TestHumanDurationBoundaries).
MS, M, H, D, Y = 0.001, 60, 3600, 86400, 365 * 86400
DURATIONS = [
    (1, "1s"), (70, "70s"), (190, "3m10s"), (70 * M, "70m"), (47 * H, "47h"), (49 * H, "2d1h"),
    ((8 * 24 + 2) * H, "8d"), (367 * D, "367d"), (2 * Y + 25 * H, "2y1d"), (8 * Y + 2 * H, "8y"),
    (-2, "<invalid>"), (-2 + 1e-9, "0s"), (0, "0s"), (1 - MS, "0s"), (2 * M - MS, "119s"),
    (2 * M, "2m"), (2 * M + 1, "2m1s"), (10 * M - MS, "9m59s"), (10 * M, "10m"),
    (10 * M + 1, "10m"), (3 * H - MS, "179m"), (3 * H, "3h"), (3 * H + M, "3h1m"),
    (8 * H - MS, "7h59m"), (8 * H, "8h"), (8 * H + 59 * M, "8h"), (2 * D - MS, "47h"),
    (2 * D, "2d"), (2 * D + H, "2d1h"), (8 * D - MS, "7d23h"), (8 * D, "8d"),
    (8 * D + 23 * H, "8d"), (2 * Y - MS, "729d"), (2 * Y, "2y"), (2 * Y + 23 * H, "2y"),
    (2 * Y + D - MS, "2y"), (2 * Y + D, "2y1d"), (3 * Y, "3y"), (7 * Y, "7y"),
    (8 * Y - MS, "7y364d"), (8 * Y, "8y"), (8 * Y + 364 * D, "8y"), (9 * Y, "9y"),
]


@pytest.mark.parametrize(("seconds", "text"), DURATIONS, ids=[d[1] + f"@{d[0]}" for d in DURATIONS])
def test_human_duration_matches_kubernetes(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


# ---------------------------------------------------------------- columns and rows per kind

POD_SPEC = {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "web"}}

KINDS: list[tuple[str, list[str], dict[str, Any], list[Any]]] = [
    ("pods",
     ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
      "Readiness Gates"],
     {"metadata": meta("web-0"), "spec": {**POD_SPEC, "nodeName": "node-1"},
      "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}],
                 "containerStatuses": [
                     {"name": "web", "ready": True, "restartCount": 0, "state": {"running": {}}},
                     {"name": "log", "ready": True, "restartCount": 0,
                      "state": {"running": {}}}]}},
     ["web-0", "2/2", "Running", "0", "10m", "10.244.1.5", "node-1", "<none>", "<none>"]),
    ("nodes",
     ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
      "Kernel-Version", "Container-Runtime"],
     {"metadata": meta("node-1", labels={"node-role.kubernetes.io/control-plane": "",
                                         "node-role.kubernetes.io/worker": ""}),
      "spec": {"unschedulable": True},
      "status": {"conditions": [{"type": "Ready", "status": "True"}],
                 "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                 "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12",
                              "kernelVersion": "6.1.0", "containerRuntimeVersion": "runc://1.1"}}},
     ["node-1", "Ready,SchedulingDisabled", "control-plane,worker", "10m", "v1.32.0", "10.0.0.2",
      "<none>", "Debian GNU/Linux 12", "6.1.0", "runc://1.1"]),
    ("namespaces", ["Name", "Status", "Age"],
     {"metadata": meta("team-a"), "status": {"phase": "Active"}}, ["team-a", "Active", "10m"]),
    ("services",
     ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"],
     {"metadata": meta("web"),
      "spec": {"type": "NodePort", "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"],
               "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                         {"port": 53, "protocol": "UDP"}],
               "selector": {"tier": "fe", "app": "web"}}},
     ["web", "NodePort", "10.96.0.12", "<none>", "80:30080/TCP,53/UDP", "10m",
      "app=web,tier=fe"]),
    ("endpoints", ["Name", "Endpoints", "Age"],
     {"metadata": meta("web"),
      "subsets": [{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.7"}],
                   "ports": [{"port": 8080}, {"port": 9090}]}]},
     ["web", "10.244.1.5:8080,10.244.2.7:8080,10.244.1.5:9090 + 1 more...", "10m"]),
    ("endpointslices", ["Name", "AddressType", "Ports", "Endpoints", "Age"],
     {"metadata": meta("web-abc"), "addressType": "IPv4", "ports": [{"port": 8080}],
      "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.2.7"]}]},
     ["web-abc", "IPv4", "8080", "10.244.1.5,10.244.2.7", "10m"]),
    ("configmaps", ["Name", "Data", "Age"],
     {"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
     ["cfg", 3, "10m"]),
    ("secrets", ["Name", "Type", "Data", "Age"],
     {"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}},
     ["tls", "kubernetes.io/tls", 2, "10m"]),
    ("serviceaccounts", ["Name", "Secrets", "Age"],
     {"metadata": meta("default")}, ["default", 0, "10m"]),
    ("events",
     ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
      "Count", "Name"],
     {"metadata": meta("web-0.17a"), "type": "Warning", "reason": "BackOff",
      "message": "Back-off restarting failed container\n", "count": 4,
      "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{web}"},
      "source": {"component": "kubelet", "host": "node-1"},
      "firstTimestamp": ts(timedelta(hours=1)), "lastTimestamp": ts(timedelta(seconds=30))},
     ["30s", "Warning", "BackOff", "pod/web-0", "spec.containers{web}", "kubelet, node-1",
      "Back-off restarting failed container", "60m", 4, "web-0.17a"]),
    ("persistentvolumes",
     ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
      "VolumeAttributesClass", "Reason", "Age", "VolumeMode"],
     {"metadata": meta("pv-1"),
      "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
               "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
               "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
      "status": {"phase": "Bound"}},
     ["pv-1", "5Gi", "RWO,RWX", "Retain", "Bound", "default/data", "local", "<unset>", "",
      "10m", "Filesystem"]),
    ("persistentvolumeclaims",
     ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
      "VolumeAttributesClass", "Age", "VolumeMode"],
     {"metadata": meta("data"),
      "spec": {"volumeName": "pv-1", "storageClassName": "local", "volumeMode": "Filesystem"},
      "status": {"phase": "Bound", "capacity": {"storage": "5Gi"},
                 "accessModes": ["ReadWriteOnce"]}},
     ["data", "Bound", "pv-1", "5Gi", "RWO", "local", "<unset>", "10m", "Filesystem"]),
    ("deployments",
     ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"],
     {"metadata": meta("web"), "spec": {"replicas": 3, "selector": SELECTOR, "template": TEMPLATE},
      "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}},
     ["web", "2/3", 3, 2, "10m", "web,log", "nginx:1,busybox", "app=web"]),
    ("replicasets",
     ["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"],
     {"metadata": meta("web-5d9"), "spec": {"replicas": 3, "selector": SELECTOR,
                                            "template": TEMPLATE},
      "status": {"replicas": 3, "readyReplicas": 1}},
     ["web-5d9", 3, 3, 1, "10m", "web,log", "nginx:1,busybox", "app=web"]),
    ("statefulsets", ["Name", "Ready", "Age", "Containers", "Images"],
     {"metadata": meta("db"), "spec": {"replicas": 2, "template": TEMPLATE},
      "status": {"readyReplicas": 2}},
     ["db", "2/2", "10m", "web,log", "nginx:1,busybox"]),
    ("daemonsets",
     ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age",
      "Containers", "Images", "Selector"],
     {"metadata": meta("proxy"),
      "spec": {"selector": SELECTOR, "template": {"spec": {**POD_SPEC,
                                                           "nodeSelector": {"os": "linux"}}}},
      "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                 "updatedNumberScheduled": 3, "numberAvailable": 2}},
     ["proxy", 3, 3, 2, 3, 2, "os=linux", "10m", "web,log", "nginx:1,busybox", "app=web"]),
    ("controllerrevisions", ["Name", "Controller", "Revision", "Age"],
     {"metadata": meta("db-7f", ownerReferences=[
         {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": True}]),
      "revision": 2},
     ["db-7f", "statefulset.apps/db", 2, "10m"]),
    ("jobs",
     ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"],
     {"metadata": meta("pi"), "spec": {"completions": 1, "parallelism": 1, "template": TEMPLATE,
                                       "selector": {"matchLabels": {"job-name": "pi"}}},
      "status": {"succeeded": 1, "startTime": ts(timedelta(minutes=9)),
                 "completionTime": ts(timedelta(minutes=8, seconds=50)),
                 "conditions": [{"type": "Complete", "status": "True"}]}},
     ["pi", "Complete", "1/1", "10s", "10m", "web,log", "nginx:1,busybox", "job-name=pi"]),
    ("cronjobs",
     ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age", "Containers",
      "Images", "Selector"],
     {"metadata": meta("nightly"),
      "spec": {"schedule": "0 3 * * *", "suspend": False,
               "jobTemplate": {"spec": {"template": TEMPLATE}}},
      "status": {"active": [{"name": "nightly-1"}], "lastScheduleTime": ts(timedelta(minutes=5))}},
     ["nightly", "0 3 * * *", "<none>", "False", 1, "5m", "10m", "web,log", "nginx:1,busybox",
      "<none>"]),
    ("ingresses", ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
     {"metadata": meta("web"),
      "spec": {"ingressClassName": "kubelite", "tls": [{"hosts": ["a.example"]}],
               "rules": [{"host": "a.example"}, {"host": "b.example"}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.9"}]}}},
     ["web", "kubelite", "a.example,b.example", "10.0.0.9", "80, 443", "10m"]),
    ("ingressclasses", ["Name", "Controller", "Parameters", "Age"],
     {"metadata": meta("kubelite"), "spec": {"controller": "kubelite.io/ingress"}},
     ["kubelite", "kubelite.io/ingress", "<none>", "10m"]),
    ("networkpolicies", ["Name", "Pod-Selector", "Age"],
     {"metadata": meta("deny"), "spec": {"podSelector": {}}}, ["deny", "<none>", "10m"]),
    ("leases", ["Name", "Holder", "Age"],
     {"metadata": meta("node-1"), "spec": {"holderIdentity": "node-1"}},
     ["node-1", "node-1", "10m"]),
    ("storageclasses",
     ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"],
     {"metadata": meta("local", annotations={
         "storageclass.kubernetes.io/is-default-class": "true"}),
      "provisioner": "kubelite.io/local", "volumeBindingMode": "WaitForFirstConsumer"},
     ["local (default)", "kubelite.io/local", "Delete", "WaitForFirstConsumer", False, "10m"]),
    ("priorityclasses", ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"],
     {"metadata": meta("system-node-critical"), "value": 2000001000,
      "preemptionPolicy": "PreemptLowerPriority"},
     ["system-node-critical", 2000001000, False, "10m", "PreemptLowerPriority"]),
    ("poddisruptionbudgets",
     ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"],
     {"metadata": meta("web"), "spec": {"minAvailable": "50%"},
      "status": {"disruptionsAllowed": 1}},
     ["web", "50%", "N/A", 1, "10m"]),
    ("horizontalpodautoscalers",
     ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"],
     {"apiVersion": "autoscaling/v2", "metadata": meta("web"),
      "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2,
               "maxReplicas": 5, "metrics": [
                   {"type": "Resource", "resource": {"name": "cpu", "target": {
                       "type": "Utilization", "averageUtilization": 60}}}]},
      "status": {"currentReplicas": 3, "currentMetrics": [
          {"type": "Resource", "resource": {"name": "cpu", "current": {
              "averageUtilization": 75}}}]}},
     ["web", "Deployment/web", "cpu: 75%/60%", "2", 5, 3, "10m"]),
    ("widgets.example.com", ["Name", "Age"], {"metadata": meta("w")}, ["w", "10m"]),
]


@pytest.mark.parametrize(("plural", "columns", "obj", "row"), KINDS, ids=[k[0] for k in KINDS])
def test_kind_columns_and_row(plural: str, columns: list[str], obj: dict[str, Any],
                              row: list[Any]) -> None:
    table = to_table(plural, [obj], now=NOW)
    assert [c["name"] for c in table["columnDefinitions"]] == columns
    assert table["rows"][0]["cells"] == row
    assert all(c["description"] for c in table["columnDefinitions"])


def test_every_printer_is_covered_by_a_row_case() -> None:
    assert set(PRINTERS) <= {k[0] for k in KINDS}


WIDE = {"pods": ["IP", "Node", "Nominated Node", "Readiness Gates"],
        "deployments": ["Containers", "Images", "Selector"],
        "services": ["Selector"],
        "events": ["Subobject", "Source", "First Seen", "Count", "Name"]}


@pytest.mark.parametrize("plural", sorted(WIDE))
def test_wide_columns_have_priority_one(plural: str) -> None:
    defs = to_table(plural, [], now=NOW)["columnDefinitions"]
    assert [c["name"] for c in defs if c["priority"] == 1] == WIDE[plural]
    assert defs[0] == {"name": defs[0]["name"], "type": "string", "format": defs[0]["format"],
                       "description": defs[0]["description"], "priority": defs[0]["priority"]}


# ---------------------------------------------------------------- pod STATUS derivation


def pod(status: dict[str, Any], *, init: int = 0, deleting: bool = False,
        sidecar: bool = False, gates: int = 0) -> dict[str, Any]:
    init_containers = [{"name": f"init-{i}", "image": "busybox"} for i in range(init)]
    if sidecar:
        init_containers.append({"name": "proxy", "image": "envoy", "restartPolicy": "Always"})
    extra = {"deletionTimestamp": ts(timedelta(seconds=5))} if deleting else {}
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "app"}],
                            "initContainers": init_containers}
    if gates:
        spec["readinessGates"] = [{"conditionType": f"gate/{i}"} for i in range(gates)]
    return {"metadata": meta("p", **extra), "spec": spec, "status": status}


def running(ready: bool = True, restarts: int = 0, **state: Any) -> dict[str, Any]:
    return {"name": "app", "ready": ready, "restartCount": restarts,
            "state": state or {"running": {"startedAt": ts(timedelta(minutes=1))}}}


def waiting(reason: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason}}


POD_CASES = [
    ("pending-unscheduled", pod({"phase": "Pending"}), ("0/1", "Pending", "0")),
    ("scheduling-gated", pod({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
     ("0/1", "SchedulingGated", "0")),
    ("container-creating", pod({"phase": "Pending", "containerStatuses": [
        running(False, **waiting("ContainerCreating"))]}), ("0/1", "ContainerCreating", "0")),
    ("running", pod({"phase": "Running", "containerStatuses": [running()]}),
     ("1/1", "Running", "0")),
    ("crash-loop-with-last-restart",
     pod({"phase": "Running", "containerStatuses": [{
         **running(False, 5, **waiting("CrashLoopBackOff")),
         "lastState": {"terminated": {"exitCode": 1,
                                      "finishedAt": ts(timedelta(minutes=5))}}}]}),
     ("0/1", "CrashLoopBackOff", "5 (5m ago)")),
    ("completed", pod({"phase": "Succeeded", "containerStatuses": [
        running(False, terminated={"exitCode": 0, "reason": "Completed"})]}),
     ("0/1", "Completed", "0")),
    ("error-exit", pod({"phase": "Failed", "containerStatuses": [
        running(False, terminated={"exitCode": 2, "reason": "Error"})]}),
     ("0/1", "Error", "0")),
    ("exit-code-without-reason", pod({"phase": "Failed", "containerStatuses": [
        running(False, terminated={"exitCode": 3})]}), ("0/1", "ExitCode:3", "0")),
    ("signal-without-reason", pod({"phase": "Failed", "containerStatuses": [
        running(False, terminated={"exitCode": 137, "signal": 9})]}), ("0/1", "Signal:9", "0")),
    ("init-waiting", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "init-0", "state": waiting("PodInitializing")}]}, init=1),
     ("0/1", "Init:0/1", "0")),
    ("init-second-of-two", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "init-0", "state": {"terminated": {"exitCode": 0}}},
        {"name": "init-1", "state": {"running": {}}}]}, init=2), ("0/1", "Init:1/2", "0")),
    ("init-crash-loop", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "init-0", "restartCount": 3, "state": waiting("CrashLoopBackOff")}]}, init=1),
     ("0/1", "Init:CrashLoopBackOff", "3")),
    ("init-error", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "init-0", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]},
        init=1), ("0/1", "Init:Error", "0")),
    ("init-exit-code", pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "init-0", "state": {"terminated": {"exitCode": 4}}}]}, init=1),
     ("0/1", "Init:ExitCode:4", "0")),
    ("sidecar-started-counts-as-ready", pod({"phase": "Running", "initContainerStatuses": [
        {"name": "proxy", "started": True, "ready": True, "restartCount": 1,
         "state": {"running": {}}}], "containerStatuses": [running()],
        "conditions": [{"type": "Initialized", "status": "True"}]}, sidecar=True),
     ("2/2", "Running", "1")),
    ("terminating", pod({"phase": "Running", "containerStatuses": [running()]}, deleting=True),
     ("1/1", "Terminating", "0")),
    ("terminating-after-success-stays-completed",
     pod({"phase": "Succeeded", "containerStatuses": [
         running(False, terminated={"exitCode": 0, "reason": "Completed"})]}, deleting=True),
     ("0/1", "Completed", "0")),
    ("node-lost", pod({"phase": "Running", "reason": "NodeLost",
                       "containerStatuses": [running()]}, deleting=True),
     ("1/1", "Unknown", "0")),
    ("evicted-reason", pod({"phase": "Failed", "reason": "Evicted"}), ("0/1", "Evicted", "0")),
]


@pytest.mark.parametrize(("case", "obj", "expected"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_restarts(case: str, obj: dict[str, Any],
                                   expected: tuple[str, str, str]) -> None:
    assert tuple(cells("pods", obj)[1:4]) == expected


def test_completed_container_beside_a_running_one_is_running_or_not_ready() -> None:
    statuses = [running(False, terminated={"exitCode": 0, "reason": "Completed"}),
                {**running(), "name": "other"}]
    obj = pod({"phase": "Running", "containerStatuses": statuses})
    assert cells("pods", obj)[2] == "NotReady"
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells("pods", obj)[2] == "Running"


def test_pod_readiness_gates_and_completed_row_condition() -> None:
    obj = pod({"phase": "Succeeded", "conditions": [{"type": "gate/0", "status": "True"},
                                                    {"type": "gate/1", "status": "False"}]},
              gates=3)
    row = to_table("pods", [obj], now=NOW)["rows"][0]
    assert row["cells"][8] == "1/3"
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]


# ---------------------------------------------------------------- other cell derivations


@pytest.mark.parametrize(("svc_spec", "svc_status", "external"), [
    ({"type": "ClusterIP"}, {}, "<none>"),
    ({"type": "ClusterIP", "externalIPs": ["1.2.3.4"]}, {}, "1.2.3.4"),
    ({"type": "LoadBalancer"}, {}, "<pending>"),
    ({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
     {"loadBalancer": {"ingress": [{"hostname": "lb.example"}, {"ip": "5.6.7.8"}]}},
     "5.6.7.8,lb.example,9.9.9.9"),
    ({"type": "ExternalName", "externalName": "db.example"}, {}, "db.example"),
], ids=["cluster-ip", "external-ips", "lb-pending", "lb-addresses", "external-name"])
def test_service_external_ip(svc_spec: dict, svc_status: dict, external: str) -> None:
    obj = {"metadata": meta("s"), "spec": svc_spec, "status": svc_status}
    assert cells("services", obj)[3] == external


@pytest.mark.parametrize(("job_spec", "job_status", "status", "completions", "duration"), [
    ({"parallelism": 3}, {"succeeded": 1, "startTime": ts(timedelta(minutes=3))},
     "Running", "1/1 of 3", "3m"),
    ({"completions": 5}, {"conditions": [{"type": "Failed", "status": "True"}]},
     "Failed", "0/5", ""),
    ({"completions": 1}, {"conditions": [{"type": "Suspended", "status": "True"}]},
     "Suspended", "0/1", ""),
], ids=["running-parallel", "failed", "suspended"])
def test_job_status_completions_duration(job_spec: dict, job_status: dict, status: str,
                                         completions: str, duration: str) -> None:
    obj = {"metadata": meta("j"), "spec": {**job_spec, "template": TEMPLATE}, "status": job_status}
    assert cells("jobs", obj)[1:4] == [status, completions, duration]


def test_node_status_not_ready_and_unknown() -> None:
    node = {"metadata": meta("n"), "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert cells("nodes", node)[1:3] == ["NotReady", "<none>"]
    assert cells("nodes", {"metadata": meta("n")})[1] == "Unknown"


def test_event_without_timestamps_uses_event_time_and_series() -> None:
    event = {"metadata": meta("e"), "eventTime": "2024-05-01T11:58:00.000000Z",
             "series": {"count": 7, "lastObservedTime": "2024-05-01T11:59:30.000000Z"},
             "reportingComponent": "kubelite-scheduler", "involvedObject": {"kind": "Node"}}
    row = cells("events", event)
    assert (row[0], row[3], row[5], row[7], row[8]) == (
        "30s", "node", "kubelite-scheduler", "2m", 7)


def test_ingress_hosts_beyond_three_and_catch_all() -> None:
    rules = [{"host": f"h{i}.example"} for i in range(5)]
    obj = {"metadata": meta("i"), "spec": {"rules": rules}}
    assert cells("ingresses", obj)[2:5] == ["h0.example,h1.example,h2.example + 2 more...", "",
                                            "80"]
    assert cells("ingresses", {"metadata": meta("i"), "spec": {}})[2] == "*"


# ---------------------------------------------------------------- the Table envelope


def test_include_object_variants_and_list_metadata() -> None:
    obj = {"metadata": meta("cfg", labels={"a": "b"}), "data": {"k": "v"}}
    table = to_table("configmaps", [obj], now=NOW,
                     list_meta={"resourceVersion": "42", "continue": "tok"})
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42", "continue": "tok"}
    assert table["rows"][0]["object"] == {"kind": "PartialObjectMetadata",
                                          "apiVersion": "meta.k8s.io/v1",
                                          "metadata": obj["metadata"]}
    assert to_table("configmaps", [obj], include_object="Object")["rows"][0]["object"] is obj
    assert to_table("configmaps", [obj], include_object="None")["rows"][0]["object"] is None


def test_single_object_and_watch_row_without_columns() -> None:
    obj = {"metadata": meta("cfg")}
    table = to_table("configmaps", [obj], now=NOW, with_columns=False)
    assert table["metadata"] == {"resourceVersion": "7"}
    assert table["columnDefinitions"] is None
    assert table["rows"][0]["cells"] == ["cfg", 0, "10m"]
    assert to_table("configmaps", [], now=NOW)["rows"] == []


def test_unknown_include_object_is_a_bad_request() -> None:
    with pytest.raises(APIError) as info:
        to_table("pods", [], include_object="Everything")
    assert (info.value.code, info.value.message) == (
        400, 'unrecognized includeObject value: "Everything"')


def test_missing_creation_timestamp_prints_unknown_age() -> None:
    assert cells("configmaps", {"metadata": {"name": "c"}}) == ["c", 0, "<unknown>"]


def test_hpa_targets_as_kubectl_prints_them_at_either_version() -> None:
    ref = {"kind": "Deployment", "name": "web"}
    v1 = {"apiVersion": "autoscaling/v1", "metadata": meta("web"),
          "spec": {"scaleTargetRef": ref, "maxReplicas": 4,
                   "targetCPUUtilizationPercentage": 50}}
    assert to_table("horizontalpodautoscalers", [v1], now=NOW)["rows"][0]["cells"] == [
        "web", "Deployment/web", "cpu: <unknown>/50%", "<unset>", 4, 0, "10m"]
    metrics = [
        {"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "AverageValue", "averageValue": "300Mi"}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
            "type": "AverageValue", "averageValue": "10"}}},
        {"type": "External", "external": {"metric": {"name": "queue"}, "target": {
            "type": "AverageValue", "averageValue": "30"}}},
    ]
    current = [{"type": "Resource", "resource": {"name": "memory", "current": {
        "averageValue": "200Mi"}}}]
    v2 = {"apiVersion": "autoscaling/v2", "metadata": meta("web"),
          "spec": {"scaleTargetRef": ref, "maxReplicas": 4, "metrics": metrics},
          "status": {"currentMetrics": current}}
    [row] = to_table("horizontalpodautoscalers", [v2], now=NOW)["rows"]
    assert row["cells"][2] == "memory: 200Mi/300Mi, <unknown>/10 + 1 more..."
    v2["spec"]["metrics"] = metrics[2:]
    [row] = to_table("horizontalpodautoscalers", [v2], now=NOW)["rows"]
    assert row["cells"][2] == "<unknown>/30 (avg)"
