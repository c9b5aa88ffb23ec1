"""HorizontalPodAutoscaler served as autoscaling/v1 from its autoscaling/v2 form, in
the shapes of Kubernetes' conversion (pkg/apis/autoscaling/v1/conversion.go)."""

from __future__ import annotations

import copy

import orjson

from kubelite.api.conversion import (
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    METRICS_ANNOTATION,
    from_stored,
    to_stored,
)
from kubelite.api.registry import lookup

V1 = lookup("autoscaling", "v1", "horizontalpodautoscalers")
V2 = lookup("autoscaling", "v2", "horizontalpodautoscalers")
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
SELECTOR = {"matchLabels": {"tier": "front"}}
CPU_60 = {"type": "Resource", "resource": {"name": "cpu", "target": {
    "type": "Utilization", "averageUtilization": 60}}}
# One of each kind of metric but the CPU utilisation target.
OTHERS_V2 = [
    {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "300Mi"}}},
    {"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "app", "target": {
            "type": "Utilization", "averageUtilization": 70}}},
    {"type": "Pods", "pods": {"metric": {"name": "qps", "selector": SELECTOR},
                              "target": {"type": "AverageValue", "averageValue": "10"}}},
    {"type": "Object", "object": {
        "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                            "name": "main"},
        "metric": {"name": "requests"}, "target": {"type": "Value", "value": "2k"}}},
    {"type": "External", "external": {"metric": {"name": "queue", "selector": SELECTOR},
                                      "target": {"type": "AverageValue",
                                                 "averageValue": "30"}}},
]
OTHERS_V1 = [
    {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "300Mi"}},
    {"type": "ContainerResource", "containerResource": {
        "name": "cpu", "container": "app", "targetAverageUtilization": 70}},
    {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10",
                              "selector": SELECTOR}},
    {"type": "Object", "object": {
        "target": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
        "metricName": "requests", "targetValue": "2k"}},
    {"type": "External", "external": {"metricName": "queue", "metricSelector": SELECTOR,
                                      "targetAverageValue": "30"}},
]
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [
    {"type": "Pods", "value": 1, "periodSeconds": 30}]}}
CONDITIONS = [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
               "lastTransitionTime": "2026-11-29T10:00:00Z", "message": "ready"}]
CURRENT_V2 = [
    {"type": "Resource", "resource": {"name": "cpu", "current": {
        "averageUtilization": 75, "averageValue": "150m"}}},
    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "12"}}},
]


def v2(**spec) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "9",
                         "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5, **spec}}


def test_a_v1_cpu_target_is_the_v2_cpu_utilization_metric_and_back() -> None:
    served = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
              "metadata": {"name": "web"},
              "spec": {"scaleTargetRef": REF, "maxReplicas": 5,
                       "targetCPUUtilizationPercentage": 60}}
    original = copy.deepcopy(served)
    stored = to_stored(V1, served)
    assert served == original
    assert stored == {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                      "metadata": {"name": "web"},
                      "spec": {"scaleTargetRef": REF, "maxReplicas": 5, "metrics": [CPU_60]}}
    assert from_stored(V1, stored) == served


def test_a_v1_object_without_a_target_gets_the_default_80_percent() -> None:
    stored = to_stored(V1, {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                            "metadata": {"name": "web"},
                            "spec": {"scaleTargetRef": REF, "maxReplicas": 3}})
    assert stored["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def test_what_v1_cannot_hold_travels_in_annotations_and_comes_back() -> None:
    stored = v2(metrics=[CPU_60, *OTHERS_V2], behavior=BEHAVIOR)
    stored["status"] = {"currentReplicas": 2, "desiredReplicas": 3,
                        "currentMetrics": CURRENT_V2, "conditions": CONDITIONS}
    original = copy.deepcopy(stored)
    served = from_stored(V1, stored)
    assert stored == original
    assert served["apiVersion"] == "autoscaling/v1"
    assert served["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5,
                              "targetCPUUtilizationPercentage": 60}
    assert served["status"] == {"currentReplicas": 2, "desiredReplicas": 3,
                                "currentCPUUtilizationPercentage": 75}
    notes = served["metadata"]["annotations"]
    assert notes["team"] == "a"
    assert orjson.loads(notes[METRICS_ANNOTATION]) == OTHERS_V1
    assert orjson.loads(notes[BEHAVIOR_ANNOTATION]) == BEHAVIOR
    assert orjson.loads(notes[CONDITIONS_ANNOTATION]) == CONDITIONS
    assert orjson.loads(notes[CURRENT_METRICS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "cpu", "currentAverageValue": "150m",
                                          "currentAverageUtilization": 75}},
        {"type": "Pods", "pods": {"metricName": "qps", "currentAverageValue": "12"}}]
    # Back at v2 nothing is lost; as in Kubernetes, the CPU target comes last.
    again = to_stored(V1, served)
    assert again["spec"]["metrics"] == [*OTHERS_V2, CPU_60]
    assert again["spec"]["behavior"] == BEHAVIOR
    assert again["status"]["conditions"] == CONDITIONS
    assert again["metadata"]["annotations"] == {"team": "a"}
    assert again["status"]["currentMetrics"] == CURRENT_V2


def test_broken_annotations_are_ignored_and_dropped() -> None:
    served = from_stored(V1, v2(metrics=[CPU_60]))
    served["metadata"]["annotations"] = {METRICS_ANNOTATION: "{not json",
                                         BEHAVIOR_ANNOTATION: "[1]"}
    stored = to_stored(V1, served)
    assert stored["spec"]["metrics"] == [CPU_60]
    assert "behavior" not in stored["spec"]
    assert "annotations" not in stored["metadata"]


def test_the_stored_version_is_served_as_it_is() -> None:
    stored = v2(metrics=[CPU_60])
    assert from_stored(V2, stored) is stored
    assert to_stored(V2, stored) is stored
