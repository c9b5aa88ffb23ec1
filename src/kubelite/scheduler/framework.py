"""The scheduling framework: plugin points as Protocols, outcomes as `Status`.

A scheduling cycle for one pod runs, in order:
    PreFilter(state, pod)                 once: compute what filters share
    Filter(state, pod, node_info)         per node: may the pod run there?
    Score(state, pod, node_info) -> int   per feasible node, 0..MAX_NODE_SCORE
    NormalizeScore(state, pod, scores)    optional, per plugin, over all nodes
then the highest weighted sum wins, the pod is assumed on that node in the cache
and bound through the API. Plugins implement only the points they need.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from kubelite.scheduler.nodeinfo import NodeInfo

Obj = dict[str, Any]
MAX_NODE_SCORE = 100


class Code(enum.Enum):
    SUCCESS = "Success"
    # A bug or an API failure: the pod goes to back-off and is retried.
    ERROR = "Error"
    # The node does not fit now; preemption or a cluster change may help.
    UNSCHEDULABLE = "Unschedulable"
    # The node can never fit this pod (e.g. a wrong node name); preemption skips it.
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    # PreFilter found nothing to check: the plugin's Filter is skipped.
    SKIP = "Skip"


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @classmethod
    def unschedulable(cls, plugin: str, *reasons: str, resolvable: bool = True) -> Status:
        code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        return cls(code, reasons, plugin)


SUCCESS = Status()


@dataclass
class CycleState:
    """Per-cycle scratch space plugins share between their extension points."""

    data: dict[str, Any] = field(default_factory=dict)


class Plugin(Protocol):
    name: str


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: Obj) -> Status: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: Obj, node: NodeInfo) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: Obj, node: NodeInfo) -> int: ...


@runtime_checkable
class NormalizeScorePlugin(Protocol):
    name: str

    def normalize_scores(self, state: CycleState, pod: Obj, scores: dict[str, int]) -> None: ...


def default_normalize(scores: dict[str, int], *, reverse: bool = False) -> None:
    """Scale scores to 0..MAX_NODE_SCORE by the highest (helper for NormalizeScore)."""
    top = max(scores.values(), default=0)
    for name, value in scores.items():
        scaled = value * MAX_NODE_SCORE // top if top else 0
        scores[name] = MAX_NODE_SCORE - scaled if reverse else scaled
