"""TaintToleration: NoSchedule and NoExecute taints filter, PreferNoSchedule scores."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status, default_normalize
from kubelite.scheduler.nodeinfo import NodeInfo
from kubelite.scheduler.plugins.tolerations import tolerates, untolerated

NAME = "TaintToleration"


def _taints(node: NodeInfo) -> list[Obj]:
    return (node.node.get("spec") or {}).get("taints") or []


class TaintToleration:
    name = NAME

    def __init__(self, *, weight: int = 3) -> None:
        self.weight = weight

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status:
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        taint = untolerated(_taints(node), tolerations, ("NoSchedule", "NoExecute"))
        if taint is None:
            return SUCCESS
        shown = f"{taint.get('key')}: {taint['value']}" if taint.get("value") else taint.get("key")
        return Status.unschedulable(NAME, f"node(s) had untolerated taint {{{shown}}}",
                                    resolvable=False)

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int:
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or []
                       if t.get("effect") in (None, "", "PreferNoSchedule")]
        return sum(1 for taint in _taints(node) if taint.get("effect") == "PreferNoSchedule"
                   and not any(tolerates(t, taint) for t in tolerations))

    def normalize_scores(self, state: CycleState, pod: Obj, scores: dict[str, int]) -> None:
        default_normalize(scores, reverse=True)
