"""Class tables: a pod of a node-local class placed from its table must land where
the full cycle would put it (same window of examined nodes, a node with the best
total), and the table must fall back to the full cycle whenever it cannot know."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from kubelite.scheduler import cache as cache_module
from kubelite.scheduler.classtable import best
from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import PodInfo
from kubelite.scheduler.runtime import Framework, Placement
from tests.scheduler.builders import Cluster, make_node, make_pod


def mixed_nodes(count: int, seed: int = 7) -> list[dict]:
    """Nodes of several sizes, a few unschedulable or tainted NoSchedule."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        roll = rng.random()
        out.append(make_node(
            f"n{i}", cpu=str(rng.choice([2, 4, 8, 16])), memory=f"{rng.choice([4, 8, 32])}Gi",
            unschedulable=roll < 0.05,
            taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
            if 0.05 <= roll < 0.1 else None))
    return out


def both(cluster: Cluster, table_fw: Framework, full_fw: Framework, pod: dict,
         start: int) -> tuple[Placement, Placement]:
    nodes = cluster.cache.node_list()
    info = PodInfo.of(pod)
    fast = table_fw.schedule(CycleState(), info, nodes, start=start, cache=cluster.cache)
    full = full_fw.schedule(CycleState(), info, nodes, start=start)
    return fast, full


def assert_same_choice(fast: Placement, full: Placement) -> None:
    assert fast.examined == full.examined
    if full.chosen is None:
        assert fast.chosen is None
        return
    if not full.totals:  # one feasible node, taken without scoring
        assert fast.chosen == full.chosen
        return
    top = max(full.totals.values())
    assert full.totals[fast.chosen] == top, (fast.chosen, full.totals[fast.chosen], top)


def test_table_choices_are_the_full_cycles_through_a_burst() -> None:
    # 300 nodes: the cycle examines only part of them (48%), from a moving start.
    cluster = Cluster(mixed_nodes(300))
    table_fw, full_fw = cluster.framework(), cluster.framework()
    start, answered = 0, 0
    for i in range(400):
        pod = make_pod(f"p{i}", cpu="500m", memory="256Mi") if i % 7 else \
            make_pod(f"p{i}", cpu="1500m", memory="1Gi")
        fast, full = both(cluster, table_fw, full_fw, pod, start)
        assert_same_choice(fast, full)
        answered += fast.looked_at >= 0
        start = (start + fast.examined) % 300
        if fast.chosen is not None:
            cluster.cache.assume(PodInfo.of(pod), fast.chosen)
    # both classes were answered from their tables, not by the full cycle
    assert answered == 400
    assert len(table_fw.tables) == 2


def test_a_bound_pod_replacing_its_assumption_and_a_removed_pod_are_seen() -> None:
    cluster = Cluster([make_node(f"n{i}", cpu="4") for i in range(150)])
    table_fw, full_fw = cluster.framework(), cluster.framework()
    pods = [make_pod(f"p{i}", cpu="1") for i in range(300)]
    for pod in pods:
        fast, full = both(cluster, table_fw, full_fw, pod, 0)
        assert_same_choice(fast, full)
        cluster.cache.assume(PodInfo.of(pod), fast.chosen)
    # the informer's bound version replaces assumptions; deletions free nodes
    for pod in pods[:100]:
        node = cluster.cache.node_of(f"default/{pod['metadata']['name']}")
        cluster.cache.add_pod(PodInfo.of({**pod, "spec": {**pod["spec"], "nodeName": node}}),
                              node)
    for pod in pods[100:160]:
        cluster.cache.remove_pod(f"default/{pod['metadata']['name']}")
    for i in range(100):
        fast, full = both(cluster, table_fw, full_fw, make_pod(f"q{i}", cpu="1"), 0)
        assert fast.looked_at >= 0
        assert_same_choice(fast, full)
        cluster.cache.assume(PodInfo.of(make_pod(f"q{i}", cpu="1")), fast.chosen)


def test_added_and_removed_nodes_rebuild_the_table() -> None:
    # fewer than 100 nodes: every cycle examines them all, the new one included
    cluster = Cluster([make_node(f"n{i}", cpu="2") for i in range(60)])
    table_fw, full_fw = cluster.framework(), cluster.framework()
    for i in range(50):
        pod = make_pod(f"p{i}", cpu="1")
        fast, _ = both(cluster, table_fw, full_fw, pod, 0)
        cluster.cache.assume(PodInfo.of(pod), fast.chosen)
    cluster.cache.set_node(make_node("big", cpu="64"))
    cluster.cache.remove_node("n3")
    fast, full = both(cluster, table_fw, full_fw, make_pod("late", cpu="1"), 0)
    assert_same_choice(fast, full)
    assert fast.chosen == "big"


def test_a_log_that_dropped_changes_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_CHANGES", 10)
    cluster = Cluster([make_node(f"n{i}", cpu="4") for i in range(110)])
    table_fw, full_fw = cluster.framework(), cluster.framework()
    both(cluster, table_fw, full_fw, make_pod("first", cpu="1"), 0)
    # another class moves the log on by more than it keeps
    for i in range(40):
        cluster.cache.assume(PodInfo.of(make_pod(f"o{i}", cpu="3")), f"n{i}")
    fast, full = both(cluster, table_fw, full_fw, make_pod("second", cpu="1"), 0)
    assert fast.looked_at >= 0
    assert_same_choice(fast, full)
    assert cluster.node(fast.chosen).cpu_requested == 0


