"""Explained placement: run a profile's framework for one pod over every node of a
snapshot and describe, per node, the filter that rejected it (and why) or its
scores by plugin, and the node chosen: "why did my pod land there / why is it
Pending". Nothing is assumed, bound or preempted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelite.client.informer import NAMESPACE_INDEX, object_key
from kubelite.scheduler.cache import SchedulerCache
from kubelite.scheduler.config import DEFAULT_SCHEDULER, SchedulerConfiguration, build_framework
from kubelite.scheduler.framework import CycleState, Lister
from kubelite.scheduler.nodeinfo import PodInfo
from kubelite.scheduler.plugins import PluginContext
from kubelite.scheduler.runtime import Placement, fit_error
from kubelite.scheduler.scheduler import WATCHED, SchedulerHandle, priority_of

Obj = dict[str, Any]


class StaticLister:
    """A Lister over a fixed list of objects, keyed as informers key them."""

    def __init__(self, objects: list[Obj]) -> None:
        self._objects = {object_key(o): o for o in objects}

    def get(self, key: str) -> Obj | None:
        return self._objects.get(key)

    def list(self) -> list[Obj]:
        return list(self._objects.values())

    def by_index(self, name: str, value: str) -> list[Obj]:
        if name != NAMESPACE_INDEX:
            raise KeyError(f"no index named {name!r}")
        return [o for o in self._objects.values()
                if (o.get("metadata") or {}).get("namespace") == value]


@dataclass
class Snapshot:
    nodes: list[Obj]
    pods: list[Obj]
    # plural -> objects, for the resources in scheduler.WATCHED
    others: dict[str, list[Obj]]


def explain(pod: Obj, snapshot: Snapshot, *,
            config: SchedulerConfiguration | None = None) -> Placement:
    config = config or SchedulerConfiguration()
    listers: dict[str, Lister] = {p: StaticLister(snapshot.others.get(p, [])) for p in WATCHED}
    cache = SchedulerCache()
    for node in snapshot.nodes:
        cache.set_node(node)
    classes = listers["priorityclasses"]
    key = object_key(pod)
    for other in snapshot.pods:
        node = (other.get("spec") or {}).get("nodeName")
        if node and object_key(other) != key and (other.get("status") or {}).get(
                "phase") not in ("Succeeded", "Failed"):
            cache.add_pod(PodInfo.of(other, priority=priority_of(other, classes)), node)
    handle = SchedulerHandle(cache, listers)
    name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
    profile = next((p for p in config.profiles if p.scheduler_name == name), None)
    if profile is None:
        raise ValueError(f"no profile for schedulerName {name!r}")
    fw = build_framework(profile, config, PluginContext(handle, cache))
    # Explain the placement of a bound pod as if it were still pending.
    pending = {**pod, "spec": {k: v for k, v in (pod.get("spec") or {}).items()
                               if k != "nodeName"}}
    info = PodInfo.of(pending, priority=priority_of(pending, classes))
    return fw.schedule(CycleState(), info, cache.node_list(), all_nodes=True)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def format_placement(placement: Placement, *, weights: dict[str, int] | None = None,
                     bound_to: str | None = None) -> str:
    """A table of every node: FILTER (passed, or the plugin and reasons that failed it),
    each scoring plugin's normalised score (x weight), the weighted TOTAL; then the
    outcome line."""
    weights = weights or {}
    plugins = list(placement.scores)
    header = ["NODE", "FILTER", *(f"{p}(x{weights.get(p, 1)})" for p in plugins), "TOTAL"]
    rows = []
    order = sorted(placement.filtered, key=lambda n: (-placement.totals.get(n, -1), n))
    for node in order:
        status = placement.filtered[node]
        verdict = "passed" if status.ok else f"{status.plugin}: {status.message}"
        scores = [str(placement.scores[p].get(node, "")) for p in plugins]
        total = str(placement.totals.get(node, "")) if status.ok else ""
        marker = " <- chosen" if node == placement.chosen else ""
        rows.append([node, verdict, *scores, total + marker])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), *(_row(r, widths) for r in rows)]
    skipped = [*placement.skipped_filters, *placement.skipped_scores]
    if skipped:
        lines.append(f"not run for this pod (nothing to check): {', '.join(sorted(set(skipped)))}")
    pod = placement.pod.key
    if placement.chosen is not None:
        lines.append(f"chosen: {placement.chosen} (highest total score among "
                     f"{len(placement.feasible)} feasible of {placement.total_nodes} nodes)")
    else:
        lines.append(f"no node fits {pod}: {fit_error(placement)}")
    if bound_to is not None:
        lines.append(f"{pod} is bound to {bound_to}")
    return "\n".join(lines)

