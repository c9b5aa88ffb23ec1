"""Scheduling alike pods in time that does not grow with the cluster.

Even with the equivalence memo, a cycle walks the few hundred nodes that
`percentageOfNodesToScore` asks for, and at 5,000 nodes those Python loops are
most of a cycle. For each equivalence class, a `ClassTable` keeps what the
node-local plugins (see equivalence.py) answer for each node, in flat arrays in the
cache's node order: feasible or not, and the weighted total of their scores. It
follows the cache's change log (changelog.py): a cycle recomputes only the nodes
changed since the table last looked (usually the node the previous pod was
assumed on). With only node-local plugins running, the window of the first
`wanted` feasible nodes from the round-robin start and the best total in it are
found with C-level slices, counts and max; other plugins (spread, pod affinity)
run on that window alone (runtime.Framework._choose_alike).

The choice is the one the full cycle makes: the same window of nodes, the same
best total, ties broken uniformly at random. The table answers only when every
plugin that normalises its scores gave all feasible nodes the same raw score, so
that normalisation adds one constant to every total and cannot change the best
node; otherwise (and when no node fits, whose reasons must be reported) the
framework takes the full path.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, compress

from kubelite.scheduler.changelog import ChangeLog, Follower, Followers, start
from kubelite.scheduler.framework import SUCCESS, CycleState, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

Filter = Callable[[CycleState, PodInfo, NodeInfo], Status]
Score = Callable[[CycleState, PodInfo, NodeInfo], int]
# How many classes keep a table at once (least recently used first out).
DEFAULT_TABLES = 8


@dataclass(slots=True)
class ClassTable(Follower):
    feasible: bytearray
    # weighted sum of the scores that need no normalisation; -1 where infeasible
    totals: list[int]
    # per normalising score plugin: its raw score by node, and how many feasible
    # nodes have each value
    raw: list[list[int]]
    values: list[Counter[int]]
    feasible_count: int = 0


@dataclass(slots=True)
class Columns:
    """The cycle's filters and scores, as the table computes them."""

    filters: list[Filter]
    scores: list[Score]
    # (column, weight) of the scores summed as they are, and the columns normalised
    plain: list[tuple[int, int]]
    normalised: list[int]


class ClassTables:
    def __init__(self, tables: int = DEFAULT_TABLES) -> None:
        self._tables: Followers[ClassTable] = Followers(tables)

    def __len__(self) -> int:
        return len(self._tables)

    def table(self, key: tuple[object, ...], state: CycleState, pod: PodInfo,
              columns: Columns, cache: ChangeLog) -> ClassTable:
        """The class's table, brought up to date with the cache."""

        def build(log: ChangeLog) -> ClassTable:
            size = len(log.node_list())
            return ClassTable(**start(log), feasible=bytearray(size), totals=[-1] * size,
                              raw=[[0] * size for _ in columns.normalised],
                              values=[Counter() for _ in columns.normalised])

        return self._tables.get(
            key, cache, build,
            lambda table, position, info: _compute(table, position, info, state, pod, columns))


def _compute(table: ClassTable, position: int, info: NodeInfo, state: CycleState,
             pod: PodInfo, columns: Columns) -> None:
    status = SUCCESS
    for fn in columns.filters:
        status = fn(state, pod, info)
        if status is not SUCCESS and not status.ok:
            break
    fits = status is SUCCESS or status.ok
    if table.feasible[position]:
        table.feasible_count -= 1
        for raw, values in zip(table.raw, table.values, strict=True):
            old = raw[position]
            values[old] -= 1
            if not values[old]:
                del values[old]
    if fits:
        row = [fn(state, pod, info) for fn in columns.scores]
        table.totals[position] = sum(row[column] * weight for column, weight in columns.plain)
        for raw, values, column in zip(table.raw, table.values, columns.normalised,
                                       strict=True):
            raw[position] = row[column]
            values[row[column]] += 1
        table.feasible_count += 1
    else:
        table.totals[position] = -1
    table.feasible[position] = fits


def examined(feasible: bytearray, start: int, wanted: int, count: int) -> int:
    """How many nodes, from `start` round-robin, hold the first `wanted` feasible ones
    (all of them when fewer are feasible)."""
    size = len(feasible)
    if count <= wanted:
        return size
    if count == size:
        return wanted

    def found(span: int) -> int:
        end = start + span
        if end <= size:
            return feasible.count(1, start, end)
        return feasible.count(1, start, size) + feasible.count(1, 0, end - size)

    low, high = wanted, size
    while low < high:
        middle = (low + high) // 2
        if found(middle) >= wanted:
            high = middle
        else:
            low = middle + 1
    return low


def window(feasible: bytearray, start: int, span: int) -> list[int]:
    """The positions of the feasible nodes among `span` nodes from `start` round-robin."""
    size = len(feasible)
    end = start + span
    if end <= size:
        return list(compress(range(start, end), feasible[start:end]))
    return [*compress(range(start, size), feasible[start:]),
            *compress(range(end - size), feasible[:end - size])]


def round_robin(feasible: bytearray, start: int) -> Iterator[int]:
    """The positions of all feasible nodes from `start` round-robin, one at a time: a
    search that stops after a window's worth never lists the whole cluster."""
    return chain(compress(range(start, len(feasible)), feasible[start:]),
                 compress(range(start), feasible[:start]))


def best(totals: list[int], start: int, span: int) -> int:
    """The position of the highest total among `span` nodes from `start` round-robin,
    ties broken uniformly at random as kube-scheduler's selectHost."""
    size = len(totals)
    end = start + span
    window = totals[start:end] if end <= size else totals[start:] + totals[:end - size]
    top = max(window)
    # count() and index() scan in C; a list of the tied positions cost a cycle more
    # than the search for the best total itself.
    ties = window.count(top)
    if ties == len(window):
        offset = random.randrange(ties)
    else:
        offset = window.index(top)
        for _ in range(random.randrange(ties)):
            offset = window.index(top, offset + 1)
    return (start + offset) % size
