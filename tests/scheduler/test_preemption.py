"""DefaultPreemption and the FailedScheduling message built around it."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import PodInfo, selector_of
from kubelite.scheduler.runtime import fit_error
from tests.scheduler.builders import Cluster, make_node, make_pod

Obj = dict[str, Any]


async def run(cluster: Cluster, pod: Obj) -> tuple[str, str | None]:
    fw = cluster.framework()
    state = CycleState()
    info = PodInfo.of(pod)
    placement = fw.schedule(state, info, cluster.cache.node_list())
    assert placement.chosen is None
    await fw.run_post_filter(state, info, placement)
    return fit_error(placement), placement.nominated


async def test_message_when_nothing_can_be_preempted() -> None:
    cluster = Cluster([make_node("a", cpu="1"),
                       make_node("b", taints=[{"key": "dedicated", "value": "gpu",
                                               "effect": "NoSchedule"}]),
                       make_node("c", taints=[{"key": "dedicated", "value": "gpu",
                                               "effect": "NoSchedule"}])])
    message, nominated = await run(cluster, make_pod(cpu="2"))
    assert nominated is None
    assert message == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint "
        "{dedicated: gpu}. preemption: 0/3 nodes are available: 1 No preemption victims "
        "found for incoming pod, 2 Preemption is not helpful for scheduling..")


async def test_preemption_policy_never() -> None:
    cluster = Cluster([make_node("a", cpu="1")], [make_pod("low", cpu="1", node="a",
                                                          priority=0)])
    message, nominated = await run(cluster, make_pod(cpu="1", priority=10,
                                                     preemptionPolicy="Never"))
    assert nominated is None
    assert message == ("0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible "
                       "due to preemptionPolicy=Never..")


async def test_removing_victims_that_do_not_help_reports_the_filter_reason() -> None:
    cluster = Cluster([make_node("a", cpu="2")], [make_pod("low", cpu="1", node="a",
                                                          priority=0)])
    message, nominated = await run(cluster, make_pod(cpu="3", priority=10))
    assert nominated is None
    assert message.endswith("preemption: 0/1 nodes are available: 1 Insufficient cpu..")


async def test_fewest_and_cheapest_victims_win() -> None:
    cluster = Cluster(
        [make_node("two-small", cpu="2"), make_node("one-big", cpu="2"),
         make_node("important", cpu="2")],
        [make_pod("s1", cpu="1", node="two-small", priority=1),
         make_pod("s2", cpu="1", node="two-small", priority=1),
         make_pod("big", cpu="2", node="one-big", priority=1),
         make_pod("vip", cpu="2", node="important", priority=5)])
    fw = cluster.framework()
    state = CycleState()
    info = PodInfo.of(make_pod(cpu="2", priority=10))
    placement = fw.schedule(state, info, cluster.cache.node_list())
    preemption = fw.plugin("DefaultPreemption")
    candidates, _ = preemption.find_candidates(state, info, cluster.cache.node_list(),
                                               placement.filtered)
    victims = {c.node: sorted(v.name for v in c.victims) for c in candidates}
    assert victims == {"two-small": ["s1", "s2"], "one-big": ["big"], "important": ["vip"]}
    await fw.run_post_filter(state, info, placement)
    assert placement.nominated == "one-big"


async def test_only_as_many_victims_as_needed_and_pdbs_respected() -> None:
    pods = [make_pod(f"v{i}", cpu="1", node="a", priority=i, labels={"app": f"v{i}"})
            for i in range(4)]
    pdb = {"metadata": {"name": "keep-v0", "namespace": "default"},
           "spec": {"selector": {"matchLabels": {"app": "v0"}}},
           "status": {"disruptionsAllowed": 0}}
    cluster = Cluster([make_node("a", cpu="4")], pods, poddisruptionbudgets=[pdb])
    fw = cluster.framework()
    state = CycleState()
    info = PodInfo.of(make_pod(cpu="2", priority=10))
    fw.schedule(state, info, cluster.cache.node_list())  # PreFilter state for the victims
    victims, violations, status = fw.plugin("DefaultPreemption").select_victims(
        state, info, cluster.node("a"), [("default", selector_of(pdb["spec"]["selector"]), 0)])
    assert status.ok and violations == 0
    # v0 is protected by its budget, v3 is the most important: v1 and v2 go.
    assert sorted(v.name for v in victims) == ["v1", "v2"]
