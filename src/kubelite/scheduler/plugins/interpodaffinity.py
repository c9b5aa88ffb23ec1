"""InterPodAffinity: required pod affinity and anti-affinity (the pod's own and that of
pods already placed) filter, preferred terms score, per topology domain
(topologyKey), with namespaces or a namespaceSelector choosing whose pods count."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from kubelite.scheduler.framework import (
    MAX_NODE_SCORE,
    SKIP,
    SUCCESS,
    CycleState,
    Handle,
    Status,
)
from kubelite.scheduler.nodeinfo import AffinityTerm, NodeInfo, PodInfo

NAME = "InterPodAffinity"
AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
_FILTER = "interpodaffinity/filter"
_SCORE = "interpodaffinity/score"

Pair = tuple[str, str]


@dataclass
class _FilterState:
    # (topology key, value) -> matching pods, for each kind of rule
    existing_anti: Counter[Pair] = field(default_factory=Counter)
    affinity: Counter[Pair] = field(default_factory=Counter)
    anti: Counter[Pair] = field(default_factory=Counter)

    def clone(self) -> _FilterState:
        return _FilterState(Counter(self.existing_anti), Counter(self.affinity),
                            Counter(self.anti))


def _namespace_labels(handle: Handle) -> dict[str, dict[str, str]]:
    return {n["metadata"]["name"]: n["metadata"].get("labels") or {}
            for n in handle.lister("namespaces").list()}


def _pair(term: AffinityTerm, node: NodeInfo) -> Pair | None:
    value = node.labels.get(term.topology_key)
    return None if value is None else (term.topology_key, value)


class InterPodAffinity:
    name = NAME

    def __init__(self, *, handle: Handle, affinity_pods: object,
                 hard_pod_affinity_weight: int = 1) -> None:
        self.handle = handle
        # something whose `affinity_pods` counts placed pods with affinity terms (the cache)
        self._counter = affinity_pods
        self.hard_weight = hard_pod_affinity_weight

    def _any_existing(self) -> bool:
        return getattr(self._counter, "affinity_pods", 0) > 0

    # ---- filter --------------------------------------------------------------------

    def _update(self, fs: _FilterState, pod: PodInfo, existing: PodInfo, node: NodeInfo,
                ns_labels: dict[str, dict[str, str]], delta: int) -> None:
        for term in existing.required_anti_affinity:
            pair = _pair(term, node)
            if pair and term.matches(pod, ns_labels):
                fs.existing_anti[pair] += delta
        if pod.required_affinity and all(t.matches(existing, ns_labels)
                                         for t in pod.required_affinity):
            for term in pod.required_affinity:
                pair = _pair(term, node)
                if pair:
                    fs.affinity[pair] += delta
        for term in pod.required_anti_affinity:
            pair = _pair(term, node)
            if pair and term.matches(existing, ns_labels):
                fs.anti[pair] += delta

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not (pod.required_affinity or pod.required_anti_affinity) and not self._any_existing():
            return SKIP
        ns_labels = _namespace_labels(self.handle)
        fs = _FilterState()
        own_terms = bool(pod.required_affinity or pod.required_anti_affinity)
        for node in self.handle.nodes():
            pods = node.pods.values() if own_terms else node.affinity_pods.values()
            for existing in pods:
                if existing.key != pod.key:
                    self._update(fs, pod, existing, node, ns_labels, 1)
        state.data[_FILTER] = fs
        state.data[_FILTER + "/ns"] = ns_labels
        return SUCCESS

    def remove_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo,
                   node: NodeInfo) -> None:
        fs = state.data.get(_FILTER)
        if fs is not None:
            self._update(fs, pod, victim, node, state.data[_FILTER + "/ns"], -1)

    def add_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo, node: NodeInfo) -> None:
        fs = state.data.get(_FILTER)
        if fs is not None:
            self._update(fs, pod, victim, node, state.data[_FILTER + "/ns"], 1)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        fs: _FilterState = state.data[_FILTER]
        if pod.required_affinity:
            satisfied = all((p := _pair(t, node)) is not None and fs.affinity[p] > 0
                            for t in pod.required_affinity)
            if not satisfied:
                # The first pod of a group that selects itself may go anywhere the
                # topology keys exist.
                ns_labels = state.data[_FILTER + "/ns"]
                alone = (not +fs.affinity and all(t.matches(pod, ns_labels)
                                                  for t in pod.required_affinity)
                         and all(_pair(t, node) for t in pod.required_affinity))
                if not alone:
                    return Status.unschedulable(NAME, AFFINITY_MISMATCH, resolvable=False)
        for term in pod.required_anti_affinity:
            pair = _pair(term, node)
            if pair and fs.anti[pair] > 0:
                return Status.unschedulable(NAME, ANTI_AFFINITY_MISMATCH)
        if fs.existing_anti:
            for pair in node.labels.items():
                if fs.existing_anti.get(pair, 0) > 0:
                    return Status.unschedulable(NAME, EXISTING_ANTI_AFFINITY)
        return SUCCESS

    # ---- score ---------------------------------------------------------------------

    def scores_pod(self, pod: PodInfo) -> bool:
        """Whether PreScore would run: the pod or some pod placed has affinity terms."""
        return bool(pod.preferred_affinity or pod.preferred_anti_affinity) \
            or self._any_existing()

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        own = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        if not own and not self._any_existing():
            return SKIP
        ns_labels = _namespace_labels(self.handle)
        scores: Counter[Pair] = Counter()
        for node in self.handle.nodes():
            pods = node.pods.values() if own else node.affinity_pods.values()
            for existing in pods:
                self._score_pair(scores, pod, existing, node, ns_labels)
        state.data[_SCORE] = scores
        return SUCCESS

    def _score_pair(self, scores: Counter[Pair], pod: PodInfo, existing: PodInfo,
                    node: NodeInfo, ns_labels: dict[str, dict[str, str]]) -> None:
        def add(term: AffinityTerm, candidate: PodInfo, weight: int) -> None:
            pair = _pair(term, node)
            if pair and weight and term.matches(candidate, ns_labels):
                scores[pair] += weight

        for weight, term in pod.preferred_affinity:
            add(term, existing, weight)
        for weight, term in pod.preferred_anti_affinity:
            add(term, existing, -weight)
        for term in existing.required_affinity:
            add(term, pod, self.hard_weight)
        for weight, term in existing.preferred_affinity:
            add(term, pod, weight)
        for weight, term in existing.preferred_anti_affinity:
            add(term, pod, -weight)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: Counter[Pair] = state.data[_SCORE]
        return sum(scores.get(pair, 0) for pair in node.labels.items())

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        if not scores:
            return
        low, high = min(scores.values()), max(scores.values())
        for name, value in scores.items():
            scores[name] = (value - low) * MAX_NODE_SCORE // (high - low) if high > low else 0
