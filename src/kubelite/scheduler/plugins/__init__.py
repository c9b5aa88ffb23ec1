"""Scheduler plugins, one per module, and the registry that builds them by name for
a profile (`kubelite.scheduler.config`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubelite.scheduler.plugins.balancedallocation import BalancedAllocation
from kubelite.scheduler.plugins.defaultbinder import DefaultBinder
from kubelite.scheduler.plugins.defaultpreemption import DefaultPreemption
from kubelite.scheduler.plugins.imagelocality import ImageLocality
from kubelite.scheduler.plugins.interpodaffinity import InterPodAffinity
from kubelite.scheduler.plugins.nodeaffinity import NodeAffinity
from kubelite.scheduler.plugins.nodename import NodeName
from kubelite.scheduler.plugins.nodeports import NodePorts
from kubelite.scheduler.plugins.noderesources import NodeResourcesFit, ScoringStrategy
from kubelite.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from kubelite.scheduler.plugins.podtopologyspread import SYSTEM_DEFAULTS, PodTopologySpread
from kubelite.scheduler.plugins.tainttoleration import TaintToleration
from kubelite.scheduler.plugins.volumebinding import VolumeBinding
from kubelite.scheduler.plugins.volumerestrictions import VolumeRestrictions

if TYPE_CHECKING:
    from kubelite.client import Client, EventRecorder
    from kubelite.scheduler.cache import SchedulerCache
    from kubelite.scheduler.framework import Handle

Obj = dict[str, Any]


@dataclass
class PluginContext:
    """What a plugin factory may give the plugin it builds."""

    handle: Handle
    cache: SchedulerCache
    client: Client | None = None
    recorder: EventRecorder | None = None
    args: Obj = field(default_factory=dict)


def _topology_spread(ctx: PluginContext) -> PodTopologySpread:
    defaults: tuple[Obj, ...] = SYSTEM_DEFAULTS
    if ctx.args.get("defaultingType") == "List":
        defaults = tuple(ctx.args.get("defaultConstraints") or ())
    return PodTopologySpread(handle=ctx.handle, default_constraints=defaults)


REGISTRY: dict[str, Callable[[PluginContext], object]] = {
    "NodeUnschedulable": lambda ctx: NodeUnschedulable(),
    "NodeName": lambda ctx: NodeName(),
    "TaintToleration": lambda ctx: TaintToleration(),
    "NodeAffinity": lambda ctx: NodeAffinity(added_affinity=ctx.args.get("addedAffinity")),
    "NodePorts": lambda ctx: NodePorts(),
    "NodeResourcesFit": lambda ctx: NodeResourcesFit(
        strategy=ScoringStrategy.from_args(ctx.args),
        ignored_resources=frozenset(ctx.args.get("ignoredResources") or ())),
    "VolumeRestrictions": lambda ctx: VolumeRestrictions(handle=ctx.handle),
    "VolumeBinding": lambda ctx: VolumeBinding(
        handle=ctx.handle, client=ctx.client,
        bind_timeout=float(ctx.args.get("bindTimeoutSeconds") or 600)),
    "PodTopologySpread": _topology_spread,
    "InterPodAffinity": lambda ctx: InterPodAffinity(
        handle=ctx.handle, affinity_pods=ctx.cache,
        hard_pod_affinity_weight=int(ctx.args.get("hardPodAffinityWeight", 1))),
    "DefaultPreemption": lambda ctx: DefaultPreemption(
        handle=ctx.handle, client=ctx.client, recorder=ctx.recorder,
        min_candidate_nodes_percentage=int(ctx.args.get("minCandidateNodesPercentage", 10)),
        min_candidate_nodes_absolute=int(ctx.args.get("minCandidateNodesAbsolute", 100))),
    "NodeResourcesBalancedAllocation": lambda ctx: BalancedAllocation(
        resources=tuple(r["name"] for r in ctx.args.get("resources") or ())
        or ("cpu", "memory")),
    "ImageLocality": lambda ctx: ImageLocality(handle=ctx.handle,
                                               image_nodes=ctx.cache.image_nodes),
    "DefaultBinder": lambda ctx: DefaultBinder(client=ctx.client) if ctx.client else None,
}

# Kubernetes' default profile (v1.32 multiPoint), in order, with score weights.
# PrioritySort (the queue's order) and SchedulingGates are built into the queue.
DEFAULT_PLUGINS: tuple[tuple[str, int], ...] = (
    ("NodeUnschedulable", 0), ("NodeName", 0), ("TaintToleration", 3), ("NodeAffinity", 2),
    ("NodePorts", 0), ("NodeResourcesFit", 1), ("VolumeRestrictions", 0),
    ("VolumeBinding", 0), ("PodTopologySpread", 2), ("InterPodAffinity", 2),
    ("DefaultPreemption", 0), ("NodeResourcesBalancedAllocation", 1), ("ImageLocality", 1),
    ("DefaultBinder", 0))
BUILT_IN = frozenset({"PrioritySort", "SchedulingGates"})

__all__ = ["BUILT_IN", "DEFAULT_PLUGINS", "REGISTRY", "BalancedAllocation", "DefaultBinder",
           "DefaultPreemption", "ImageLocality", "InterPodAffinity", "NodeAffinity", "NodeName",
           "NodePorts", "NodeResourcesFit", "NodeUnschedulable", "PluginContext",
           "PodTopologySpread", "TaintToleration", "VolumeBinding", "VolumeRestrictions"]
