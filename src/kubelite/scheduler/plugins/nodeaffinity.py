"""NodeAffinity: nodeSelector and required node affinity (all operators, matchFields on
metadata.name) filter; preferred terms score by their weights. A profile may add an
`addedAffinity` that every pod must also satisfy."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.framework import SKIP, SUCCESS, CycleState, Obj, Status, default_normalize
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

NAME = "NodeAffinity"
REASON = "node(s) didn't match Pod's node affinity/selector"


def _requirement(expr: dict[str, Any], value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: dict[str, Any], node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its expressions and fields hold (an empty term matches
    nothing, as in Kubernetes)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node.labels
    return all(_requirement(e, labels.get(e.get("key", ""))) for e in exprs) and all(
        _requirement(f, node.name if f.get("key") == "metadata.name" else None) for f in fields)


def selector_matches(selector: Obj | None, node: NodeInfo) -> bool:
    """A NodeSelector: any of its terms (none given: every node)."""
    if not selector:
        return True
    return any(term_matches(t, node) for t in selector.get("nodeSelectorTerms") or [])


def required_matches(pod: PodInfo, node: NodeInfo) -> bool:
    labels = node.labels
    for key, value in (pod.spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    node_affinity = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
    return selector_matches(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"),
                            node)


def _preferred(pod: PodInfo) -> list[Obj]:
    return (((pod.spec.get("affinity") or {}).get("nodeAffinity") or {})
            .get("preferredDuringSchedulingIgnoredDuringExecution") or [])


class NodeAffinity:
    name = NAME

    def __init__(self, *, added_affinity: Obj | None = None) -> None:
        self.added = added_affinity or {}

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        required = (pod.spec.get("affinity") or {}).get("nodeAffinity") or {}
        if (pod.spec.get("nodeSelector") or required.get(
                "requiredDuringSchedulingIgnoredDuringExecution")
                or self.added.get("requiredDuringSchedulingIgnoredDuringExecution")):
            return SUCCESS
        return SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        added = self.added.get("requiredDuringSchedulingIgnoredDuringExecution")
        if required_matches(pod, node) and selector_matches(added, node):
            return SUCCESS
        return Status.unschedulable(NAME, REASON, resolvable=False)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        if _preferred(pod) or self.added.get("preferredDuringSchedulingIgnoredDuringExecution"):
            return SUCCESS
        return SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        terms = _preferred(pod) + (
            self.added.get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        return sum(int(p.get("weight") or 0) for p in terms
                   if term_matches(p.get("preference") or {}, node))

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        default_normalize(scores)
