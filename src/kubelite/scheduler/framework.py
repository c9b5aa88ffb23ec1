"""The scheduling framework: extension points as Protocols, outcomes as `Status`.

One pod's scheduling cycle runs, in order:

    PreFilter(state, pod)                  once: precompute, or Skip the plugin's Filter
    Filter(state, pod, node)               per node, until enough feasible nodes are found
    PostFilter(state, pod, statuses)       only when no node fits (preemption)
    PreScore(state, pod, nodes)            once over the feasible nodes, or Skip its Score
    Score(state, pod, node) -> 0..100      per feasible node, then NormalizeScore, x weight
    Reserve(state, pod, node)              the pod is assumed on the chosen node
    Permit(state, pod, node)               may hold the pod (Wait) before binding
and then, off the scheduling loop, the binding cycle:
    PreBind(state, pod, node)              e.g. bind the pod's volumes
    Bind(state, pod, node)                 the first binder not answering Skip binds it
A failure after Reserve runs every Unreserve in reverse order.

Plugins implement only the points they need; the runner (`runtime.Framework`)
checks which Protocols a plugin satisfies once, when the profile is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kubelite.scheduler.changelog import ChangeLog
    from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

Obj = dict[str, Any]
MAX_NODE_SCORE = 100


class Code(enum.Enum):
    """What a plugin's answer means, and what the scheduler does with it."""

    # Go on with the next plugin or extension point.
    SUCCESS = "Success"
    # An internal or API failure, not a property of the node: the pod goes to back-off
    # and is retried; preemption is not attempted.
    ERROR = "Error"
    # The node does not fit now. Preemption may free it, and the pod waits in the
    # unschedulable queue until a cluster event that could change this.
    UNSCHEDULABLE = "Unschedulable"
    # The node can never fit this pod as the cluster stands (wrong name, selector,
    # untolerated taint): preemption does not consider the node.
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    # Permit only: hold the pod until allowed, rejected, or timed out.
    WAIT = "Wait"
    # PreFilter / PreScore: the plugin has nothing to check for this pod, so its
    # Filter / Score is not run; Bind: let the next binder bind.
    SKIP = "Skip"


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def rejected(self) -> bool:
        return self.code in (Code.UNSCHEDULABLE, Code.UNSCHEDULABLE_AND_UNRESOLVABLE)

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    @classmethod
    def unschedulable(cls, plugin: str, *reasons: str, resolvable: bool = True) -> Status:
        code = Code.UNSCHEDULABLE if resolvable else Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        return cls(code, reasons, plugin)

    @classmethod
    def error(cls, plugin: str, reason: str) -> Status:
        return cls(Code.ERROR, (reason,), plugin)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


@dataclass
class CycleState:
    """Per-cycle scratch space plugins share between their extension points, keyed by
    plugin-private keys. Preemption clones it to try removing pods."""

    data: dict[str, Any] = field(default_factory=dict)
    # PreFilter plugins that answered Skip: their Filter is not run this cycle.
    skip_filter: set[str] = field(default_factory=set)
    skip_score: set[str] = field(default_factory=set)

    def clone(self) -> CycleState:
        data = {k: v.clone() if hasattr(v, "clone") else v for k, v in self.data.items()}
        return CycleState(data, set(self.skip_filter), set(self.skip_score))


class Handle(Protocol):
    """What plugins may read besides the pod and node at hand."""

    def changes(self) -> ChangeLog:
        """The nodes with the log of their changes."""
        ...

    def nodes(self) -> list[NodeInfo]:
        """Every node in the cycle's snapshot, with its bound and assumed pods."""
        ...

    def node(self, name: str) -> NodeInfo | None: ...

    def lister(self, plural: str) -> Lister:
        """Cached objects of a watched resource (persistentvolumeclaims, namespaces, ...)."""
        ...


class Lister(Protocol):
    def get(self, key: str) -> Obj | None: ...

    def list(self) -> list[Obj]: ...

    def by_index(self, name: str, value: str) -> list[Obj]:
        """The objects an index files under `value`; every lister has "namespace"."""
        ...


class Plugin(Protocol):
    name: str


@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


@runtime_checkable
class PodChangeAware(Protocol):
    """PreFilter plugins whose precomputed state depends on the pods of each node:
    preemption tells them about pods it removes (or adds back) on one node."""

    name: str

    def remove_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo,
                   node: NodeInfo) -> None: ...

    def add_pod(self, state: CycleState, pod: PodInfo, victim: PodInfo,
                node: NodeInfo) -> None: ...


@runtime_checkable
class PostFilterPlugin(Protocol):
    name: str

    async def post_filter(self, state: CycleState, pod: PodInfo,
                          statuses: dict[str, Status]) -> tuple[str | None, Status]: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


@runtime_checkable
class NormalizeScorePlugin(Protocol):
    name: str

    def normalize_scores(self, state: CycleState, pod: PodInfo,
                         scores: dict[str, int]) -> None: ...


@runtime_checkable
class ReservePlugin(Protocol):
    name: str

    def reserve(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...

    def unreserve(self, state: CycleState, pod: PodInfo, node_name: str) -> None: ...


@runtime_checkable
class PermitPlugin(Protocol):
    name: str

    def permit(self, state: CycleState, pod: PodInfo, node_name: str
               ) -> tuple[Status, float]: ...


@runtime_checkable
class PreBindPlugin(Protocol):
    name: str

    async def pre_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...


@runtime_checkable
class BindPlugin(Protocol):
    name: str

    async def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status: ...


def default_normalize(scores: dict[str, int], *, reverse: bool = False) -> None:
    """Scale to 0..MAX_NODE_SCORE by the highest score (Kubernetes' DefaultNormalizeScore);
    `reverse` turns a penalty into a score (all zero then means all MAX_NODE_SCORE)."""
    top = max(scores.values(), default=0)
    for name, value in scores.items():
        if top == 0:
            scores[name] = MAX_NODE_SCORE if reverse else 0
            continue
        scaled = value * MAX_NODE_SCORE // top
        scores[name] = MAX_NODE_SCORE - scaled if reverse else scaled
