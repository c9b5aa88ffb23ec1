"""How many replicas a HorizontalPodAutoscaler asks for: Kubernetes' replica
calculator (pkg/controller/podautoscaler/replica_calculator.go) for Resource
metrics, and the behavior rules (stabilization windows, scaling policies).

Pure functions over pods, their metrics and the clock, so that every rule is
tested without a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubelite.api.validation_values import parse_quantity

Obj = dict[str, Any]
# Within 10% of the target nothing changes (--horizontal-pod-autoscaler-tolerance).
TOLERANCE = 0.1
# Defaults of autoscaling/v2 behavior when the HPA says nothing.
DEFAULT_SCALE_UP = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15},
    {"type": "Pods", "value": 4, "periodSeconds": 15}]}
DEFAULT_SCALE_DOWN = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
    {"type": "Percent", "value": 100, "periodSeconds": 15}]}


class MetricError(Exception):
    """The metric cannot be computed now (no metrics, a missing request)."""


@dataclass(frozen=True, slots=True)
class Proposal:
    replicas: int
    utilization: int | None  # percent of request, for Utilization targets
    average_value: float  # per pod, in the resource's base unit (cores, bytes)


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _requests(pod: Obj, resource: str) -> float:
    total = 0.0
    for c in (pod.get("spec") or {}).get("containers") or []:
        value = ((c.get("resources") or {}).get("requests") or {}).get(resource)
        if value is None:
            raise MetricError(f"missing request for {resource} in container {c.get('name')} "
                              f"of Pod {pod['metadata']['name']}")
        parsed = parse_quantity(value)
        if parsed is None:
            raise MetricError(f"invalid request {value!r} for {resource} in Pod "
                              f"{pod['metadata']['name']}")
        total += float(parsed)
    return total


def resource_replicas(*, current: int, pods: list[Obj], usage: dict[str, float], resource: str,
                      target_utilization: int | None = None,
                      target_average: float | None = None) -> Proposal:
    """Replicas for one Resource metric. `usage`: pod name -> usage (cores or bytes)."""
    live = [p for p in pods if not (p["metadata"].get("deletionTimestamp")
                                    or (p.get("status") or {}).get("phase") == "Failed")]
    if not live:
        raise MetricError("no pods match the target's selector")
    with_metrics = [p for p in live if p["metadata"]["name"] in usage and _ready(p)]
    missing = [p for p in live if p["metadata"]["name"] not in usage]
    unready = [p for p in live if p["metadata"]["name"] in usage and not _ready(p)]
    if not with_metrics:
        raise MetricError(f"did not receive metrics for any ready pods of {resource}")
    requests = {p["metadata"]["name"]: _requests(p, resource) for p in live} \
        if target_utilization is not None else {}

    def ratio(counted: list[Obj], assumed: dict[str, float]) -> tuple[float, int | None, float]:
        used = sum(usage.get(p["metadata"]["name"], 0.0) for p in counted) + sum(assumed.values())
        names = [p["metadata"]["name"] for p in counted] + list(assumed)
        if target_utilization is not None:
            requested = sum(requests[n] for n in names)
            if requested <= 0:
                raise MetricError(f"no {resource} requests on the target's pods")
            utilization = used / requested * 100
            # Truncated as Kubernetes does (its sums are exact integers of millis).
            return utilization / target_utilization, int(utilization + 1e-9), used / len(names)
        assert target_average is not None
        return used / len(names) / target_average, None, used / len(names)

    r, utilization, average = ratio(with_metrics, {})
    if not missing and not unready:
        if abs(r - 1.0) <= TOLERANCE:
            return Proposal(current, utilization, average)
        return Proposal(math.ceil(r * len(with_metrics)), utilization, average)
    # Pods without metrics count against the move: as using nothing when scaling up,
    # as using exactly the target when scaling down; unready pods count as using
    # nothing, and only when scaling up (they are likely still starting).
    assumed: dict[str, float] = {}
    for p in missing:
        name = p["metadata"]["name"]
        if r > 1.0:
            assumed[name] = 0.0
        elif target_utilization is not None:
            assumed[name] = requests[name] * target_utilization / 100
        else:
            assert target_average is not None
            assumed[name] = target_average
    if r > 1.0:
        assumed.update({p["metadata"]["name"]: 0.0 for p in unready})
    new_r, _, _ = ratio(with_metrics, assumed)
    if abs(new_r - 1.0) <= TOLERANCE or (new_r > 1.0) != (r > 1.0):
        return Proposal(current, utilization, average)
    return Proposal(math.ceil(new_r * (len(with_metrics) + len(assumed))), utilization, average)


@dataclass
class Recommendations:
    """Past proposals, for the stabilization windows, and past scale events, for the
    policies' periods; both kept per HPA by the controller."""

    proposals: list[tuple[float, int]]  # (time, replicas)
    events: list[tuple[float, int]]  # (time, change in replicas)


