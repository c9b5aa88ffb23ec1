"""Builders for scheduler tests: pods, nodes, and a snapshot to run plugins against."""

from __future__ import annotations

from typing import Any

from kubelite.scheduler.cache import SchedulerCache
from kubelite.scheduler.config import Profile, SchedulerConfiguration, build_framework
from kubelite.scheduler.explain import StaticLister
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo
from kubelite.scheduler.plugins import PluginContext
from kubelite.scheduler.runtime import Framework
from kubelite.scheduler.scheduler import WATCHED, SchedulerHandle

Obj = dict[str, Any]


def make_pod(name: str = "p", *, namespace: str = "default", cpu: str | None = None,
             memory: str | None = None, labels: dict[str, str] | None = None,
             node: str | None = None, priority: int | None = None, **spec: Any) -> Obj:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    extra = spec.pop("requests", {})
    requests.update(extra)
    container: Obj = {"name": "c", "image": spec.pop("image", "busybox")}
    if requests:
        container["resources"] = {"requests": requests}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    body: Obj = {"containers": [container], **spec}
    if node:
        body["nodeName"] = node
    if priority is not None:
        body["priority"] = priority
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "labels": labels or {}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": body, "status": {"phase": "Running" if node else "Pending"}}


def make_node(name: str = "n", *, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
              unschedulable: bool = False, images: list[Obj] | None = None,
              extra: dict[str, str] | None = None) -> Obj:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": spec,
            "status": {"allocatable": allocatable, "capacity": allocatable,
                       "images": images or []}}


class Cluster:
    """Nodes with pods on them and the other objects plugins read, as the scheduler
    sees them, and the default profile's framework over it."""

    def __init__(self, nodes: list[Obj], pods: list[Obj] = (), **others: list[Obj]) -> None:
        self.cache = SchedulerCache()
        for node in nodes:
            self.cache.set_node(node)
        for pod in pods:
            self.cache.add_pod(PodInfo.of(pod), pod["spec"]["nodeName"])
        self.listers = {p: StaticLister(others.get(p, [])) for p in WATCHED}
        self.handle = SchedulerHandle(self.cache, self.listers)

    def framework(self, profile: Profile | None = None,
                  config: SchedulerConfiguration | None = None) -> Framework:
        return build_framework(profile or Profile(), config or SchedulerConfiguration(),
                               PluginContext(self.handle, self.cache))

    def node(self, name: str) -> NodeInfo:
        info = self.cache.node(name)
        assert info is not None
        return info
