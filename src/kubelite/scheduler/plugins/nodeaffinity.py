"""NodeAffinity: nodeSelector and required node affinity filter; preferred terms score."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status, default_normalize
from kubelite.scheduler.nodeinfo import NodeInfo

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
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: dict[str, Any], node: Obj) -> bool:
    """A NodeSelectorTerm: all its expressions and fields hold (an empty term matches
    nothing, as in Kubernetes)."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    return all(_requirement(e, labels.get(e.get("key"))) for e in exprs) and all(
        _requirement(f, node["metadata"]["name"] if f.get("key") == "metadata.name" else None)
        for f in fields)


def required_matches(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


class NodeAffinity:
    name = NAME

    def __init__(self, *, weight: int = 2) -> None:
        self.weight = weight

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        if required_matches(pod, node.node):
            return SUCCESS
        return Status.unschedulable(NAME, REASON, resolvable=False)

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        preferred = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
                     .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
        return sum(int(p.get("weight", 0)) for p in preferred
                   if term_matches(p.get("preference") or {}, node.node))

    def normalize_scores(self, state: CycleState, pod: Obj, scores: dict[str, int]) -> None:
        default_normalize(scores)
