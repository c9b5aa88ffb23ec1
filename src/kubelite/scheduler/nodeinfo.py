"""What the scheduler knows of pods and nodes, computed once per object version so
that the per-node work of a cycle reads plain attributes.

`PodInfo` holds a pod's requests, host ports and parsed affinity terms; `NodeInfo`
holds a node's labels, taints, allocatable resources and the pods counted against
it (bound or assumed), with running sums kept as pods come and go.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubelite.api.errors import APIError
from kubelite.api.selectors import EQUALS, NOT_EQUALS, LabelSelector, Requirement
from kubelite.scheduler.resources import CPU, MEMORY, allocatable, non_zero_requests, pod_requests

Obj = dict[str, Any]
HOSTNAME = "kubernetes.io/hostname"
# One counter for every NodeInfo, as kube-scheduler's nextGeneration: a generation
# is never reused, so that a node deleted and added again under its name, or a
# clone, can never be mistaken for a version seen before.
_generations = itertools.count(1)
ZONE = "topology.kubernetes.io/zone"


def pod_key(pod: Obj) -> str:
    return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"


def selector_of(raw: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector; None and malformed ones select nothing."""
    try:
        return LabelSelector.from_object(raw)
    except APIError:
        return LabelSelector.nothing()


def host_ports(pod: Obj) -> frozenset[tuple[str, str, int]]:
    ports = set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.add((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP",
                           int(p["hostPort"])))
    return frozenset(ports)


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A PodAffinityTerm with its selectors compiled. With neither `namespaces` nor a
    namespace selector it means the owning pod's own namespace."""

    selector: LabelSelector
    topology_key: str
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None

    @classmethod
    def of(cls, term: Obj, own_namespace: str, own_labels: dict[str, str]) -> AffinityTerm:
        raw = term.get("labelSelector")
        selector = selector_of(raw)
        # matchLabelKeys / mismatchLabelKeys narrow the selector by the owner's own values.
        extra = [Requirement(k, EQUALS, (own_labels[k],))
                 for k in term.get("matchLabelKeys") or [] if k in own_labels]
        extra += [Requirement(k, NOT_EQUALS, (own_labels[k],))
                  for k in term.get("mismatchLabelKeys") or [] if k in own_labels]
        if extra and raw is not None:
            selector = LabelSelector([*selector.requirements, *extra])
        ns_sel = term.get("namespaceSelector")
        namespaces = frozenset(term.get("namespaces") or ())
        if not namespaces and ns_sel is None:
            namespaces = frozenset((own_namespace,))
        return cls(selector, term.get("topologyKey") or "", namespaces,
                   selector_of(ns_sel) if ns_sel is not None else None)

    def matches(self, pod: PodInfo, namespace_labels: dict[str, dict[str, str]]) -> bool:
        if pod.namespace not in self.namespaces and (
                self.namespace_selector is None
                or not self.namespace_selector.matches(namespace_labels.get(pod.namespace, {}))):
            return False
        return self.selector.matches(pod.labels)


def _terms(pod: Obj, kind: str, required: bool) -> list[Any]:
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get(kind) or {}
    key = ("requiredDuringSchedulingIgnoredDuringExecution" if required
           else "preferredDuringSchedulingIgnoredDuringExecution")
    return affinity.get(key) or []


@dataclass(slots=True)
class PodInfo:
    pod: Obj
    key: str
    namespace: str
    labels: dict[str, str]
    priority: int
    requests: dict[str, int]
    non_zero_cpu: int
    non_zero_memory: int
    ports: frozenset[tuple[str, str, int]]
    required_affinity: list[AffinityTerm]
    required_anti_affinity: list[AffinityTerm]
    preferred_affinity: list[tuple[int, AffinityTerm]]
    preferred_anti_affinity: list[tuple[int, AffinityTerm]]

    @classmethod
    def of(cls, pod: Obj, *, priority: int | None = None) -> PodInfo:
        meta = pod["metadata"]
        ns = meta.get("namespace") or "default"
        labels = meta.get("labels") or {}
        spec = pod.get("spec") or {}
        non_zero = non_zero_requests(pod)

        def terms(kind: str) -> list[AffinityTerm]:
            return [AffinityTerm.of(t, ns, labels) for t in _terms(pod, kind, True)]

        def weighted(kind: str) -> list[tuple[int, AffinityTerm]]:
            return [(int(t.get("weight") or 0),
                     AffinityTerm.of(t.get("podAffinityTerm") or {}, ns, labels))
                    for t in _terms(pod, kind, False)]

        return cls(
            pod=pod, key=f"{ns}/{meta['name']}", namespace=ns, labels=labels,
            priority=int(spec.get("priority") or 0) if priority is None else priority,
            requests=pod_requests(pod), non_zero_cpu=non_zero[CPU],
            non_zero_memory=non_zero[MEMORY], ports=host_ports(pod),
            required_affinity=terms("podAffinity"),
            required_anti_affinity=terms("podAntiAffinity"),
            preferred_affinity=weighted("podAffinity"),
            preferred_anti_affinity=weighted("podAntiAffinity"))

    @property
    def name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def uid(self) -> str:
        return self.pod["metadata"].get("uid", "")

    @property
    def spec(self) -> Obj:
        return self.pod.get("spec") or {}

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity
                    or self.preferred_affinity or self.preferred_anti_affinity)

    def with_node(self, node_name: str) -> PodInfo:
        return dataclasses.replace(
            self, pod={**self.pod, "spec": {**self.spec, "nodeName": node_name}})


