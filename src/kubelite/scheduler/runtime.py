"""The framework runner: one profile's plugins sorted by extension point, and the
scheduling and binding cycles that call them.

`Framework.schedule` is the pure part (snapshot in, `Placement` out) that both
the scheduler loop and `kubelite explain-placement` run.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, mul

from kubelite.scheduler.changelog import ChangeLog
from kubelite.scheduler.classtable import (
    ClassTables,
    Columns,
    Filter,
    best,
    examined,
    round_robin,
    window,
)
from kubelite.scheduler.equivalence import (
    NODE_LOCAL,
    EquivalenceCache,
    NodeResult,
    equivalence_key,
)
from kubelite.scheduler.framework import (
    SUCCESS,
    BindPlugin,
    Code,
    CycleState,
    FilterPlugin,
    NormalizeScorePlugin,
    PermitPlugin,
    PostFilterPlugin,
    PreBindPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ReservePlugin,
    ScorePlugin,
    Status,
)
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

# kube-scheduler's minFeasibleNodesToFind and minFeasibleNodesPercentageToFind.
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENTAGE = 5


def num_feasible_nodes_to_find(total: int, percentage: int = 0) -> int:
    """How many feasible nodes a cycle looks for before scoring: all of a small
    cluster; in a large one `percentage`% of it, or when 0 Kubernetes' adaptive
    default of 50% falling by 1% per 125 nodes, down to 5%, and at least 100."""
    if total < MIN_FEASIBLE_NODES:
        return total
    if percentage <= 0:
        percentage = max(50 - total // 125, MIN_FEASIBLE_PERCENTAGE)
    return max(total * min(percentage, 100) // 100, MIN_FEASIBLE_NODES)


@dataclass
class Placement:
    """One cycle's findings: why each examined node passed or failed, the scores of the
    feasible ones by plugin (normalised, before weights), the totals and the choice."""

    pod: PodInfo
    total_nodes: int
    pre_filter: Status | None = None
    filtered: dict[str, Status] = field(default_factory=dict)
    feasible: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    chosen: str | None = None
    skipped_filters: tuple[str, ...] = ()
    skipped_scores: tuple[str, ...] = ()
    post_filter: Status | None = None
    nominated: str | None = None
    # the score plugins run, each scored node's raw scores in that order, and the
    # normalised scores of the plugins that normalise: `scores` is built from them
    # only when asked for, since a cycle needs just the totals
    scorers: tuple[str, ...] = ()
    rows: list[tuple[NodeInfo, tuple[int, ...]]] = field(default_factory=list)
    normalized: dict[str, dict[str, int]] = field(default_factory=dict)
    # nodes examined, when a class table chose without a status per node
    looked_at: int = -1

    @property
    def examined(self) -> int:
        """How many nodes from the round-robin start the cycle looked at."""
        return self.looked_at if self.looked_at >= 0 else len(self.filtered)

    @property
    def scores(self) -> dict[str, dict[str, int]]:
        """plugin -> node -> score (normalised, before weights)."""
        return {name: self.normalized.get(name) or {
            node.name: row[column] for node, row in self.rows}
            for column, name in enumerate(self.scorers)}


def fit_error(placement: Placement) -> str:
    """kube-scheduler's FitError text: `0/N nodes are available: ` then the PreFilter
    message, or the per-node reasons counted and sorted as strings, then the
    PostFilter (preemption) message, each part ending in a period."""
    message = f"0/{placement.total_nodes} nodes are available:"
    if placement.pre_filter is not None:
        message += f" {placement.pre_filter.message}."
    else:
        counts: Counter[str] = Counter()
        for status in placement.filtered.values():
            counts.update(status.reasons)
        if counts:
            message += " " + ", ".join(sorted(f"{n} {r}" for r, n in counts.items())) + "."
    if placement.post_filter is not None and placement.post_filter.reasons:
        message += f" {placement.post_filter.message}."
    return message


class Framework:
    """One scheduling profile: its plugins per extension point, score weights and
    `percentageOfNodesToScore` (0: adaptive)."""

    def __init__(self, name: str, plugins: list[object], *, weights: dict[str, int] | None = None,
                 percentage_of_nodes_to_score: int = 0,
                 disabled: dict[str, frozenset[str]] | None = None) -> None:
        self.name = name
        self.plugins = plugins
        self.weights = weights or {}
        self.percentage = percentage_of_nodes_to_score
        # extension point (as in KubeSchedulerConfiguration: "filter", "score", ...) ->
        # plugins switched off at that point only
        off = disabled or {}

        def at(point: str, proto: type) -> list:
            return [p for p in plugins if isinstance(p, proto)
                    and getattr(p, "name", "") not in off.get(point, ())]

        self.pre_filters: list[PreFilterPlugin] = at("preFilter", PreFilterPlugin)
        self.filters: list[FilterPlugin] = at("filter", FilterPlugin)
        self.post_filters: list[PostFilterPlugin] = at("postFilter", PostFilterPlugin)
        self.pre_scores: list[PreScorePlugin] = at("preScore", PreScorePlugin)
        self.scorers: list[tuple[ScorePlugin, bool, int]] = [
            (p, isinstance(p, NormalizeScorePlugin), self.weights.get(p.name, 1))
            for p in at("score", ScorePlugin)]
        self.reserves: list[ReservePlugin] = at("reserve", ReservePlugin)
        self.permits: list[PermitPlugin] = at("permit", PermitPlugin)
        self.pre_binds: list[PreBindPlugin] = at("preBind", PreBindPlugin)
        self.binders: list[BindPlugin] = at("bind", BindPlugin)
        self._waiting: dict[str, asyncio.Future[Status]] = {}
        self.equivalence = EquivalenceCache()
        self.tables = ClassTables()

    def plugin(self, name: str) -> object | None:
        return next((p for p in self.plugins if getattr(p, "name", None) == name), None)

    # ---- scheduling cycle ----------------------------------------------------------

    def run_pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        for plugin in self.pre_filters:
            status = plugin.pre_filter(state, pod)
            if status.code is Code.SKIP:
                state.skip_filter.add(plugin.name)
            elif not status.ok:
                return Status(status.code, status.reasons, status.plugin or plugin.name)
        return SUCCESS

    def run_filters(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for plugin in self.filters:
            if plugin.name in state.skip_filter:
                continue
            status = plugin.filter(state, pod, node)
            if not status.ok:
                return status
        return SUCCESS

    def schedule(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo], *,
                 start: int = 0, all_nodes: bool = False,
                 nominated: dict[str, list[PodInfo]] | None = None,
                 cache: ChangeLog | None = None) -> Placement:
        """Filter nodes from `start` round-robin until enough are feasible, score them,
        pick the best (ties at random, as kube-scheduler). `all_nodes` filters and
        scores every node, for explanations. Given the scheduler's `cache` (whose
        node list `nodes` must be), the pod is placed from its class table when that
        can answer."""
        placement = Placement(pod=pod, total_nodes=len(nodes))
        status = self.run_pre_filter(state, pod)
        if not status.ok:
            placement.pre_filter = status
            placement.filtered = {n.name: status for n in nodes}
            return placement
        placement.skipped_filters = tuple(sorted(state.skip_filter))
        total = len(nodes)
        wanted = total if all_nodes or not self.scorers else num_feasible_nodes_to_find(
            total, self.percentage)
        active = [p for p in self.filters if p.name not in state.skip_filter]
        filters = [p.filter for p in active]
        memo = None
        if not all_nodes and cache is not None and not nominated and self.scorers and total:
            found = self._choose_alike(state, pod, active, cache, start % total, wanted)
            if found is not None:
                placement.chosen, placement.looked_at = found
                return placement
            state.skip_score.clear()
        if not all_nodes and all(p.name in NODE_LOCAL for p in active):
            memo = self.equivalence.results(pod)
        filtered = placement.filtered
        feasible_infos: list[NodeInfo] = []
        for i in range(total):
            info = nodes[(start + i) % total] if start else nodes[i]
            extra = nominated.get(info.name) if nominated else None
            if extra:
                status = self._filter_with_nominated(state, pod, info, extra)
            else:
                known = memo.get(info.name) if memo is not None else None
                if known is not None and known.generation == info.generation:
                    status = known.status
                else:
                    status = SUCCESS
                    for fn in filters:
                        status = fn(state, pod, info)
                        if status is not SUCCESS and not status.ok:
                            break
                    if memo is not None:
                        memo[info.name] = NodeResult(info.generation, status)
            filtered[info.name] = status
            if status is SUCCESS or status.ok:
                feasible_infos.append(info)
                if len(feasible_infos) >= wanted:
                    break
        placement.feasible = [n.name for n in feasible_infos]
        if not feasible_infos:
            return placement
        if len(feasible_infos) == 1 and not all_nodes:
            placement.chosen = feasible_infos[0].name
            return placement
        placement.totals = self.score(state, pod, feasible_infos, placement, memo=memo)
        placement.chosen = select_host(placement.totals)
        return placement

    def _choose_alike(self, state: CycleState, pod: PodInfo, filters: list[FilterPlugin],
                      cache: ChangeLog, start: int, wanted: int) -> tuple[str, int] | None:
        """(node, nodes examined) from the pod's class table, or None when the full
        cycle must run: a node-local normalising plugin's scores differ between
        nodes, or no node fits (whose reasons the full cycle reports).

        The table holds what node-local plugins answer. The other filters run on the
        nodes the table finds feasible, from the round-robin start until enough pass,
        and the other scorers score those, as the full cycle does: plugins that count
        pods across the cluster cost the window, not the whole cluster."""
        nodes = cache.node_list()
        for plugin in self.pre_scores:
            if plugin.name not in NODE_LOCAL:
                continue
            if plugin.pre_score(state, pod, nodes).code is Code.SKIP:
                state.skip_score.add(plugin.name)
        local_filters = [p for p in filters if p.name in NODE_LOCAL]
        live_filters = [p.filter for p in filters if p.name not in NODE_LOCAL]
        local = [s for s in self.scorers
                 if s[0].name in NODE_LOCAL and s[0].name not in state.skip_score]
        columns = Columns(
            filters=[p.filter for p in local_filters], scores=[p.score for p, _, _ in local],
            plain=[(c, w) for c, (_, normalise, w) in enumerate(local) if not normalise],
            normalised=[c for c, (_, normalise, _) in enumerate(local) if normalise])
        key = (equivalence_key(pod), tuple(p.name for p in local_filters),
               tuple(p.name for p, _, _ in local))
        table = self.tables.table(key, state, pod, columns, cache)
        if not table.feasible_count or any(len(v) > 1 for v in table.values):
            return None
        live_pre_scores = [p for p in self.pre_scores if p.name not in NODE_LOCAL]
        for plugin in live_pre_scores:
            if getattr(plugin, "scores_pod", None) is not None and not plugin.scores_pod(pod):
                state.skip_score.add(plugin.name)
        live_scorers = [s for s in self.scorers
                        if s[0].name not in NODE_LOCAL and s[0].name not in state.skip_score]
        if live_filters:
            positions, span = self._live_window(state, pod, live_filters, table.feasible,
                                                nodes, start, wanted)
            if not positions:
                return None
        else:
            span = examined(table.feasible, start, wanted, table.feasible_count)
            if not live_scorers:
                return nodes[best(table.totals, start, span)].name, span
            positions = window(table.feasible, start, span)
        infos = list(map(nodes.__getitem__, positions))
        totals = list(map(table.totals.__getitem__, positions))
        if len(infos) > 1 and live_scorers:
            for plugin in live_pre_scores:
                if (plugin.name not in state.skip_score
                        and plugin.pre_score(state, pod, infos).code is Code.SKIP):
                    state.skip_score.add(plugin.name)
            for plugin, normalise, weight in live_scorers:
                if plugin.name in state.skip_score:
                    continue
                scorer = getattr(plugin, "score_window", None)
                raw = (scorer(state, pod, infos) if scorer is not None
                       else [plugin.score(state, pod, info) for info in infos])
                normaliser = getattr(plugin, "normalize_window", None) if normalise else None
                if normaliser is not None:
                    raw = normaliser(state, pod, infos, raw)
                elif normalise:
                    scores = dict(zip([info.name for info in infos], raw, strict=True))
                    plugin.normalize_scores(state, pod, scores)  # type: ignore[attr-defined]
                    raw = list(scores.values())
                if len(raw) != len(totals):
                    raise ValueError(f"{plugin.name} scored {len(raw)} of {len(totals)} nodes")
                totals = list(map(add, totals, raw if weight == 1
                                  else map(mul, raw, repeat(weight))))
        return infos[best(totals, 0, len(totals))].name, span

    @staticmethod
    def _live_window(state: CycleState, pod: PodInfo, live: list[Filter], feasible: bytearray,
                     nodes: list[NodeInfo], start: int, wanted: int) -> tuple[list[int], int]:
        """The positions of the first `wanted` nodes, from `start` round-robin, that
        the table finds feasible and `live` filters pass; and how many nodes that
        examined (all of them when fewer pass)."""
        size = len(nodes)
        passed: list[int] = []
        for position in round_robin(feasible, start):
            info = nodes[position]
            for fn in live:
                status = fn(state, pod, info)
                if status is not SUCCESS and not status.ok:
                    break
            else:
                passed.append(position)
                if len(passed) >= wanted:
                    return passed, (position - start) % size + 1
        return passed, size

    def _filter_with_nominated(self, state: CycleState, pod: PodInfo, info: NodeInfo,
                               nominated: list[PodInfo]) -> Status:
        """Pods nominated to this node by preemption, of at least this pod's priority,
        count as if running there (kube-scheduler runs filters twice: with and without)."""
        others = [p for p in nominated if p.key != pod.key and p.priority >= pod.priority]
        if others:
            with_them = info.clone()
            for other in others:
                with_them.add_pod(other)
            status = self.run_filters(state, pod, with_them)
            if not status.ok:
                return status
        return self.run_filters(state, pod, info)

    def score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo],
              placement: Placement, *, memo: dict[str, NodeResult] | None = None
              ) -> dict[str, int]:
        """Totals by node; raw scores are taken from `memo` (the pod's equivalence
        class) where the node is unchanged and every score plugin run is node-local."""
        for plugin in self.pre_scores:
            status = plugin.pre_score(state, pod, nodes)
            if status.code is Code.SKIP:
                state.skip_score.add(plugin.name)
        placement.skipped_scores = tuple(sorted(state.skip_score))
        active = [s for s in self.scorers if s[0].name not in state.skip_score]
        names = placement.scorers = tuple(p.name for p, _, _ in active)
        if memo is not None and not NODE_LOCAL.issuperset(names):
            memo = None
        functions = [p.score for p, _, _ in active]
        plain = [(column, weight) for column, (_, normalize, weight) in enumerate(active)
                 if not normalize]
        rows = placement.rows
        totals: dict[str, int] = {}
        for node in nodes:
            known = memo.get(node.name) if memo is not None else None
            if known is not None and known.generation == node.generation \
                    and known.scorers == names:
                rows.append((node, known.scores))
                totals[node.name] = known.base
                continue
            row = tuple([fn(state, pod, node) for fn in functions])
            base = sum(row[column] * weight for column, weight in plain)
            if known is not None and known.generation == node.generation:
                known.scorers, known.scores, known.base = names, row, base
            rows.append((node, row))
            totals[node.name] = base
        for column, (plugin, normalize, weight) in enumerate(active):
            if not normalize:
                continue
            per_node = {node.name: row[column] for node, row in rows}
            plugin.normalize_scores(state, pod, per_node)  # type: ignore[attr-defined]
            placement.normalized[plugin.name] = per_node
            for name, value in per_node.items():
                totals[name] += value * weight
        return totals

    async def run_post_filter(self, state: CycleState, pod: PodInfo,
                              placement: Placement) -> None:
        for plugin in self.post_filters:
            nominated, status = await plugin.post_filter(state, pod, placement.filtered)
            placement.post_filter = status
            if status.ok:
                placement.nominated = nominated
                return

    # ---- reserve, permit, binding cycle ----------------------------------------------

    def run_reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        for i, plugin in enumerate(self.reserves):
            status = plugin.reserve(state, pod, node)
            if not status.ok:
                for done in reversed(self.reserves[:i + 1]):
                    done.unreserve(state, pod, node)
                return status
        return SUCCESS

    def run_unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        for plugin in reversed(self.reserves):
            plugin.unreserve(state, pod, node)

    def run_permit(self, state: CycleState, pod: PodInfo, node: str) -> tuple[Status, float]:
        """Success, a rejection, or Wait with the longest timeout a plugin asked for."""
        timeout = 0.0
        for plugin in self.permits:
            status, wait = plugin.permit(state, pod, node)
            if status.code is Code.WAIT:
                timeout = max(timeout, wait)
            elif not status.ok:
                return status, 0.0
        if timeout:
            self._waiting[pod.key] = asyncio.get_running_loop().create_future()
            return Status(Code.WAIT), timeout
        return SUCCESS, 0.0

    def allow(self, key: str) -> None:
        """Let a pod held by Permit go on to binding."""
        future = self._waiting.get(key)
        if future is not None and not future.done():
            future.set_result(SUCCESS)

    def reject(self, key: str, plugin: str, reason: str) -> None:
        future = self._waiting.get(key)
        if future is not None and not future.done():
            future.set_result(Status.unschedulable(plugin, reason))

    async def wait_on_permit(self, pod: PodInfo, timeout: float) -> Status:
        future = self._waiting.get(pod.key)
        if future is None:
            return SUCCESS
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return Status.unschedulable("", "rejected due to timeout after waiting "
                                        f"{timeout:g}s at plugin Permit")
        finally:
            self._waiting.pop(pod.key, None)

    async def run_pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        for plugin in self.pre_binds:
            status = await plugin.pre_bind(state, pod, node)
            if not status.ok:
                return status
        return SUCCESS

    async def run_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        for plugin in self.binders:
            status = await plugin.bind(state, pod, node)
            if status.code is not Code.SKIP:
                return status
        return Status.error("", "no bind plugin bound the pod")


def select_host(totals: dict[str, int]) -> str | None:
    best: list[str] = []
    top = -1
    for name, value in totals.items():
        if value > top:
            top, best = value, [name]
        elif value == top:
            best.append(name)
    return random.choice(best) if best else None
