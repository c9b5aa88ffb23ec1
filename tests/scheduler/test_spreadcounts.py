"""Spread tallies: the counts kept from the cache's change log must always equal a
count over every node and pod, through assumes, bindings, removals, deletions,
label changes, added and removed nodes, and a log that dropped changes."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from kubelite.api.selectors import LabelSelector
from kubelite.scheduler import cache as cache_module
from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import PodInfo
from kubelite.scheduler.plugins.podtopologyspread import Constraint, _count
from kubelite.scheduler.spreadcounts import SpreadTallies
from tests.scheduler.builders import Cluster, make_node, make_pod

ZONE = "topology.kubernetes.io/zone"


def constraint(key: str, *, honor_taints: bool = False) -> Constraint:
    return Constraint(max_skew=1, key=key, hard=False,
                      selector=LabelSelector.from_set({"app": "a"}), min_domains=1,
                      honor_affinity=True, honor_taints=honor_taints)


def brute(cluster: Cluster, c: Constraint, pod: PodInfo, required: tuple[str, ...]
          ) -> tuple[dict[str, int], dict[str, int]]:
    sums: Counter[str] = Counter()
    per_node = {}
    for node in cluster.cache.node_list():
        if all(k in node.labels for k in required) and c.counts_node(pod, node):
            found = _count(c, pod, node)
            sums[node.labels[c.key]] += found
            per_node[node.name] = found
    return dict(sums), per_node


def check(tallies: SpreadTallies, cluster: Cluster, c: Constraint, pod: PodInfo,
          required: tuple[str, ...] = ()) -> None:
    tally = tallies.tally(("k", c.key, c.honor_taints, required), cluster.cache, c.key,
                          lambda n: all(k in n.labels for k in required)
                          and c.counts_node(pod, n),
                          lambda n: _count(c, pod, n))
    sums, per_node = brute(cluster, c, pod, required)
    assert tally.sums == sums
    names = [n.name for n in cluster.cache.node_list()]
    assert {name: found for name, found in zip(names, tally.counts_on(names), strict=True)
            if found is not None} == per_node


def node(i: int, rng: random.Random) -> dict:
    labels = {} if rng.random() < 0.1 else {ZONE: f"z{rng.randrange(3)}"}
    taints = [{"key": "t", "effect": "NoSchedule"}] if rng.random() < 0.1 else None
    return make_node(f"n{i}", labels=labels, taints=taints)


@pytest.mark.parametrize("seed", range(4))
def test_tallies_match_a_full_count_through_every_change(seed: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_CHANGES", 40)
    rng = random.Random(seed)
    cluster = Cluster([node(i, rng) for i in range(60)])
    tallies = SpreadTallies()
    incoming = PodInfo.of(make_pod("incoming", labels={"app": "a"}))
    constraints = [constraint(ZONE), constraint("kubernetes.io/hostname"),
                   constraint(ZONE, honor_taints=True)]
    placed: list[str] = []
    for step in range(400):
        roll = rng.random()
        if roll < 0.5 or not placed:
            name = f"p{step}"
            pod = make_pod(name, labels={"app": rng.choice(["a", "b"])},
                           namespace=rng.choice(["default", "default", "other"]))
            target = f"n{rng.randrange(60)}"
            if rng.random() < 0.5:
                cluster.cache.assume(PodInfo.of(pod), target)
            else:
                pod["spec"]["nodeName"] = target
                cluster.cache.add_pod(PodInfo.of(pod), target)
            placed.append(f"{pod['metadata']['namespace']}/{name}")
        elif roll < 0.7:
            cluster.cache.remove_pod(placed.pop(rng.randrange(len(placed))))
        elif roll < 0.8:
            # a pod being deleted stops counting
            key = rng.choice(placed)
            where = cluster.cache.node_of(key)
            info = cluster.node(where).pods.get(key) if where in cluster.cache.nodes else None
            if info is not None:
                gone = {**info.pod, "metadata": {**info.pod["metadata"],
                                                 "deletionTimestamp": "2026-01-01T00:00:00Z"}}
                cluster.cache.add_pod(PodInfo.of(gone), where)
        elif roll < 0.96:
            cluster.cache.set_node(node(rng.randrange(60), rng))
        else:
            cluster.cache.remove_node(f"n{rng.randrange(60)}")
        if step % 3 == 0:
            for c in constraints:
                check(tallies, cluster, c, incoming)
            check(tallies, cluster, constraints[1], incoming, required=(ZONE,))


def test_a_preemption_dry_run_counts_only_nodes_with_every_constraint_label() -> None:
    # As kube-scheduler's PreFilter state update: a node without one of the constraints'
    # labels never counts, whether pods are added to it or taken away.
    cluster = Cluster([make_node("full", labels={ZONE: "a", "rack": "r1"}),
                       make_node("no-rack", labels={ZONE: "a"})])
    spread = cluster.framework().plugin("PodTopologySpread")
    pod = PodInfo.of(make_pod("p", labels={"app": "a"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "a"}}} for key in (ZONE, "rack")]))
    state = CycleState()
    spread.pre_filter(state, pod)
    victim = PodInfo.of(make_pod("v", labels={"app": "a"}))
    spread.add_pod(state, pod, victim, cluster.node("no-rack"))
    assert [dict(c) for c in state.data["podtopologyspread/filter"].counts] == [{"a": 0}, {"r1": 0}]
    spread.add_pod(state, pod, victim, cluster.node("full"))
    assert [dict(c) for c in state.data["podtopologyspread/filter"].counts] == [{"a": 1}, {"r1": 1}]


def test_a_preemption_dry_run_changes_its_own_counts_never_the_tallies() -> None:
    cluster = Cluster([make_node(f"n{i}", labels={ZONE: f"z{i % 2}"}) for i in range(4)],
                      [make_pod(f"old{i}", labels={"app": "a"}, nodeName=f"n{i}")
                       for i in range(4)])
    spread = cluster.framework().plugin("PodTopologySpread")
    pod = PodInfo.of(make_pod("p", labels={"app": "a"}, topologySpreadConstraints=[
        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": {"app": "a"}}}]))
    state = CycleState()
    spread.pre_filter(state, pod)
    before = dict(state.data["podtopologyspread/filter"].counts[0])
    assert before == {"z0": 2, "z1": 2}
    victim = PodInfo.of(make_pod("old0", labels={"app": "a"}))
    dry_run = state.clone()
    spread.remove_pod(dry_run, pod, victim, cluster.node("n0"))
    spread.remove_pod(dry_run, pod, victim, cluster.node("n2"))
    assert dict(dry_run.data["podtopologyspread/filter"].counts[0]) == {"z0": 0, "z1": 2}
    # The cycle's own state and the tally behind both still hold the cluster's counts.
    assert dict(state.data["podtopologyspread/filter"].counts[0]) == before
    again = CycleState()
    spread.pre_filter(again, pod)
    assert dict(again.data["podtopologyspread/filter"].counts[0]) == before
    assert spread.filter(again, pod, cluster.node("n1")).ok
    # A clone of a dry run keeps what it saw when its origin writes again.
    nested = dry_run.clone()
    spread.add_pod(dry_run, pod, victim, cluster.node("n0"))
    assert dict(nested.data["podtopologyspread/filter"].counts[0]) == {"z0": 0, "z1": 2}
    spread.remove_pod(dry_run, pod, victim, cluster.node("n0"))
    # A second dry run from the same state starts from the cluster's counts too.
    other = state.clone()
    spread.add_pod(other, pod, victim, cluster.node("n1"))
    assert dict(other.data["podtopologyspread/filter"].counts[0]) == {"z0": 2, "z1": 3}
    assert dict(dry_run.data["podtopologyspread/filter"].counts[0]) == {"z0": 0, "z1": 2}