def test_scores_that_normalise_differently_take_the_full_cycle() -> None:
    nodes = [make_node(f"n{i}", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]
                       if i % 2 else None) for i in range(120)]
    cluster = Cluster(nodes)
    table_fw, full_fw = cluster.framework(), cluster.framework()
    fast, full = both(cluster, table_fw, full_fw, make_pod("p", cpu="1"), 0)
    assert fast.looked_at == -1
    assert fast.filtered == full.filtered
    assert_same_choice(fast, full)


def test_no_fitting_node_takes_the_full_cycle_for_its_reasons() -> None:
    cluster = Cluster([make_node(f"n{i}", cpu="1") for i in range(120)])
    table_fw = cluster.framework()
    placement = table_fw.schedule(CycleState(), PodInfo.of(make_pod("big", cpu="2")),
                                  cluster.cache.node_list(), cache=cluster.cache)
    assert placement.chosen is None
    assert len(placement.filtered) == 120
    assert {s.reasons for s in placement.filtered.values()} == {("Insufficient cpu",)}


ZONE = "topology.kubernetes.io/zone"
REPLICASET = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid"},
              "spec": {"selector": {"matchLabels": {"app": "web"}}}}


def owned_pod(name: str) -> dict:
    pod = make_pod(name, cpu="250m", labels={"app": "web"})
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                           "name": "web", "uid": "rs-uid", "controller": True}]
    return pod


def spread_pod(name: str) -> dict:
    return make_pod(name, cpu="250m", labels={"app": "s"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "s"}}},
        {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
         "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "s"}}}])


def hard_spread_pod(key: str, skew: int) -> Callable[[str], dict]:
    def make(name: str) -> dict:
        return make_pod(name, cpu="250m", labels={"app": "h"}, topologySpreadConstraints=[
            {"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "h"}}}])
    return make


def anti_affinity_pod(name: str) -> dict:
    term = {"labelSelector": {"matchLabels": {"app": "x"}},
            "topologyKey": "kubernetes.io/hostname"}
    return make_pod(name, cpu="250m", labels={"app": "x"}, affinity={"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [term]}})


def preferred_affinity_pod(name: str) -> dict:
    term = {"labelSelector": {"matchLabels": {"app": "y"}}, "topologyKey": ZONE}
    return make_pod(name, cpu="250m", labels={"app": "y"}, affinity={"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": term}]}})


KINDS = {"default-spread": owned_pod, "own-spread": spread_pod,
         "hard-zone-spread": hard_spread_pod(ZONE, 2),
         "hard-hostname-spread": hard_spread_pod("kubernetes.io/hostname", 1),
         "anti-affinity": anti_affinity_pod, "preferred-affinity": preferred_affinity_pod}


@pytest.mark.parametrize("kind", KINDS)
def test_pods_with_cluster_wide_plugins_land_where_the_full_cycle_puts_them(kind: str) -> None:
    """The table answers the node-local plugins; spread, affinity and the like run on
    its window, and the pod must land where the full cycle would put it."""
    make = KINDS[kind]
    # 300 nodes in 3 zones (a few without a zone label), pods already on some.
    rng = random.Random(3)
    nodes = [make_node(f"n{i}", cpu=str(rng.choice([2, 4, 8])),
                       labels={} if i % 50 == 7 else {ZONE: f"z{i % 3}"}) for i in range(300)]
    running = [{**make(f"old{i}"), "spec": {**make(f"old{i}")["spec"], "nodeName": f"n{i * 7}"}}
               for i in range(30)]
    cluster = Cluster(nodes, running, replicasets=[REPLICASET])
    table_fw, full_fw = cluster.framework(), cluster.framework()
    start, answered, placed = 0, 0, 0
    for i in range(250):
        pod = make(f"p{i}")
        fast, full = both(cluster, table_fw, full_fw, pod, start)
        assert_same_choice(fast, full)
        if full.chosen is None:
            continue
        answered += fast.looked_at >= 0
        placed += 1
        start = (start + fast.examined) % 300
        cluster.cache.assume(PodInfo.of(pod), fast.chosen)
        if i % 40 == 39:  # pods go away and a node changes zone
            cluster.cache.remove_pod(f"default/p{i - 20}")
            cluster.cache.set_node(make_node(f"n{i}", cpu="8", labels={ZONE: "z9"}))
    assert answered == placed > 100


@pytest.mark.parametrize("totals, start, span", [
    ([3, 9, 1, 9, 9, 2, 9, 0], 6, 5),  # wraps around: window 6, 7, 0, 1, 2
    ([4, 4, 4, 4, 4, 4], 2, 4),  # every node ties
    ([1, 8, 2, 3], 0, 4),  # one best
])
def test_best_picks_each_tied_node_of_the_window_alike(totals: list[int], start: int,
                                                        span: int) -> None:
    window = [(start + i) % len(totals) for i in range(span)]
    top = max(totals[i] for i in window)
    tied = {i for i in window if totals[i] == top}
    random.seed(11)
    picks = [best(totals, start, span) for _ in range(3000)]
    assert set(picks) == tied
    for position in tied:
        assert abs(picks.count(position) - 3000 / len(tied)) < 3000 / len(tied) * 0.15
