"""TaintToleration: untolerated NoSchedule and NoExecute taints exclude a node;
untolerated PreferNoSchedule taints lower its score."""

from __future__ import annotations

from kubelite.scheduler.framework import SUCCESS, CycleState, Obj, Status, default_normalize
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.plugins.tolerations import tolerates, untolerated

NAME = "TaintToleration"
_PREFER = "taint/prefer-tolerations"


class TaintToleration:
    name = NAME

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if not node.taints:
            return SUCCESS
        taint = untolerated(node.taints, pod.spec.get("tolerations") or [],
                            ("NoSchedule", "NoExecute"))
        if taint is None:
            return SUCCESS
        return Status.unschedulable(
            NAME, f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}",
            resolvable=False)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        state.data[_PREFER] = [t for t in pod.spec.get("tolerations") or []
                               if t.get("effect") in (None, "", "PreferNoSchedule")]
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if not node.taints:
            return 0
        tolerations: list[Obj] = state.data.get(_PREFER, [])
        return sum(1 for taint in node.taints if taint.get("effect") == "PreferNoSchedule"
                   and not any(tolerates(t, taint) for t in tolerations))

    def normalize_scores(self, state: CycleState, pod: PodInfo, scores: dict[str, int]) -> None:
        default_normalize(scores, reverse=True)
