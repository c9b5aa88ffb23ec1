"""The equivalence cache: reused per-node results must be exactly what a fresh cycle
computes, and a node's change (a pod assumed there) must invalidate its result."""

from __future__ import annotations

from kubelite.scheduler.equivalence import EquivalenceCache
from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import PodInfo
from kubelite.scheduler.runtime import Placement
from tests.scheduler.builders import Cluster, make_node, make_pod


def nodes(count: int) -> list[dict]:
    return [make_node(f"n{i}", cpu="2", memory="4Gi",
                      taints=[{"key": "soft", "effect": "PreferNoSchedule"}] if i % 3 == 0
                      else None)
            for i in range(count)]


def schedule(cluster: Cluster, fw, pod: dict, *, fresh: bool) -> Placement:
    if fresh:
        fw.equivalence = EquivalenceCache()
    return fw.schedule(CycleState(), PodInfo.of(pod), cluster.cache.node_list())


def test_reused_results_equal_fresh_ones_through_a_burst_of_alike_pods() -> None:
    cached, fresh = Cluster(nodes(12)), Cluster(nodes(12))
    fw_cached, fw_fresh = cached.framework(), fresh.framework()
    for i in range(30):
        pod = make_pod(f"p{i}", cpu="700m", memory="300Mi")
        a = schedule(cached, fw_cached, pod, fresh=False)
        b = schedule(fresh, fw_fresh, pod, fresh=True)
        assert a.filtered == b.filtered
        assert a.totals == b.totals
        assert a.scores == b.scores
        if a.chosen is None:
            assert b.chosen is None
            continue
        for cluster in (cached, fresh):
            cluster.cache.assume(PodInfo.of(pod), a.chosen)
    assert len(fw_cached.equivalence) == 1


def test_a_pod_assumed_on_a_node_changes_that_nodes_answer() -> None:
    cluster = Cluster([make_node("only", cpu="1")])
    fw = cluster.framework()
    first = schedule(cluster, fw, make_pod("a", cpu="600m"), fresh=False)
    assert first.chosen == "only"
    cluster.cache.assume(PodInfo.of(make_pod("a", cpu="600m")), "only")
    second = schedule(cluster, fw, make_pod("b", cpu="600m"), fresh=False)
    assert second.chosen is None
    assert second.filtered["only"].reasons == ("Insufficient cpu",)


def test_pods_with_inter_pod_affinity_are_computed_afresh() -> None:
    cluster = Cluster(nodes(3))
    fw = cluster.framework()
    term = {"labelSelector": {"matchLabels": {"app": "x"}},
            "topologyKey": "kubernetes.io/hostname"}
    pod = make_pod("a", labels={"app": "x"},
                   affinity={"podAntiAffinity": {
                       "requiredDuringSchedulingIgnoredDuringExecution": [term]}})
    cluster.cache.assume(PodInfo.of(make_pod("other", labels={"app": "x"})), "n1")
    placement = schedule(cluster, fw, pod, fresh=False)
    assert placement.filtered["n1"].plugin == "InterPodAffinity"
    assert len(fw.equivalence) == 0