def _rules(behavior: Obj | None, direction: str) -> Obj:
    default = DEFAULT_SCALE_UP if direction == "scaleUp" else DEFAULT_SCALE_DOWN
    given = (behavior or {}).get(direction) or {}
    return {**default, **{k: v for k, v in given.items() if v is not None}}


def _policy_limit(rules: Obj, current: int, events: list[tuple[float, int]], now: float,
                  up: bool) -> int:
    """The furthest the policies let the replica count go from `current`."""
    limits = []
    for policy in rules.get("policies") or []:
        period = int(policy.get("periodSeconds", 15))
        moved = sum(change for at, change in events if now - at < period
                    and (change > 0) == up)
        start = current - moved  # the replica count at the start of the period
        value = int(policy.get("value", 0))
        if policy.get("type") == "Pods":
            limits.append(start + value if up else start - value)
        else:
            step = math.ceil(start * value / 100) if up else math.floor(start * value / 100)
            limits.append(start + step if up else start - step)
    if not limits:
        return current
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    if up:
        return max(limits) if select == "Max" else min(limits)
    return min(limits) if select == "Max" else max(limits)


def stabilize(*, current: int, proposed: int, minimum: int, maximum: int, behavior: Obj | None,
              history: Recommendations, now: float) -> tuple[int, str]:
    """The replica count to set now and why, as the HPA's normalizeDesiredReplicasWithBehaviors."""
    up_rules, down_rules = _rules(behavior, "scaleUp"), _rules(behavior, "scaleDown")
    history.proposals.append((now, proposed))
    window = max(int(up_rules["stabilizationWindowSeconds"]),
                 int(down_rules["stabilizationWindowSeconds"]))
    history.proposals[:] = [(t, r) for t, r in history.proposals if now - t <= window]
    # Scale up no higher than the lowest, down no lower than the highest recent proposal.
    up_floor = min(r for t, r in history.proposals
                   if now - t <= int(up_rules["stabilizationWindowSeconds"]))
    down_ceiling = max(r for t, r in history.proposals
                       if now - t <= int(down_rules["stabilizationWindowSeconds"]))
    desired = current
    if proposed > current:
        desired = min(proposed, max(up_floor, current))
    elif proposed < current:
        desired = max(proposed, min(down_ceiling, current))
    reason = "ScaleDownStabilized" if proposed < desired <= current else "ReadyForNewScale"
    if desired > current:
        limit = _policy_limit(up_rules, current, history.events, now, up=True)
        if desired > limit:
            desired, reason = limit, "ScaleUpLimit"
    elif desired < current:
        limit = _policy_limit(down_rules, current, history.events, now, up=False)
        if desired < limit:
            desired, reason = limit, "ScaleDownLimit"
    if desired > maximum:
        return maximum, "TooManyReplicas"
    if desired < minimum:
        return minimum, "TooFewReplicas"
    return desired, reason
