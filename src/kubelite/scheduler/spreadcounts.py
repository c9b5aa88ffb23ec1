"""Matching pods by node and by topology domain, kept up to date from the
scheduler cache's change log.

Every cycle of a pod with topology spread constraints needs how many pods its
selector matches in each domain, and a Deployment's pods all have constraints:
the cluster's defaults, by hostname and by zone. Counting them walks every node
and its pods, which at 5,000 nodes was most of such a cycle. A `Tally` per
constraint (and per set of nodes it counts, which the pod's node affinity and
tolerations decide) keeps each node's count and each domain's sum, and a cycle
recounts only the nodes the cache logged as changed since the tally last looked,
usually the one node the previous pod was assumed on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from kubelite.scheduler.changelog import ChangeLog, Follower, Followers, start
from kubelite.scheduler.nodeinfo import NodeInfo

# How many constraints keep a tally at once (least recently used first out).
DEFAULT_TALLIES = 16


@dataclass(slots=True)
class Tally(Follower):
    # the domain each node counts toward; None where the node does not count
    domains: list[str | None]
    # matching pods on each counted node
    per_node: list[int]
    # matching pods and counted nodes in each domain
    sums: dict[str, int] = field(default_factory=dict)
    members: Counter[str] = field(default_factory=Counter)

    def counts_on(self, names: list[str]) -> list[int | None]:
        """Matching pods on each named node, None where the node does not count: one
        pass for a window of nodes, as scoring reads it."""
        index, domains, per_node = self.index, self.domains, self.per_node
        return [None if (at := index.get(name)) is None or domains[at] is None
                else per_node[at] for name in names]


class SpreadTallies:
    def __init__(self, tallies: int = DEFAULT_TALLIES) -> None:
        self._tallies: Followers[Tally] = Followers(tallies)

    def __len__(self) -> int:
        return len(self._tallies)

    def tally(self, key: Hashable, log: ChangeLog, topology_key: str,
              counts: Callable[[NodeInfo], bool], matching: Callable[[NodeInfo], int]) -> Tally:
        """The tally of `key`, up to date with the cache. `counts` tells whether a node
        counts toward its domain (the node's `topology_key` label), `matching` how many
        of its pods match; equal keys must mean equal functions."""

        def build(log: ChangeLog) -> Tally:
            size = len(log.node_list())
            return Tally(**start(log), domains=[None] * size, per_node=[0] * size)

        def recount(tally: Tally, position: int, info: NodeInfo) -> None:
            old = tally.domains[position]
            if old is not None:
                tally.sums[old] -= tally.per_node[position]
                tally.members[old] -= 1
                if not tally.members[old]:
                    del tally.members[old]
                    del tally.sums[old]
            if counts(info):
                domain = info.labels[topology_key]
                found = matching(info)
                tally.domains[position] = domain
                tally.per_node[position] = found
                tally.sums[domain] = tally.sums.get(domain, 0) + found
                tally.members[domain] += 1
            else:
                tally.domains[position] = None
                tally.per_node[position] = 0

        return self._tallies.get(key, log, build, recount)
