"""One kind served at several versions from one stored form, as kube-apiserver's
conversion does. A resource declared with `stored_as` (registry) is stored at that
version: writes convert to it, reads and watch events convert back from it.

The only such kind is HorizontalPodAutoscaler, stored as autoscaling/v2 and also
served as autoscaling/v1 (which `kubectl autoscale` writes). v1 holds only a CPU
utilisation target; what v2 holds beyond it travels in annotations, under the
names and in the shapes Kubernetes uses (pkg/apis/autoscaling/v1/conversion.go),
so that a v1 client's read-modify-write keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from kubelite.api.patch import deep_copy
from kubelite.api.registry import Resource

Obj = dict[str, Any]

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
# v1 HPAs without a target had the controller's default; conversion makes it explicit.
DEFAULT_CPU_UTILIZATION = 80


def to_stored(res: Resource, obj: Obj) -> Obj:
    """`obj` at `res`'s version, at the version it is stored as (a new dict)."""
    if not res.stored_as:
        return obj
    return _CONVERTERS[res.group, res.kind, res.version, res.stored_as](obj)


def from_stored(res: Resource, obj: Obj) -> Obj:
    """A stored object at `res`'s version (a new dict; `obj` is left as it is)."""
    if not res.stored_as:
        return obj
    return _CONVERTERS[res.group, res.kind, res.stored_as, res.version](obj)


def _set(out: Obj, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


def _object_ref(ref: Any) -> Obj:
    ref = ref if isinstance(ref, dict) else {}
    return {k: ref[k] for k in ("kind", "name", "apiVersion") if k in ref}


def _identifier(name: Any, selector: Any) -> Obj:
    out: Obj = {"name": name}
    _set(out, "selector", selector)
    return out


# ---- metric specs and statuses: v1 (the annotations' shapes) <-> v2 ------------------


# The key of each kind of metric's source; the same at both versions.
_SOURCES = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
            "Object": "object", "External": "external"}


def cpu_utilization(percent: Any) -> Obj:
    """The v2 metric of a CPU utilisation target."""
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": percent}}}


def metric_source(metric: Obj) -> tuple[str, Obj] | None:
    """(field, source) of a metric at either version: ("resource", {...}) for a
    Resource metric; None when the type is unknown or its source missing."""
    field = _SOURCES.get(metric.get("type") or "")
    source = metric.get(field) if field else None
    return (field, source) if field and isinstance(source, dict) else None


def _metric_v1(metric: Obj, side: str) -> Obj:
    """A v2 MetricSpec (`side` "target") or MetricStatus ("current") in the v1 shape the
    annotations hold, whose fields name the side (targetAverageValue,
    currentAverageValue). A status's plain quantities are "0" when unknown, as Go
    writes a zero Quantity."""
    out: Obj = {"type": metric.get("type")}
    found = metric_source(metric)
    if found is None:
        return out
    field, source = found
    values, ident = source.get(side) or {}, source.get("metric") or {}
    zero = "0" if side == "current" else None
    if field in ("resource", "containerResource"):
        v1: Obj = {"name": source.get("name")}
        _set(v1, "container", source.get("container"))
        _set(v1, f"{side}AverageUtilization", values.get("averageUtilization"))
        _set(v1, f"{side}AverageValue", values.get("averageValue", zero))
    elif field == "pods":
        v1 = {"metricName": ident.get("name"),
              f"{side}AverageValue": values.get("averageValue", "0")}
        _set(v1, "selector", ident.get("selector"))
    elif field == "object":
        v1 = {"target": _object_ref(source.get("describedObject")),
              "metricName": ident.get("name"), f"{side}Value": values.get("value", "0")}
        _set(v1, "selector", ident.get("selector"))
        _set(v1, "averageValue", values.get("averageValue"))
    else:
        v1 = {"metricName": ident.get("name")}
        _set(v1, "metricSelector", ident.get("selector"))
        _set(v1, f"{side}Value", values.get("value", zero))
        _set(v1, f"{side}AverageValue", values.get("averageValue"))
    out[field] = v1
    return out


