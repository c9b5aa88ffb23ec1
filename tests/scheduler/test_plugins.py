"""Each plugin's decisions, table-driven, reasons asserted word for word."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.scheduler.framework import Code, CycleState
from kubelite.scheduler.nodeinfo import NodeInfo
from kubelite.scheduler.plugins import (
    BalancedAllocation,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
)
from kubelite.scheduler.scheduler import failure_message

Obj = dict[str, Any]


def make_node(name: str = "n1", *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
              labels: dict | None = None, taints: list | None = None,
              unschedulable: bool = False) -> Obj:
    alloc = {"cpu": cpu, "memory": memory, "pods": pods}
    spec: Obj = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec,
            "status": {"allocatable": alloc}}


def make_pod(name: str = "p", *, cpu: str | None = None, memory: str | None = None,
             tolerations: list | None = None, node_selector: dict | None = None,
             affinity: Obj | None = None, host_port: int | None = None,
             node_name: str | None = None) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: Obj = {"name": "c", "image": "busybox",
                      "resources": {"requests": requests} if requests else {}}
    if host_port:
        container["ports"] = [{"containerPort": 80, "hostPort": host_port, "protocol": "TCP"}]
    spec: Obj = {"containers": [container], "tolerations": tolerations or []}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def info(node: Obj, *pods: Obj) -> NodeInfo:
    ni = NodeInfo.of(node)
    for i, pod in enumerate(pods):
        ni.add_pod({**pod, "metadata": {"name": f"existing-{i}", "namespace": "default"}})
    return ni


@dataclass
class FilterCase:
    name: str
    plugin: Any
    pod: Obj
    node: NodeInfo
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = field(default=())


REQUIRED_ZONE_A = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}

FILTER_CASES = [
    FilterCase("a pod that fits in free cpu and memory passes", NodeResourcesFit(),
               make_pod(cpu="1", memory="1Gi"), info(make_node())),
    FilterCase("a pod asking more cpu than is left is refused", NodeResourcesFit(),
               make_pod(cpu="2"), info(make_node(cpu="4"), make_pod(cpu="3")),
               Code.UNSCHEDULABLE, ("Insufficient cpu",)),
    FilterCase("cpu and memory shortages are both reported", NodeResourcesFit(),
               make_pod(cpu="8", memory="16Gi"), info(make_node()),
               Code.UNSCHEDULABLE, ("Insufficient cpu", "Insufficient memory")),
    FilterCase("a full node refuses by pod count", NodeResourcesFit(), make_pod(),
               info(make_node(pods="1"), make_pod()), Code.UNSCHEDULABLE, ("Too many pods",)),
    FilterCase("a pod naming another node is unresolvable here", NodeName(),
               make_pod(node_name="n2"), info(make_node("n1")),
               Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
               ("node(s) didn't match the requested node name",)),
    FilterCase("a cordoned node refuses pods", NodeUnschedulable(), make_pod(),
               info(make_node(unschedulable=True)), Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
               ("node(s) were unschedulable",)),
    FilterCase("a cordoned node takes pods tolerating the unschedulable taint",
               NodeUnschedulable(),
               make_pod(tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                      "operator": "Exists", "effect": "NoSchedule"}]),
               info(make_node(unschedulable=True))),
    FilterCase("an untolerated NoSchedule taint refuses", TaintToleration(), make_pod(),
               info(make_node(taints=[{"key": "dedicated", "value": "gpu",
                                       "effect": "NoSchedule"}])),
               Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
               ("node(s) had untolerated taint {dedicated: gpu}",)),
    FilterCase("a matching toleration lets the pod in", TaintToleration(),
               make_pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                      "effect": "NoSchedule"}]),
               info(make_node(taints=[{"key": "dedicated", "value": "gpu",
                                       "effect": "NoSchedule"}]))),
    FilterCase("PreferNoSchedule taints never filter", TaintToleration(), make_pod(),
               info(make_node(taints=[{"key": "x", "effect": "PreferNoSchedule"}]))),
    FilterCase("a nodeSelector that the labels miss refuses", NodeAffinity(),
               make_pod(node_selector={"disk": "ssd"}), info(make_node(labels={"disk": "hdd"})),
               Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
               ("node(s) didn't match Pod's node affinity/selector",)),
    FilterCase("required node affinity In matches", NodeAffinity(),
               make_pod(affinity=REQUIRED_ZONE_A), info(make_node(labels={"zone": "a"}))),
    FilterCase("required node affinity In refuses another zone", NodeAffinity(),
               make_pod(affinity=REQUIRED_ZONE_A), info(make_node(labels={"zone": "b"})),
               Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
               ("node(s) didn't match Pod's node affinity/selector",)),
    FilterCase("a taken hostPort refuses", NodePorts(), make_pod(host_port=8080),
               info(make_node(), make_pod(host_port=8080)), Code.UNSCHEDULABLE,
               ("node(s) didn't have free ports for the requested pod ports",)),
    FilterCase("another hostPort is free", NodePorts(), make_pod(host_port=8081),
               info(make_node(), make_pod(host_port=8080))),
]


@pytest.mark.parametrize("case", FILTER_CASES, ids=lambda c: c.name)
def test_filter(case: FilterCase) -> None:
    state = CycleState()
    if hasattr(case.plugin, "pre_filter"):
        case.plugin.pre_filter(state, case.pod)
    status = case.plugin.filter(state, case.pod, case.node)
    assert status.code is case.code
    assert status.reasons == case.reasons
    if case.code is not Code.SUCCESS:
        assert status.plugin == case.plugin.name


def _best(plugin: Any, pod: Obj, nodes: list[NodeInfo]) -> str:
    state = CycleState()
    scores = {n.name: plugin.score(state, pod, n) for n in nodes}
    if hasattr(plugin, "normalize_scores"):
        plugin.normalize_scores(state, pod, scores)
    return max(scores, key=lambda k: scores[k])


def test_least_allocated_prefers_the_emptier_node() -> None:
    busy = info(make_node("busy"), make_pod(cpu="3"))
    idle = info(make_node("idle"))
    assert _best(NodeResourcesFit(), make_pod(cpu="500m"), [busy, idle]) == "idle"


def test_pods_without_requests_still_spread() -> None:
    crowded = info(make_node("crowded"), make_pod(), make_pod(), make_pod())
    empty = info(make_node("empty"))
    assert _best(NodeResourcesFit(), make_pod(), [crowded, empty]) == "empty"


def test_balanced_allocation_prefers_even_use() -> None:
    cpu_heavy = info(make_node("cpu-heavy"), make_pod(cpu="3", memory="100Mi"))
    even = info(make_node("even"), make_pod(cpu="2", memory="4Gi"))
    assert _best(BalancedAllocation(), make_pod(cpu="100m", memory="100Mi"),
                 [cpu_heavy, even]) == "even"


def test_preferred_node_affinity_scores_by_weight() -> None:
    pod = make_pod(affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 50, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "Exists"}]}}]}})
    nodes = [info(make_node("a", labels={"zone": "a"})),
             info(make_node("ssd", labels={"disk": "ssd"}))]
    assert _best(NodeAffinity(), pod, nodes) == "ssd"


def test_prefer_no_schedule_taints_score_lower() -> None:
    tainted = info(make_node("tainted", taints=[{"key": "x", "effect": "PreferNoSchedule"}]))
    clean = info(make_node("clean"))
    assert _best(TaintToleration(), make_pod(), [tainted, clean]) == "clean"


def test_failure_message_counts_and_sorts_reasons_like_kube_scheduler() -> None:
    from kubelite.scheduler.framework import Status

    filtered = {
        "a": Status.unschedulable("NodeResourcesFit", "Insufficient cpu"),
        "b": Status.unschedulable("TaintToleration",
                                  "node(s) had untolerated taint {dedicated: gpu}"),
        "c": Status.unschedulable("TaintToleration",
                                  "node(s) had untolerated taint {dedicated: gpu}"),
    }
    assert failure_message(3, filtered) == (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) had untolerated taint {dedicated: gpu}.")
