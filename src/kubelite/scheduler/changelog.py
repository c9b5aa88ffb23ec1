"""Per-node state that follows the scheduler cache through its change log.

The cache keeps its nodes in a stable order and logs the name of every node whose
NodeInfo changes. Structures holding one entry per node in that order (class
tables, spread tallies) are built once over every node, then brought up to date
by recomputing only the nodes logged since they last looked whose generation
moved; they are rebuilt when the node list itself changes or the log has dropped
what they missed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from kubelite.scheduler.nodeinfo import NodeInfo


class ChangeLog(Protocol):
    """The scheduler cache's node order and its log of changed nodes."""

    layout: int

    def node_list(self) -> list[NodeInfo]: ...

    def changes_since(self, position: int) -> Sequence[str] | None: ...

    @property
    def changes_end(self) -> int: ...


@dataclass(slots=True)
class Follower:
    """Where per-node state stands: the node list it was built for, how far into the
    log it has read, each node's position, and the generation seen of each node."""

    layout: int
    position: int
    index: dict[str, int]
    generations: list[int]


def start(log: ChangeLog) -> dict[str, Any]:
    """The Follower fields of state about to be built over every node."""
    nodes = log.node_list()
    return {"layout": log.layout, "position": log.changes_end,
            "index": {info.name: i for i, info in enumerate(nodes)},
            "generations": [0] * len(nodes)}


F = TypeVar("F", bound=Follower)


class Followers(Generic[F]):
    """Followers by key, the least recently used dropped beyond `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, F] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, log: ChangeLog, build: Callable[[ChangeLog], F],
            recompute: Callable[[F, int, NodeInfo], None]) -> F:
        """The follower of `key`, up to date with the cache. `build` makes a new one
        (its Follower fields from `start`); `recompute` refreshes one node of it."""
        nodes = log.node_list()
        found = self._items.get(key)
        changed = (log.changes_since(found.position)
                   if found is not None and found.layout == log.layout else None)
        if found is None or changed is None:
            found = build(log)
            names: Sequence[str] = [info.name for info in nodes]
            self._items[key] = found
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            names = changed
            self._items.move_to_end(key)
        index, generations = found.index, found.generations
        for name in names:
            position = index[name]
            info = nodes[position]
            if info.generation != generations[position]:
                recompute(found, position, info)
                generations[position] = info.generation
        found.position = log.changes_end
        return found
