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


def _target_v1(target: Obj) -> Obj:
    out: Obj = {}
    _set(out, "targetAverageUtilization", target.get("averageUtilization"))
    _set(out, "targetAverageValue", target.get("averageValue"))
    return out


def _target_v2(source: Obj) -> Obj:
    if source.get("targetAverageUtilization") is not None:
        return {"type": "Utilization", "averageUtilization": source["targetAverageUtilization"]}
    out: Obj = {"type": "AverageValue"}
    _set(out, "averageValue", source.get("targetAverageValue"))
    return out


def _spec_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind == "Resource" and isinstance(metric.get("resource"), dict):
        source = metric["resource"]
        out["resource"] = {"name": source.get("name"), **_target_v1(source.get("target") or {})}
    elif kind == "ContainerResource" and isinstance(metric.get("containerResource"), dict):
        source = metric["containerResource"]
        out["containerResource"] = {"name": source.get("name"),
                                    "container": source.get("container"),
                                    **_target_v1(source.get("target") or {})}
    elif kind == "Pods" and isinstance(metric.get("pods"), dict):
        source = metric["pods"]
        ident, target = source.get("metric") or {}, source.get("target") or {}
        out["pods"] = {"metricName": ident.get("name"),
                       "targetAverageValue": target.get("averageValue")}
        _set(out["pods"], "selector", ident.get("selector"))
    elif kind == "Object" and isinstance(metric.get("object"), dict):
        source = metric["object"]
        ident, target = source.get("metric") or {}, source.get("target") or {}
        out["object"] = {"target": _object_ref(source.get("describedObject")),
                         "metricName": ident.get("name"),
                         "targetValue": target.get("value", "0")}
        _set(out["object"], "selector", ident.get("selector"))
        _set(out["object"], "averageValue", target.get("averageValue"))
    elif kind == "External" and isinstance(metric.get("external"), dict):
        source = metric["external"]
        ident, target = source.get("metric") or {}, source.get("target") or {}
        out["external"] = {"metricName": ident.get("name")}
        _set(out["external"], "metricSelector", ident.get("selector"))
        _set(out["external"], "targetValue", target.get("value"))
        _set(out["external"], "targetAverageValue", target.get("averageValue"))
    return out


def _spec_v2(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    if kind == "Resource" and isinstance(metric.get("resource"), dict):
        source = metric["resource"]
        out["resource"] = {"name": source.get("name"), "target": _target_v2(source)}
    elif kind == "ContainerResource" and isinstance(metric.get("containerResource"), dict):
        source = metric["containerResource"]
        out["containerResource"] = {"name": source.get("name"),
                                    "container": source.get("container"),
                                    "target": _target_v2(source)}
    elif kind == "Pods" and isinstance(metric.get("pods"), dict):
        source = metric["pods"]
        out["pods"] = {"metric": _identifier(source.get("metricName"), source.get("selector")),
                       "target": {"type": "AverageValue",
                                  "averageValue": source.get("targetAverageValue")}}
    elif kind == "Object" and isinstance(metric.get("object"), dict):
        source = metric["object"]
        average = source.get("averageValue")
        target: Obj = {"type": "Value" if average is None else "AverageValue",
                       "value": source.get("targetValue")}
        _set(target, "averageValue", average)
        out["object"] = {"describedObject": _object_ref(source.get("target")),
                         "metric": _identifier(source.get("metricName"), source.get("selector")),
                         "target": target}
    elif kind == "External" and isinstance(metric.get("external"), dict):
        source = metric["external"]
        average = source.get("targetAverageValue")
        target = {"type": "Value" if average is None else "AverageValue"}
        _set(target, "value", source.get("targetValue"))
        _set(target, "averageValue", average)
        out["external"] = {"metric": _identifier(source.get("metricName"),
                                                 source.get("metricSelector")),
                           "target": target}
    return out


def _status_v1(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    for field in ("resource", "containerResource"):
        if kind == field[0].upper() + field[1:] and isinstance(metric.get(field), dict):
            source = metric[field]
            current = source.get("current") or {}
            out[field] = {"name": source.get("name"),
                          "currentAverageValue": current.get("averageValue", "0")}
            _set(out[field], "currentAverageUtilization", current.get("averageUtilization"))
            _set(out[field], "container", source.get("container"))
    if kind == "Pods" and isinstance(metric.get("pods"), dict):
        source = metric["pods"]
        ident, current = source.get("metric") or {}, source.get("current") or {}
        out["pods"] = {"metricName": ident.get("name"),
                       "currentAverageValue": current.get("averageValue", "0")}
        _set(out["pods"], "selector", ident.get("selector"))
    elif kind == "Object" and isinstance(metric.get("object"), dict):
        source = metric["object"]
        ident, current = source.get("metric") or {}, source.get("current") or {}
        out["object"] = {"target": _object_ref(source.get("describedObject")),
                         "metricName": ident.get("name"),
                         "currentValue": current.get("value", "0")}
        _set(out["object"], "selector", ident.get("selector"))
        _set(out["object"], "averageValue", current.get("averageValue"))
    elif kind == "External" and isinstance(metric.get("external"), dict):
        source = metric["external"]
        ident, current = source.get("metric") or {}, source.get("current") or {}
        out["external"] = {"metricName": ident.get("name"),
                           "currentValue": current.get("value", "0")}
        _set(out["external"], "metricSelector", ident.get("selector"))
        _set(out["external"], "currentAverageValue", current.get("averageValue"))
    return out


def _status_v2(metric: Obj) -> Obj:
    kind = metric.get("type")
    out: Obj = {"type": kind}
    for field in ("resource", "containerResource"):
        if kind == field[0].upper() + field[1:] and isinstance(metric.get(field), dict):
            source = metric[field]
            current: Obj = {"averageValue": source.get("currentAverageValue")}
            _set(current, "averageUtilization", source.get("currentAverageUtilization"))
            out[field] = {"name": source.get("name"), "current": current}
            _set(out[field], "container", source.get("container"))
    if kind == "Pods" and isinstance(metric.get("pods"), dict):
        source = metric["pods"]
        out["pods"] = {"metric": _identifier(source.get("metricName"), source.get("selector")),
                       "current": {"averageValue": source.get("currentAverageValue")}}
    elif kind == "Object" and isinstance(metric.get("object"), dict):
        source = metric["object"]
        current = {"value": source.get("currentValue")}
        _set(current, "averageValue", source.get("averageValue"))
        out["object"] = {"describedObject": _object_ref(source.get("target")),
                         "metric": _identifier(source.get("metricName"), source.get("selector")),
                         "current": current}
    elif kind == "External" and isinstance(metric.get("external"), dict):
        source = metric["external"]
        current = {"value": source.get("currentValue")}
        _set(current, "averageValue", source.get("currentAverageValue"))
        out["external"] = {"metric": _identifier(source.get("metricName"),
                                                 source.get("metricSelector")),
                           "current": current}
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
    others = [_spec_v1(m) for m in metrics if isinstance(m, dict)
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
            notes[CURRENT_METRICS_ANNOTATION] = [_status_v1(m) for m in current
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
        metrics.extend(_spec_v2(m) for m in others if isinstance(m, dict))
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": target}}})
    if not metrics:
        metrics = [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]
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
            status["currentMetrics"] = [_status_v2(m) for m in current if isinstance(m, dict)]
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
