"""Score plugins: the order they put feasible nodes in, and the cycle's choice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelite.scheduler.config import Profile
from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import PodInfo
from kubelite.scheduler.runtime import num_feasible_nodes_to_find
from tests.scheduler.builders import Cluster, make_node, make_pod

Obj = dict[str, Any]
ZONE = "topology.kubernetes.io/zone"
MB = 1024 * 1024


@dataclass
class Case:
    id: str
    plugin: str
    pod: Obj
    nodes: list[Obj]
    pods: list[Obj] = field(default_factory=list)
    # nodes from best to worst by that plugin's normalised score
    order: list[str] = field(default_factory=list)
    args: Obj = field(default_factory=dict)
    others: dict[str, list[Obj]] = field(default_factory=dict)


def preferred(weight: int, labels: dict[str, str]) -> Obj:
    return {"preference": {"matchExpressions": [
        {"key": k, "operator": "In", "values": [v]} for k, v in labels.items()]},
        "weight": weight}


CASES = [
    Case("LeastAllocated prefers the emptier node", "NodeResourcesFit", make_pod(cpu="1"),
         [make_node("busy"), make_node("idle")], [make_pod("x", cpu="2", node="busy")],
         ["idle", "busy"]),
    Case("MostAllocated packs onto the fuller node", "NodeResourcesFit", make_pod(cpu="1"),
         [make_node("busy"), make_node("idle")], [make_pod("x", cpu="2", node="busy")],
         ["busy", "idle"], args={"scoringStrategy": {"type": "MostAllocated"}}),
    Case("RequestedToCapacityRatio follows its shape (here: pack)", "NodeResourcesFit",
         make_pod(cpu="1"), [make_node("idle"), make_node("busy")],
         [make_pod("x", cpu="2", node="busy")], ["busy", "idle"],
         args={"scoringStrategy": {"type": "RequestedToCapacityRatio",
                                   "resources": [{"name": "cpu", "weight": 1}],
                                   "requestedToCapacityRatio": {"shape": [
                                       {"utilization": 0, "score": 0},
                                       {"utilization": 100, "score": 10}]}}}),
    Case("BalancedAllocation prefers even cpu and memory use",
         "NodeResourcesBalancedAllocation", make_pod(cpu="1", memory="2Gi"),
         [make_node("skewed"), make_node("even")],
         [make_pod("x", cpu="3", node="skewed"),
          make_pod("y", cpu="1", memory="2Gi", node="even")], ["even", "skewed"]),
    Case("PreferNoSchedule taints lower a node", "TaintToleration", make_pod(),
         [make_node("tainted", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
          make_node("clean")], order=["clean", "tainted"]),
    Case("preferred node affinity by weight", "NodeAffinity",
         make_pod(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
             preferred(10, {"disk": "ssd"}), preferred(50, {"gpu": "yes"})]}}),
         [make_node("ssd", labels={"disk": "ssd"}), make_node("gpu", labels={"gpu": "yes"}),
          make_node("plain")], order=["gpu", "ssd", "plain"]),
    Case("preferred pod affinity draws the pod to its peers' zone", "InterPodAffinity",
         make_pod(affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
             {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                                                 "topologyKey": ZONE}}]}}),
         [make_node("b1", labels={ZONE: "b"}), make_node("a1", labels={ZONE: "a"})],
         [make_pod("db", labels={"app": "db"}, node="a1")], ["a1", "b1"]),
    Case("preferred anti-affinity pushes the pod away", "InterPodAffinity",
         make_pod(affinity={"podAntiAffinity": {
             "preferredDuringSchedulingIgnoredDuringExecution": [
                 {"weight": 100, "podAffinityTerm": {
                     "labelSelector": {"matchLabels": {"app": "db"}},
                     "topologyKey": "kubernetes.io/hostname"}}]}}),
         [make_node("a"), make_node("b")],
         [make_pod("db", labels={"app": "db"}, node="a")], ["b", "a"]),
    Case("ScheduleAnyway spread prefers the emptier zone", "PodTopologySpread",
         make_pod(labels={"app": "w"}, topologySpreadConstraints=[{
             "maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app": "w"}}}]),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         [make_pod("w-0", labels={"app": "w"}, node="a1")], ["b1", "a1"]),
    Case("default spread applies to pods a Service selects", "PodTopologySpread",
         make_pod(labels={"app": "w"}),
         [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})],
         [make_pod("w-0", labels={"app": "w"}, node="a1"),
          make_pod("w-1", labels={"app": "w"}, node="a1")], ["b1", "a1"],
         others={"services": [{"metadata": {"name": "w", "namespace": "default"},
                               "spec": {"selector": {"app": "w"}}}]}),
    Case("ImageLocality prefers the node holding the image", "ImageLocality",
         make_pod(image="big:1"),
         [make_node("cold"), make_node("warm", images=[{"names": ["big:1"],
                                                        "sizeBytes": 800 * MB}]),
          make_node("warm2", images=[{"names": ["big:1"], "sizeBytes": 800 * MB}])],
         order=["warm", "cold"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_score_order(case: Case) -> None:
    cluster = Cluster(case.nodes, case.pods, **case.others)
    profile = Profile(args={case.plugin: case.args}) if case.args else None
    fw = cluster.framework(profile)
    placement = fw.schedule(CycleState(), PodInfo.of(case.pod), cluster.cache.node_list(),
                            all_nodes=True)
    scores = placement.scores[case.plugin]
    values = [scores[n] for n in case.order]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values), scores


def test_the_choice_is_the_best_weighted_total() -> None:
    cluster = Cluster([make_node("busy"), make_node("idle"), make_node("full", cpu="1")],
                      [make_pod("x", cpu="2", node="busy")])
    placement = cluster.framework().schedule(CycleState(), PodInfo.of(make_pod(cpu="1500m")),
                                             cluster.cache.node_list())
    assert placement.chosen == "idle"
    assert placement.filtered["full"].message == "Insufficient cpu"
    assert placement.totals["idle"] > placement.totals["busy"]


def test_plugins_with_nothing_to_do_are_skipped() -> None:
    cluster = Cluster([make_node("a"), make_node("b")])
    placement = cluster.framework().schedule(CycleState(), PodInfo.of(make_pod(cpu="1")),
                                             cluster.cache.node_list())
    assert {"NodeAffinity", "NodePorts", "InterPodAffinity", "PodTopologySpread",
            "VolumeBinding"} <= set(placement.skipped_filters)
    assert set(placement.scores) == {"NodeResourcesFit", "NodeResourcesBalancedAllocation",
                                     "TaintToleration"}


@pytest.mark.parametrize(("nodes", "percentage", "want"), [
    (50, 0, 50), (100, 0, 100), (500, 0, 230), (5000, 0, 500), (20000, 0, 1000),
    (5000, 50, 2500), (300, 10, 100),
], ids=["small clusters: all", "100 nodes: all", "500: 46%", "5000: 10%", "large: 5% floor",
        "explicit percentage", "at least 100"])
def test_adaptive_number_of_nodes_to_find(nodes: int, percentage: int, want: int) -> None:
    assert num_feasible_nodes_to_find(nodes, percentage) == want


def test_large_cluster_stops_after_enough_feasible_nodes_and_rotates() -> None:
    cluster = Cluster([make_node(f"n{i}") for i in range(1000)])
    fw = cluster.framework()
    nodes = cluster.cache.node_list()
    first = fw.schedule(CycleState(), PodInfo.of(make_pod(cpu="1")), nodes)
    assert len(first.feasible) == 420  # 50 - 1000/125 = 42%
    second = fw.schedule(CycleState(), PodInfo.of(make_pod(cpu="1")), nodes, start=420)
    assert second.feasible[0] == "n420"


def test_default_spread_takes_services_of_the_pods_namespace_only() -> None:
    nodes = [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"})]
    pods = [make_pod("w-0", labels={"app": "w"}, node="a1")]
    elsewhere = {"metadata": {"name": "w", "namespace": "other"}, "spec": {"selector": {"app": "w"}}}
    cluster = Cluster(nodes, pods, services=[elsewhere])
    placement = cluster.framework().schedule(CycleState(), PodInfo.of(make_pod(labels={"app": "w"})),
                                             cluster.cache.node_list(), all_nodes=True)
    assert "PodTopologySpread" in placement.skipped_scores
    here = {**elsewhere, "metadata": {"name": "w", "namespace": "default"}}
    cluster = Cluster(nodes, pods, services=[elsewhere, here])
    placement = cluster.framework().schedule(CycleState(), PodInfo.of(make_pod(labels={"app": "w"})),
                                             cluster.cache.node_list(), all_nodes=True)
    assert placement.scores["PodTopologySpread"]["b1"] > placement.scores["PodTopologySpread"]["a1"]


def spread_scores(args: dict | None = None) -> dict[str, int]:
    """Normalised PodTopologySpread scores of a Service's pod on a1 (zone a, 3 of its
    pods), b1 (zone b) and x (no zone label), the cluster defaults applying."""
    nodes = [make_node("a1", labels={ZONE: "a"}), make_node("b1", labels={ZONE: "b"}),
             make_node("x")]
    pods = [make_pod(f"w-{i}", labels={"app": "w"}, node="a1") for i in range(3)]
    service = {"metadata": {"name": "w", "namespace": "default"}, "spec": {"selector": {"app": "w"}}}
    cluster = Cluster(nodes, pods, services=[service])
    fw = cluster.framework(Profile(args={"PodTopologySpread": args}) if args else None)
    placement = fw.schedule(CycleState(), PodInfo.of(make_pod(labels={"app": "w"})),
                            cluster.cache.node_list(), all_nodes=True)
    return placement.scores["PodTopologySpread"]


def test_system_default_spread_scores_as_kube_scheduler() -> None:
    # Weights: hostname log(3 + 2); zone log(3 + 2), x's missing zone counting as the
    # domain "". Raw: a1 round(3 log 5 + 2 + 3 log 5 + 4) = 16, b1 6, x 2 (hostname only).
    assert spread_scores() == {"a1": 100 * (18 - 16) // 16, "b1": 100 * (18 - 6) // 16, "x": 100}


def test_configured_default_spread_ignores_nodes_without_every_label() -> None:
    # Configured defaults need every label: x is ignored. Weights log(2 + 2); raw a1
    # round(6 log 4 + 6) = 14, b1 6.
    constraints = [{"maxSkew": 3, "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway"},
                   {"maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"}]
    scores = spread_scores({"defaultingType": "List", "defaultConstraints": constraints})
    assert scores == {"a1": 100 * (20 - 14) // 14, "b1": 100, "x": 0}
