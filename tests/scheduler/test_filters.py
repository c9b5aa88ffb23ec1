"""Each filter plugin, through the default profile's framework: which nodes pass, and
the exact reason given for those that do not."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.scheduler.framework import Code, CycleState
from kubelite.scheduler.nodeinfo import PodInfo
from tests.scheduler.builders import Cluster, make_node, make_pod

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"


@dataclass
class Case:
    id: str
    pod: Obj
    nodes: list[Obj]
    pods: list[Obj] = field(default_factory=list)
    # node -> expected reason ("" = passes)
    want: dict[str, str] = field(default_factory=dict)
    others: dict[str, list[Obj]] = field(default_factory=dict)
    unresolvable: bool | None = None


def anti(key: str, labels: dict[str, str]) -> Obj:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}


def affinity(key: str, labels: dict[str, str]) -> Obj:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": key}]}}


def spread(key: str, labels: dict[str, str], **kw: Any) -> list[Obj]:
    return [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": labels}, **kw}]


def claim(name: str, *, sc: str = "local", volume: str | None = None, size: str = "1Gi",
          modes: tuple[str, ...] = ("ReadWriteOnce",)) -> Obj:
    spec: Obj = {"storageClassName": sc, "accessModes": list(modes),
                 "resources": {"requests": {"storage": size}}}
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": spec}


def local_pv(name: str, node: str, *, sc: str = "local", size: str = "5Gi") -> Obj:
    return {"metadata": {"name": name}, "spec": {
        "storageClassName": sc, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}


WFFC = {"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"}
IMMEDIATE = {"metadata": {"name": "fast"}, "provisioner": "example.com/csi",
             "volumeBindingMode": "Immediate"}
DYNAMIC = {"metadata": {"name": "dyn"}, "provisioner": "example.com/csi",
           "volumeBindingMode": "WaitForFirstConsumer",
           "allowedTopologies": [{"matchLabelExpressions": [{"key": ZONE, "values": ["a"]}]}]}
WITH_CLAIM = {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}

CASES = [
    Case("cpu request fits the free cpu only on the bigger node",
         make_pod(cpu="3"), [make_node("small", cpu="2"), make_node("big", cpu="4")],
         want={"small": "Insufficient cpu", "big": ""}),
    Case("requests count pods already on the node",
         make_pod(cpu="2", memory="1Gi"), [make_node("a", cpu="4")],
         pods=[make_pod("old", cpu="3", node="a")], want={"a": "Insufficient cpu"}),
    Case("cpu and memory both short give both reasons in Kubernetes' order",
         make_pod(cpu="8", memory="16Gi"), [make_node("a")],
         want={"a": "Insufficient cpu, Insufficient memory"}),
    Case("init containers count at their peak, beside the app containers",
         make_pod(cpu="1", initContainers=[{"name": "i", "image": "x", "resources": {
             "requests": {"cpu": "3500m"}}}]), [make_node("a", cpu="4"), make_node("b", cpu="3")],
         want={"a": "", "b": "Insufficient cpu"}),
    Case("pod overhead is added to the requests",
         make_pod(cpu="3", overhead={"cpu": "1500m"}), [make_node("a", cpu="4")],
         want={"a": "Insufficient cpu"}),
    Case("extended resources must be allocatable",
         make_pod(requests={"example.com/gpu": "1"}),
         [make_node("plain"), make_node("gpu", extra={"example.com/gpu": "2"})],
         want={"plain": "Insufficient example.com/gpu", "gpu": ""}),
    Case("the pod count is a resource",
         make_pod(), [make_node("full", pods="1")], pods=[make_pod("x", node="full")],
         want={"full": "Too many pods"}),
    Case("a cordoned node takes no pods", make_pod(),
         [make_node("cordoned", unschedulable=True), make_node("open")],
         want={"cordoned": "node(s) were unschedulable", "open": ""}, unresolvable=True),
    Case("tolerating the unschedulable taint passes a cordoned node",
         make_pod(tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                "operator": "Exists", "effect": "NoSchedule"}]),
         [make_node("cordoned", unschedulable=True)], want={"cordoned": ""}),
    Case("an untolerated NoSchedule taint is named with key and value", make_pod(),
         [make_node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])],
         want={"gpu": "node(s) had untolerated taint {dedicated: gpu}"}, unresolvable=True),
    Case("NoExecute taints filter too; PreferNoSchedule does not", make_pod(),
         [make_node("x", taints=[{"key": "k", "effect": "NoExecute"}]),
          make_node("y", taints=[{"key": "k", "effect": "PreferNoSchedule"}])],
         want={"x": "node(s) had untolerated taint {k: }", "y": ""}),
    Case("an Exists toleration tolerates any value",
         make_pod(tolerations=[{"key": "dedicated", "operator": "Exists"}]),
         [make_node("gpu", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])],
         want={"gpu": ""}),
    Case("nodeSelector needs every label",
         make_pod(nodeSelector={"disk": "ssd"}),
         [make_node("ssd", labels={"disk": "ssd"}), make_node("hdd", labels={"disk": "hdd"})],
         want={"ssd": "", "hdd": "node(s) didn't match Pod's node affinity/selector"},
         unresolvable=True),
    Case("required node affinity with NotIn, Exists and Gt",
         make_pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
             "nodeSelectorTerms": [{"matchExpressions": [
                 {"key": "zone", "operator": "NotIn", "values": ["b"]},
                 {"key": "cores", "operator": "Gt", "values": ["8"]},
                 {"key": "ssd", "operator": "Exists"}]}]}}}),
         [make_node("good", labels={"zone": "a", "cores": "16", "ssd": ""}),
          make_node("zone-b", labels={"zone": "b", "cores": "16", "ssd": ""}),
          make_node("few", labels={"zone": "a", "cores": "4", "ssd": ""})],
         want={"good": "", "zone-b": "node(s) didn't match Pod's node affinity/selector",
               "few": "node(s) didn't match Pod's node affinity/selector"}),
    Case("matchFields selects by node name",
         make_pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
             "nodeSelectorTerms": [{"matchFields": [
                 {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}),
         [make_node("a"), make_node("b")],
         want={"a": "node(s) didn't match Pod's node affinity/selector", "b": ""}),
    Case("a hostPort in use on a node excludes it",
         make_pod(ports=[{"containerPort": 80, "hostPort": 8080}]),
         [make_node("a"), make_node("b")],
         pods=[make_pod("web", node="a", ports=[{"containerPort": 80, "hostPort": 8080}])],
         want={"a": "node(s) didn't have free ports for the requested pod ports", "b": ""}),
    Case("the same hostPort on another protocol is free",
         make_pod(ports=[{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]),
         [make_node("a")], pods=[make_pod("dns", node="a", ports=[{"containerPort": 53,
                                                                     "hostPort": 53}])],
         want={"a": ""}),
    Case("own anti-affinity keeps the pod off a zone that has a match",
         make_pod(labels={"app": "db"}, affinity=anti(ZONE, {"app": "db"})),
         [make_node("a1", labels={ZONE: "a"}), make_node("a2", labels={ZONE: "a"}),
          make_node("b1", labels={ZONE: "b"})],
         pods=[make_pod("db-0", labels={"app": "db"}, node="a1")],
         want={"a1": "node(s) didn't match pod anti-affinity rules",
               "a2": "node(s) didn't match pod anti-affinity rules", "b1": ""}),
    Case("existing pods' anti-affinity keeps matching pods away",
         make_pod(labels={"app": "web"}),
         [make_node("a"), make_node("b")],
         pods=[make_pod("loner", node="a", affinity=anti("kubernetes.io/hostname",
                                                          {"app": "web"}))],
         want={"a": "node(s) didn't satisfy existing pods anti-affinity rules", "b": ""}),
    Case("pod affinity needs a matching pod in the same zone",
         make_pod(affinity=affinity(ZONE, {"app": "cache"})),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         pods=[make_pod("cache", labels={"app": "cache"}, node="a1")],
         want={"a1": "", "b1": "node(s) didn't match pod affinity rules"}, unresolvable=True),
    Case("the first pod of a self-affine group may go anywhere",
         make_pod(labels={"app": "x"}, affinity=affinity(ZONE, {"app": "x"})),
         [make_node("a1", labels={ZONE: "a"})], want={"a1": ""}),
    Case("anti-affinity namespaces: a pod in another namespace does not count",
         make_pod(labels={"app": "db"}, affinity=anti("kubernetes.io/hostname", {"app": "db"})),
         [make_node("a")], pods=[make_pod("db-0", namespace="other", labels={"app": "db"},
                                          node="a")],
         want={"a": ""}),
    Case("namespaceSelector {} makes pods of every namespace count",
         make_pod(labels={"app": "db"}, affinity={"podAntiAffinity": {
             "requiredDuringSchedulingIgnoredDuringExecution": [{
                 "labelSelector": {"matchLabels": {"app": "db"}}, "namespaceSelector": {},
                 "topologyKey": "kubernetes.io/hostname"}]}}),
         [make_node("a")], pods=[make_pod("db-0", namespace="other", labels={"app": "db"},
                                          node="a")],
         want={"a": "node(s) didn't match pod anti-affinity rules"}),
    Case("spread maxSkew 1: the fuller zone is refused",
         make_pod(labels={"app": "w"}, topologySpreadConstraints=spread(ZONE, {"app": "w"})),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         pods=[make_pod("w-0", labels={"app": "w"}, node="a1")],
         want={"a1": "node(s) didn't match pod topology spread constraints", "b1": ""}),
    Case("spread: a node without the topology key can never fit",
         make_pod(labels={"app": "w"}, topologySpreadConstraints=spread(ZONE, {"app": "w"})),
         [make_node("a1", labels={ZONE: "a"}), make_node("bare")],
         want={"a1": "", "bare": "node(s) didn't match pod topology spread constraints "
                                 "(missing required label)"}),
    Case("spread minDomains: fewer zones than required count the minimum as 0",
         make_pod(labels={"app": "w"}, topologySpreadConstraints=spread(
             ZONE, {"app": "w"}, minDomains=3)),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         pods=[make_pod("w-0", labels={"app": "w"}, node="a1"),
               make_pod("w-1", labels={"app": "w"}, node="b1")],
         want={"a1": "node(s) didn't match pod topology spread constraints",
               "b1": "node(s) didn't match pod topology spread constraints"}),
    Case("spread nodeAffinityPolicy Honor ignores zones the pod may not use",
         make_pod(labels={"app": "w"}, nodeSelector={"pool": "x"},
                  topologySpreadConstraints=spread(ZONE, {"app": "w"})),
         [make_node("a1", labels={ZONE: "a", "pool": "x"}),
          make_node("b1", labels={ZONE: "b", "pool": "y"})],
         pods=[make_pod("w-0", labels={"app": "w"}, node="a1")],
         want={"a1": "", "b1": "node(s) didn't match Pod's node affinity/selector"}),
    Case("a missing claim makes the pod unschedulable everywhere",
         make_pod(**WITH_CLAIM), [make_node("a")],
         want={"a": 'persistentvolumeclaim "data" not found'}, unresolvable=True),
    Case("a bound local volume pins the pod to its node",
         make_pod(**WITH_CLAIM), [make_node("a"), make_node("b")],
         others={"persistentvolumeclaims": [claim("data", volume="pv-b")],
                 "persistentvolumes": [local_pv("pv-b", "b")]},
         want={"a": "node(s) had volume node affinity conflict", "b": ""}),
    Case("WaitForFirstConsumer picks nodes with an available matching volume",
         make_pod(**WITH_CLAIM), [make_node("a"), make_node("b")],
         others={"persistentvolumeclaims": [claim("data")], "storageclasses": [WFFC],
                 "persistentvolumes": [local_pv("pv-a", "a", size="500Mi"),
                                       local_pv("pv-b", "b")]},
         want={"a": "node(s) didn't find available persistent volumes to bind", "b": ""}),
    Case("an unbound Immediate claim waits for its volume",
         make_pod(**{"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "f"}}]}),
         [make_node("a")], others={"persistentvolumeclaims": [claim("f", sc="fast")],
                                   "storageclasses": [IMMEDIATE]},
         want={"a": "pod has unbound immediate PersistentVolumeClaims"}),
    Case("dynamic provisioning follows the class's allowed topologies",
         make_pod(**{"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "d"}}]}),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         others={"persistentvolumeclaims": [claim("d", sc="dyn")], "storageclasses": [DYNAMIC]},
         want={"a1": "", "b1": "node(s) didn't find available persistent volumes to bind"}),
    Case("a ReadWriteOncePod claim in use elsewhere blocks the pod",
         make_pod(**WITH_CLAIM), [make_node("a"), make_node("b")],
         pods=[make_pod("holder", node="a", **WITH_CLAIM)],
         others={"persistentvolumeclaims": [claim("data", volume="pv",
                                                  modes=("ReadWriteOncePod",))]},
         want={"a": "node has pod using PersistentVolumeClaim with the same name and "
                    "ReadWriteOncePod access mode",
               "b": "node has pod using PersistentVolumeClaim with the same name and "
                    "ReadWriteOncePod access mode"}),
    Case("the same GCE disk cannot be mounted twice on a node",
         make_pod(volumes=[{"name": "d", "gcePersistentDisk": {"pdName": "disk1"}}]),
         [make_node("a"), make_node("b")],
         pods=[make_pod("user", node="a",
                        volumes=[{"name": "d", "gcePersistentDisk": {"pdName": "disk1"}}])],
         want={"a": "node(s) had no available disk", "b": ""}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_filter(case: Case) -> None:
    cluster = Cluster(case.nodes, case.pods, **case.others)
    fw = cluster.framework()
    placement = fw.schedule(CycleState(), PodInfo.of(case.pod), cluster.cache.node_list(),
                            all_nodes=True)
    got = {n: ("" if s.ok else s.message) for n, s in placement.filtered.items()}
    assert got == case.want
    if case.unresolvable is not None:
        failed = [s for s in placement.filtered.values() if not s.ok]
        assert all((s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE) == case.unresolvable
                   for s in failed)