def _metric_v2(metric: Obj, side: str) -> Obj:
    """The v2 MetricSpec or MetricStatus of a v1 one from the annotations (the inverse
    of _metric_v1). A target says its type: Utilization, AverageValue or Value."""
    out: Obj = {"type": metric.get("type")}
    found = metric_source(metric)
    if found is None:
        return out
    field, source = found
    values: Obj = {}
    if field in ("resource", "containerResource"):
        v2: Obj = {"name": source.get("name")}
        _set(v2, "container", source.get("container"))
        _set(values, "averageUtilization", source.get(f"{side}AverageUtilization"))
        _set(values, "averageValue", source.get(f"{side}AverageValue"))
        kind = "Utilization" if "averageUtilization" in values else "AverageValue"
    elif field == "pods":
        v2 = {"metric": _identifier(source.get("metricName"), source.get("selector"))}
        _set(values, "averageValue", source.get(f"{side}AverageValue"))
        kind = "AverageValue"
    else:
        selector = source.get("selector" if field == "object" else "metricSelector")
        v2 = {"metric": _identifier(source.get("metricName"), selector)}
        if field == "object":
            v2["describedObject"] = _object_ref(source.get("target"))
        _set(values, "value", source.get(f"{side}Value"))
        _set(values, "averageValue", source.get(
            "averageValue" if field == "object" else f"{side}AverageValue"))
        kind = "AverageValue" if "averageValue" in values else "Value"
    v2[side] = {"type": kind, **values} if side == "target" else values
    out[field] = v2
    return out


# ---- HorizontalPodAutoscaler -----------------------------------------------------------


def _is_cpu_utilization(metric: Any, side: str) -> bool:
    source = metric.get("resource") if isinstance(metric, dict) else None
    return (metric.get("type") == "Resource" and isinstance(source, dict)
            and source.get("name") == "cpu"
            and (source.get(side) or {}).get("averageUtilization") is not None)


def _annotation(annotations: Obj, name: str) -> Any:
    """A round-tripping annotation's JSON, or None when absent or not JSON (Kubernetes
    ignores a broken one too)."""
    text = annotations.pop(name, None)
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _hpa_v2_to_v1(stored: Obj) -> Obj:
    obj = deep_copy(stored)
    obj["apiVersion"] = "autoscaling/v1"
    spec, status = obj.get("spec") or {}, obj.get("status")
    metrics = spec.pop("metrics", None) or []
    behavior = spec.pop("behavior", None)
    notes: Obj = {}
    for metric in metrics:
        if _is_cpu_utilization(metric, "target"):
            spec["targetCPUUtilizationPercentage"] = metric["resource"]["target"][
                "averageUtilization"]
            break
    others = [_metric_v1(m, "target") for m in metrics if isinstance(m, dict)
              and not _is_cpu_utilization(m, "target")]
    if others:
        notes[METRICS_ANNOTATION] = others
    if behavior is not None:
        notes[BEHAVIOR_ANNOTATION] = behavior
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        conditions = status.pop("conditions", None) or []
        for metric in current:
            if _is_cpu_utilization(metric, "current"):
                status["currentCPUUtilizationPercentage"] = metric["resource"]["current"][
                    "averageUtilization"]
                break
        if current:
            notes[CURRENT_METRICS_ANNOTATION] = [_metric_v1(m, "current") for m in current
                                                 if isinstance(m, dict)]
        if conditions:
            notes[CONDITIONS_ANNOTATION] = conditions
    if notes:
        annotations = obj.setdefault("metadata", {}).setdefault("annotations", {})
        for name, value in notes.items():
            annotations[name] = orjson.dumps(value).decode()
    return obj


def _hpa_v1_to_v2(served: Obj) -> Obj:
    obj = deep_copy(served)
    obj["apiVersion"] = "autoscaling/v2"
    meta = obj.setdefault("metadata", {})
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    metrics: list[Obj] = []
    others = _annotation(annotations, METRICS_ANNOTATION)
    if isinstance(others, list):
        metrics.extend(_metric_v2(m, "target") for m in others if isinstance(m, dict))
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        metrics.append(cpu_utilization(target))
    if not metrics:
        metrics = [cpu_utilization(DEFAULT_CPU_UTILIZATION)]
    if isinstance(obj.get("spec"), dict):
        spec["metrics"] = metrics
    behavior = _annotation(annotations, BEHAVIOR_ANNOTATION)
    if isinstance(behavior, dict):
        spec["behavior"] = behavior
    current = _annotation(annotations, CURRENT_METRICS_ANNOTATION)
    conditions = _annotation(annotations, CONDITIONS_ANNOTATION)
    status = obj.get("status")
    if isinstance(status, dict):
        cpu = status.pop("currentCPUUtilizationPercentage", None)
        if isinstance(current, list):
            status["currentMetrics"] = [_metric_v2(m, "current") for m in current if isinstance(m, dict)]
        elif cpu is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": cpu}}}]
        if isinstance(conditions, list):
            status["conditions"] = conditions
    if "annotations" in meta and not annotations:
        del meta["annotations"]
    return obj


_CONVERTERS: dict[tuple[str, str, str, str], Callable[[Obj], Obj]] = {
    ("autoscaling", "HorizontalPodAutoscaler", "v2", "v1"): _hpa_v2_to_v1,
    ("autoscaling", "HorizontalPodAutoscaler", "v1", "v2"): _hpa_v1_to_v2,
}