def _taints(node: Obj) -> tuple[Obj, ...]:
    return tuple((node.get("spec") or {}).get("taints") or ())


def _images(node: Obj) -> dict[str, int]:
    images: dict[str, int] = {}
    for image in (node.get("status") or {}).get("images") or []:
        for name in image.get("names") or []:
            images[name] = int(image.get("sizeBytes") or 0)
    return images


@dataclass(slots=True)
class NodeInfo:
    node: Obj
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Obj, ...] = ()
    unschedulable: bool = False
    images: dict[str, int] = field(default_factory=dict)
    allocatable: dict[str, int] = field(default_factory=dict)
    allowed_pods: int = 110
    requested: dict[str, int] = field(default_factory=dict)
    # cpu and memory with containers that request nothing counted at Kubernetes'
    # non-zero defaults, so that scoring spreads them instead of stacking them.
    non_zero_cpu: int = 0
    non_zero_memory: int = 0
    # cpu and memory of `allocatable` and `requested` again, as plain attributes for
    # the per-node hot path of filters and scores
    cpu_allocatable: int = 0
    memory_allocatable: int = 0
    cpu_requested: int = 0
    memory_requested: int = 0
    pods: dict[str, PodInfo] = field(default_factory=dict)
    used_ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    # pods here with any (anti-)affinity term, which InterPodAffinity must check
    affinity_pods: dict[str, PodInfo] = field(default_factory=dict)
    # changes with every change of the node or of its pods: what was computed for a
    # pod against this node at one generation still holds at the same generation
    generation: int = 0

    @classmethod
    def of(cls, node: Obj) -> NodeInfo:
        info = cls(node=node)
        info.set_node(node)
        return info

    def set_node(self, node: Obj) -> None:
        self.generation = next(_generations)
        self.node = node
        self.name = node["metadata"]["name"]
        self.labels = node["metadata"].get("labels") or {}
        self.taints = _taints(node)
        self.unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
        self.images = _images(node)
        self.allocatable = allocatable(node)
        self.allowed_pods = self.allocatable.get("pods", 110)
        self.cpu_allocatable = self.allocatable.get(CPU, 0)
        self.memory_allocatable = self.allocatable.get(MEMORY, 0)

    def add_pod(self, pod: PodInfo) -> None:
        if pod.key in self.pods:
            self.remove_pod(pod.key)
        self.generation = next(_generations)
        self.pods[pod.key] = pod
        requested = self.requested
        for k, v in pod.requests.items():
            requested[k] = requested.get(k, 0) + v
        self.non_zero_cpu += pod.non_zero_cpu
        self.non_zero_memory += pod.non_zero_memory
        self.cpu_requested = requested.get(CPU, 0)
        self.memory_requested = requested.get(MEMORY, 0)
        if pod.ports:
            self.used_ports.update(pod.ports)
        if pod.has_affinity:
            self.affinity_pods[pod.key] = pod

    def remove_pod(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.generation = next(_generations)
        for k, v in pod.requests.items():
            self.requested[k] = self.requested.get(k, 0) - v
        self.non_zero_cpu -= pod.non_zero_cpu
        self.non_zero_memory -= pod.non_zero_memory
        self.cpu_requested = self.requested.get(CPU, 0)
        self.memory_requested = self.requested.get(MEMORY, 0)
        if pod.ports:
            self.used_ports.subtract(pod.ports)
            self.used_ports = +self.used_ports
        self.affinity_pods.pop(key, None)
        return pod

    def clone(self) -> NodeInfo:
        """A copy preemption may remove pods from without touching the cache."""
        copy = NodeInfo(node=self.node, name=self.name, labels=self.labels, taints=self.taints,
                        unschedulable=self.unschedulable, images=self.images,
                        allocatable=self.allocatable, allowed_pods=self.allowed_pods,
                        requested=dict(self.requested), non_zero_cpu=self.non_zero_cpu,
                        non_zero_memory=self.non_zero_memory,
                        cpu_allocatable=self.cpu_allocatable,
                        memory_allocatable=self.memory_allocatable,
                        cpu_requested=self.cpu_requested,
                        memory_requested=self.memory_requested, pods=dict(self.pods),
                        used_ports=Counter(self.used_ports),
                        affinity_pods=dict(self.affinity_pods),
                        generation=next(_generations))
        return copy
