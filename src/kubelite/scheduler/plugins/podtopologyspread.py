"""PodTopologySpread: spread matching pods over topology domains. DoNotSchedule
constraints filter (skew = pods in the node's domain + this pod - the least loaded
domain must stay within maxSkew; fewer domains than minDomains count the minimum as
0); ScheduleAnyway constraints score. Which nodes count follows nodeAffinityPolicy
(default Honor) and nodeTaintsPolicy (default Ignore). Pods without constraints
get the cluster defaults (hostname maxSkew 3, zone maxSkew 5, ScheduleAnyway) over
the pods of the Services, ReplicaSets and StatefulSets that select them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any

import orjson

from kubelite.api.selectors import EQUALS, LabelSelector, Requirement
from kubelite.client.informer import NAMESPACE_INDEX
from kubelite.scheduler.framework import MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, Handle, Status
from kubelite.scheduler.nodeinfo import HOSTNAME, ZONE, NodeInfo, PodInfo, selector_of
from kubelite.scheduler.plugins.nodeaffinity import required_matches
from kubelite.scheduler.plugins.tolerations import untolerated
from kubelite.scheduler.spreadcounts import SpreadTallies, Tally

NAME = "PodTopologySpread"
MISMATCH = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
SYSTEM_DEFAULTS = ({"maxSkew": 3, "topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway"},
                   {"maxSkew": 5, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"})
_FILTER = "podtopologyspread/filter"
_SCORE = "podtopologyspread/score"
Obj = dict[str, Any]


@dataclass(frozen=True)
class Constraint:
    max_skew: int
    key: str
    hard: bool
    selector: LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool

    def counts_node(self, pod: PodInfo, node: NodeInfo) -> bool:
        if self.key not in node.labels:
            return False
        if self.honor_affinity and not required_matches(pod, node):
            return False
        return not (self.honor_taints and untolerated(
            node.taints, pod.spec.get("tolerations") or [], ("NoSchedule", "NoExecute")))


def _constraint(raw: Obj, pod: PodInfo, selector: LabelSelector | None = None) -> Constraint:
    if selector is None:
        selector = selector_of(raw.get("labelSelector"))
        extra = [Requirement(k, EQUALS, (pod.labels[k],))
                 for k in raw.get("matchLabelKeys") or [] if k in pod.labels]
        if extra:
            selector = LabelSelector([*selector.requirements, *extra])
    return Constraint(
        max_skew=int(raw.get("maxSkew") or 1), key=raw.get("topologyKey") or "",
        hard=raw.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule",
        selector=selector, min_domains=int(raw.get("minDomains") or 1),
        honor_affinity=raw.get("nodeAffinityPolicy", "Honor") == "Honor",
        honor_taints=raw.get("nodeTaintsPolicy", "Ignore") == "Honor")


def _count(constraint: Constraint, pod: PodInfo, node: NodeInfo) -> int:
    selector = constraint.selector
    return sum(1 for other in node.pods.values()
               if other.namespace == pod.namespace and selector.matches(other.labels)
               and not other.pod["metadata"].get("deletionTimestamp"))


@dataclass(slots=True)
class _ScoreState:
    constraints: list[Constraint]
    tallies: list[Tally]
    # pods by domain with a candidate node; None for hostname, counted per node
    counts: list[dict[str, int] | None]
    weights: list[float]
    ignored: set[str]
    # The nodes PreScore read, and each constraint's label value on every one of them
    # (None for hostname): scoring that same list reads the values again.
    scored: list[NodeInfo] | None = None
    values: list[list[str | None] | None] = field(default_factory=list)


@dataclass
class _FilterState:
    constraints: list[Constraint]
    # each constraint's matching pods by domain: its tally's own sums, read only, until
    # a preemption dry run changes them; copied then (a hostname constraint has a
    # domain per node, and most cycles change nothing)
    counts: list[dict[str, int]]
    # whether the pod itself matches each constraint's selector
    self_match: list[int]
    owned: set[int] = field(default_factory=set)
    # each constraint's least loaded domain, found once per change of its counts
    # rather than by every Filter call
    minimums: dict[int, int] = field(default_factory=dict)

    def clone(self) -> _FilterState:
        # Both now share every dict, and copy before they write.
        self.owned.clear()
        return _FilterState(self.constraints, list(self.counts), self.self_match,
                            minimums=dict(self.minimums))

    def add(self, i: int, domain: str, delta: int) -> None:
        if i not in self.owned:
            self.counts[i] = dict(self.counts[i])
            self.owned.add(i)
        counts = self.counts[i]
        counts[domain] = counts.get(domain, 0) + delta
        self.minimums.pop(i, None)

    def minimum(self, i: int) -> int:
        known = self.minimums.get(i)
        if known is None:
            counts = self.counts[i]
            known = self.minimums[i] = (0 if len(counts) < self.constraints[i].min_domains
                                        else min(counts.values(), default=0))
        return known


class PodTopologySpread:
    name = NAME

    def __init__(self, *, handle: Handle, default_constraints: tuple[Obj, ...] = SYSTEM_DEFAULTS
                 ) -> None:
        self.handle = handle
        self.defaults = default_constraints
        # Only Kubernetes' own defaults score nodes without a zone by hostname alone.
        self.system_defaulted = default_constraints is SYSTEM_DEFAULTS
        self.tallies = SpreadTallies()
        self._memo: tuple[PodInfo, bool, list[Constraint]] | None = None

    def _default_selector(self, pod: PodInfo) -> LabelSelector | None:
        """Kubernetes' DefaultSelector: the selectors of Services, ReplicaSets and
        StatefulSets that select the pod, ANDed."""
        requirements: list[Requirement] = []
        for svc in self.handle.lister("services").by_index(NAMESPACE_INDEX, pod.namespace):
            selector = (svc.get("spec") or {}).get("selector")
            if selector and LabelSelector.from_set(selector).matches(pod.labels):
                requirements += LabelSelector.from_set(selector).requirements
        for plural in ("replicasets", "statefulsets"):
            for owner in pod.pod["metadata"].get("ownerReferences") or []:
                obj = self.handle.lister(plural).get(f"{pod.namespace}/{owner.get('name')}")
                if obj is not None and obj["metadata"].get("uid") == owner.get("uid"):
                    requirements += selector_of((obj.get("spec") or {}).get("selector")
                                                ).requirements
        return LabelSelector(requirements) if requirements else None

    def constraints(self, pod: PodInfo, *, hard: bool) -> list[Constraint]:
        # A cycle asks for the same pod's soft constraints twice (scores_pod, then
        # pre_score); the defaults parse the selectors of every object that selects it.
        memo = self._memo
        if memo is not None and memo[0] is pod and memo[1] == hard:
            return memo[2]
        found = self._constraints(pod, hard)
        self._memo = (pod, hard, found)
        return found

    def _constraints(self, pod: PodInfo, hard: bool) -> list[Constraint]:
        raw = pod.spec.get("topologySpreadConstraints") or []
        if raw:
            found = [_constraint(c, pod) for c in raw]
        elif hard or not self.defaults:
            return []
        else:
            selector = self._default_selector(pod)
            if selector is None:
                return []
            found = [_constraint(c, pod, selector) for c in self.defaults]
        return [c for c in found if c.hard == hard]

    def _tally(self, c: Constraint, pod: PodInfo, required: tuple[str, ...]) -> Tally:
        """Pods `c` matches by node and by domain, over the nodes it counts: those with
        every label of `required` that pass its node inclusion policies."""
        spec = pod.spec
        scope = orjson.dumps([
            [spec.get("nodeSelector"), (spec.get("affinity") or {}).get("nodeAffinity")]
            if c.honor_affinity else None,
            spec.get("tolerations") if c.honor_taints else None], option=orjson.OPT_SORT_KEYS)
        key = (pod.namespace, c.key, c.selector.requirements, c.selector.selects_nothing,
               c.honor_affinity, c.honor_taints, scope, required)
        return self.tallies.tally(
            key, self.handle.changes(), c.key,
            lambda node: all(k in node.labels for k in required) and c.counts_node(pod, node),
            lambda node: _count(c, pod, node))

    # ---- filter --------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        constraints = self.constraints(pod, hard=True)
        if not constraints:
            return SKIP
        # Only nodes with every constraint's label count, as in kube-scheduler.
        required = tuple(c.key for c in constraints)
        state.data[_FILTER] = _FilterState(
            constraints, [self._tally(c, pod, required).sums for c in constraints],
            [1 if c.selector.matches(pod.labels) else 0 for c in constraints])
        return SUCCESS

    def _update(self, state: CycleState, pod: PodInfo, victim: PodInfo, node: NodeInfo,
                delta: int) -> None:
        fs: _FilterState | None = state.data.get(_FILTER)
        if (fs is None or victim.namespace != pod.namespace
                or not all(c.key in node.labels for c in fs.constraints)):
            return
        for i, c in enumerate(fs.constraints):
            if c.counts_node(pod, node) and c.selector.matches(victim.labels):
                fs.add(i, node.labels[c.key], delta)

    def remove_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo,
                   node: NodeInfo) -> None:
        self._update(state, pod, victim, node, -1)

    def add_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo, node: NodeInfo) -> None:
        self._update(state, pod, victim, node, 1)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        fs: _FilterState = state.data[_FILTER]
        for i, c in enumerate(fs.constraints):
            value = node.labels.get(c.key)
            if value is None:
                return Status.unschedulable(NAME, MISSING_LABEL, resolvable=False)
            if fs.counts[i].get(value, 0) + fs.self_match[i] - fs.minimum(i) > c.max_skew:
                return Status.unschedulable(NAME, MISMATCH)
        return SUCCESS

    # ---- score ---------------------------------------------------------------------

    def scores_pod(self, pod: PodInfo) -> bool:
        """Whether PreScore would run: the pod has soft spread constraints (its own or
        the cluster's defaults)."""
        return bool(self.constraints(pod, hard=False))

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        constraints = self.constraints(pod, hard=False)
        if not constraints or not nodes:
            return SKIP
        # A pod's own constraints (or the cluster's configured defaults) need every
        # label on a node, or the node is ignored (scored 0); the system defaults
        # score the labels a node has.
        own = bool(pod.spec.get("topologySpreadConstraints")) or not self.system_defaulted
        required = tuple(c.key for c in constraints) if own else ()
        ignored = ({n.name for n in nodes if not all(k in n.labels for k in required)}
                   if required else set())
        scored = [n for n in nodes if n.name not in ignored] if ignored else nodes
        tallies: list[Tally] = []
        counts: list[dict[str, int] | None] = []
        weights: list[float] = []
        values: list[list[str | None] | None] = []
        for c in constraints:
            tally = self._tally(c, pod, required)
            tallies.append(tally)
            if c.key == HOSTNAME:
                # Per-node domains: the node's own count, taken when scoring it.
                counts.append(None)
                values.append(None)
                weights.append(math.log(len(scored) + 2))
                continue
            # Domains with a candidate node, counting the pods of all their nodes. A
            # candidate without the label adds the empty domain to the weight, as
            # kube-scheduler reads a missing label as "".
            found = [n.labels.get(c.key) for n in scored]
            domains = set(found)
            if None in domains:
                domains.discard(None)
                domains.add("")
            counts.append({d: tally.sums.get(d, 0) for d in domains})
            values.append(found)
            weights.append(math.log(len(domains) + 2))
        state.data[_SCORE] = _ScoreState(constraints, tallies, counts, weights, ignored,
                                         scored, values)
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return self.score_window(state, pod, [node])[0]

    def score_window(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> list[int]:
        """The raw scores of `nodes`, in one pass per constraint. With the counts taken
        from tallies this costs the nodes alone, so that a class table may place spread
        pods, scoring just its window (runtime.Framework._choose_alike)."""
        s: _ScoreState = state.data[_SCORE]
        names = [node.name for node in nodes]
        # One list per constraint, summed node by node: a node without the
        # constraint's label adds nothing.
        parts: list[list[float]] = []
        read = s.values if nodes is s.scored else [None] * len(s.constraints)
        for c, tally, counts, weight, values in zip(s.constraints, s.tallies, s.counts,
                                                    s.weights, read, strict=True):
            key, base = c.key, c.max_skew - 1
            if counts is not None:
                if values is None:
                    values = [node.labels.get(key) for node in nodes]
                # A score per domain, looked up per node: a domain no candidate is in
                # counts nothing, and a node without the label scores 0.
                by_domain: dict[str | None, float] = {
                    domain: n * weight + base for domain, n in counts.items()}
                by_domain[None] = 0.0
                parts.append(list(map(by_domain.get, values, repeat(float(base)))))
            else:
                parts.append([
                    0.0 if key not in node.labels
                    else (_count(c, pod, node) if found is None else found) * weight + base
                    for node, found in zip(nodes, tally.counts_on(names), strict=True)])
        totals = parts[0] if parts else [0.0] * len(nodes)
        for part in parts[1:]:
            totals = list(map(add, totals, part))
        ignored = s.ignored
        # Go's math.Round; ignored nodes score 0
        if ignored:
            return [0 if name in ignored else math.floor(total + 0.5)
                    for name, total in zip(names, totals, strict=True)]
        return list(map(math.floor, map(add, totals, repeat(0.5))))

    def normalize_window(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
                         raw: list[int]) -> list[int]:
        """normalize_scores over a window's list of raw scores, in the window's order."""
        s: _ScoreState | None = state.data.get(_SCORE)
        if s is None or not s.ignored:
            return _inverted(raw, raw)
        return _normalized([node.name for node in nodes], raw, s.ignored)

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        s: _ScoreState | None = state.data.get(_SCORE)
        names = list(scores)
        normalized = _normalized(names, list(scores.values()),
                                 s.ignored if s is not None else set())
        scores.update(zip(names, normalized, strict=True))


def _normalized(names: list[str], raw: list[int], ignored: set[str]) -> list[int]:
    """Normalised scores of the named nodes; ignored nodes score 0 and do not count
    toward the range."""
    if not ignored:
        return _inverted(raw, raw)
    counted = [v for name, v in zip(names, raw, strict=True) if name not in ignored]
    return [0 if name in ignored else value
            for name, value in zip(names, _inverted(raw, counted), strict=True)]


def _inverted(values: list[int], among: list[int]) -> list[int]:
    """Fewer matching pods score higher: each value against the lowest and highest
    of `among`, as kube-scheduler's NormalizeScore."""
    low, high = (min(among), max(among)) if among else (0, 0)
    if high == 0:
        return [MAX_NODE_SCORE] * len(values)
    return [MAX_NODE_SCORE * (high + low - value) // high for value in values]
