"""Scheduler plugins, one per module; `default_plugins()` is the default profile."""

from __future__ import annotations

from kubelite.scheduler.plugins.nodeaffinity import NodeAffinity
from kubelite.scheduler.plugins.nodename import NodeName
from kubelite.scheduler.plugins.nodeports import NodePorts
from kubelite.scheduler.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from kubelite.scheduler.plugins.nodeunschedulable import NodeUnschedulable
from kubelite.scheduler.plugins.tainttoleration import TaintToleration


def default_plugins() -> list[object]:
    """The default profile, in Kubernetes' order, with its score weights."""
    return [NodeUnschedulable(), NodeName(), TaintToleration(weight=3),
            NodeAffinity(weight=2), NodePorts(), NodeResourcesFit(weight=1),
            BalancedAllocation(weight=1)]


__all__ = ["BalancedAllocation", "NodeAffinity", "NodeName", "NodePorts", "NodeResourcesFit",
           "NodeUnschedulable", "TaintToleration", "default_plugins"]
