"""The HorizontalPodAutoscaler controller (autoscaling/v2): every `sync_period`
seconds, reads the target's scale and its pods' usage from metrics.k8s.io, asks
the replica calculator (hpa_replicas.py) for the replica count of each metric,
takes the largest, applies the behavior rules and writes the target's scale.

Kubernetes syncs every 15 s (--horizontal-pod-autoscaler-sync-period); kubelite
uses 5 s, the agents' sampling period, since each sync costs one metrics request.
Resource metrics (cpu, memory; Utilization and AverageValue) are supported;
Pods, Object, External and ContainerResource metrics are reported as not
supported in the ScalingActive condition instead of being silently ignored.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.api.registry import by_kind, lookup
from kubelite.api.selectors import LabelSelector
from kubelite.api.validation_values import parse_quantity
from kubelite.client import ApiError, Client, Controller, EventRecorder, InformerFactory, NotFound
from kubelite.controllers.hpa_replicas import (
    MetricError,
    Proposal,
    Recommendations,
    resource_replicas,
    stabilize,
)

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HPAS = lookup("autoscaling", "v2", "horizontalpodautoscalers")
PODS = lookup("", "v1", "pods")
# namespace, label selector -> pod name -> {"cpu": cores, "memory": bytes}
UsageSource = Callable[[str, str], Awaitable[dict[str, dict[str, float]]]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metrics_api(client: Client) -> UsageSource:
    """Pod usage from the API server's metrics.k8s.io, summed over containers."""
    async def usage(namespace: str, selector: str) -> dict[str, dict[str, float]]:
        listed = await client.request(
            "GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods",
            params={"labelSelector": selector} if selector else None)
        out: dict[str, dict[str, float]] = {}
        for item in listed.get("items") or []:
            totals = out.setdefault(item["metadata"]["name"], {"cpu": 0.0, "memory": 0.0})
            for c in item.get("containers") or []:
                for resource in ("cpu", "memory"):
                    value = parse_quantity((c.get("usage") or {}).get(resource, "0"))
                    totals[resource] += float(value or 0)
        return out
    return usage


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(self, client: Client, factory: InformerFactory, *, sync_period: float = 5.0,
                 usage: UsageSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(workers=2)
        assert HPAS is not None and PODS is not None
        self.client = client
        self.sync_period = sync_period
        self.usage = usage or metrics_api(client)
        self.clock = clock
        self.recorder = EventRecorder(client, component="horizontal-pod-autoscaler")
        self.hpas = self.watch(factory.informer(HPAS))
        self.pods = factory.informer(PODS)
        self._track(self.pods)
        self.history: dict[str, Recommendations] = {}

    async def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.history.pop(key, None)
            return
        try:
            await self._reconcile(key, hpa)
        finally:
            self.queue.add_after(key, self.sync_period)

    async def _reconcile(self, key: str, hpa: Obj) -> None:
        ns, spec = hpa["metadata"]["namespace"], hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        target = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        conditions: dict[str, tuple[str, str, str]] = {}
        if target is None or target.subresource("scale") is None:
            conditions["AbleToScale"] = ("False", "FailedGetScale",
                                         f"the HPA controller was unable to get the target's "
                                         f"current scale: no scale subresource for "
                                         f"{ref.get('kind')} {ref.get('apiVersion')}")
            await self._status(hpa, conditions)
            return
        try:
            scale = await self.client.get(target, ref.get("name", ""), ns, subresource="scale")
        except NotFound as e:
            conditions["AbleToScale"] = ("False", "FailedGetScale",
                                         f"the HPA controller was unable to get the target's "
                                         f"current scale: {e}")
            await self._status(hpa, conditions)
            return
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        minimum, maximum = int(spec.get("minReplicas") or 1), int(spec.get("maxReplicas") or 1)
        status: Obj = {"currentReplicas": int((scale.get("status") or {}).get("replicas") or 0)}
        if current == 0 and minimum != 0:
            conditions["AbleToScale"] = ("True", "SucceededGetScale",
                                         "the HPA controller was able to get the target's "
                                         "current scale")
            conditions["ScalingActive"] = ("False", "ScalingDisabled",
                                           "scaling is disabled since the replica count of the "
                                           "target is zero")
            await self._status(hpa, conditions, {**status, "desiredReplicas": 0})
            return
        conditions["AbleToScale"] = ("True", "SucceededGetScale",
                                     "the HPA controller was able to get the target's current "
                                     "scale")
        selector = (scale.get("status") or {}).get("selector") or ""
        try:
            proposed, metrics, reason = await self._propose(ns, spec, current, selector)
        except (MetricError, ApiError) as e:
            conditions["ScalingActive"] = ("False", "FailedGetResourceMetric",
                                           f"the HPA was unable to compute the replica count: {e}")
            await self.recorder.record(hpa, "Warning", "FailedGetResourceMetric", str(e))
            await self._status(hpa, conditions, {**status, "desiredReplicas": current})
            return
        conditions["ScalingActive"] = ("True", "ValidMetricFound",
                                       f"the HPA was able to successfully calculate a replica "
                                       f"count from {reason}")
        history = self.history.setdefault(key, Recommendations([], []))
        now = self.clock()
        desired, why = stabilize(current=current, proposed=proposed, minimum=minimum,
                                 maximum=maximum, behavior=spec.get("behavior"),
                                 history=history, now=now)
        limited = why in ("TooManyReplicas", "TooFewReplicas", "ScaleUpLimit", "ScaleDownLimit")
        conditions["ScalingLimited"] = (("True", why, "the desired replica count is limited")
                                        if limited else
                                        ("False", "DesiredWithinRange",
                                         "the desired count is within the acceptable range"))
        if why == "ScaleDownStabilized":
            conditions["AbleToScale"] = ("True", why, "recent recommendations were higher than "
                                         "current one, applying the highest recent "
                                         "recommendation")
        status.update(desiredReplicas=desired, currentMetrics=metrics)
        if desired != current:
            await self.client.patch(target, ref["name"], {"spec": {"replicas": desired}},
                                    namespace=ns, subresource="scale")
            history.events.append((now, desired - current))
            status["lastScaleTime"] = _now()
            direction = "above" if desired > current else "below"
            await self.recorder.record(hpa, "Normal", "SuccessfulRescale",
                                       f"New size: {desired}; reason: {reason} {direction} target")
        await self._status(hpa, conditions, status)

    async def _propose(self, ns: str, spec: Obj, current: int,
                       selector: str) -> tuple[int, list[Obj], str]:
        metric_specs = spec.get("metrics") or [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
        label = LabelSelector.parse(selector) if selector else None
        pods = [p for p in self.pods.by_index("namespace", ns)
                if label is not None and label.matches(p["metadata"].get("labels"))]
        usage = await self.usage(ns, selector)
        best: tuple[int, list[Obj], str] | None = None
        current_metrics = []
        for metric in metric_specs:
            if metric.get("type") != "Resource":
                raise MetricError(f"metrics of type {metric.get('type')} are not supported")
            resource = metric["resource"]["name"]
            target = metric["resource"].get("target") or {}
            average = parse_quantity(target["averageValue"]) if "averageValue" in target else None
            proposal: Proposal = resource_replicas(
                current=current, pods=pods, resource=resource,
                usage={n: u[resource] for n, u in usage.items() if resource in u},
                target_utilization=target.get("averageUtilization"),
                target_average=float(average) if average is not None else None)
            measured: Obj = {"averageValue": _quantity(resource, proposal.average_value)}
            if proposal.utilization is not None:
                measured["averageUtilization"] = proposal.utilization
            current_metrics.append({"type": "Resource",
                                    "resource": {"name": resource, "current": measured}})
            what = (f"{resource} resource utilization (percentage of request)"
                    if proposal.utilization is not None else f"{resource} resource")
            if best is None or proposal.replicas > best[0]:
                best = (proposal.replicas, current_metrics, what)
        assert best is not None
        return best[0], current_metrics, best[2]

    async def _status(self, hpa: Obj, conditions: dict[str, tuple[str, str, str]],
                      status: Obj | None = None) -> None:
        old = hpa.get("status") or {}
        previous = {c["type"]: c for c in old.get("conditions") or []}
        merged = []
        for type_, (state, reason, message) in conditions.items():
            before = previous.get(type_) or {}
            since = before.get("lastTransitionTime") if before.get("status") == state else _now()
            merged.append({"type": type_, "status": state, "reason": reason, "message": message,
                           "lastTransitionTime": since})
        new = {**old, **(status or {}), "conditions": merged,
               "observedGeneration": hpa["metadata"].get("generation", 1)}
        if new == old:
            return
        try:
            await self.client.update_status(HPAS, {**hpa, "status": new})
        except ApiError as e:  # a newer version arrives through the informer
            log.debug("HPA status of %s: %s", hpa["metadata"]["name"], e)


def _quantity(resource: str, value: float) -> str:
    if resource == "cpu":
        return f"{round(value * 1000)}m"
    return str(round(value))
