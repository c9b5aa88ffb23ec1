"""The HPA's replica calculator and behavior rules, against Kubernetes' documented
algorithm (desired = ceil(current * usage / target), 10% tolerance, missing and
unready pods counted against the move, stabilization windows, scaling policies)."""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.controllers.hpa_replicas import (
    MetricError,
    Recommendations,
    resource_replicas,
    stabilize,
)


def pod(name: str, *, cpu: str | None = "100m", ready: bool = True) -> dict[str, Any]:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "resources": resources}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(("usage", "expected", "utilization"), [
    ({"a": 0.2, "b": 0.2}, 4, 200),  # twice the target: twice the pods
    ({"a": 0.05, "b": 0.05}, 1, 50),
    ({"a": 0.105, "b": 0.1}, 2, 102),  # within the 10% tolerance: unchanged
    ({"a": 0.3, "b": 0.0}, 3, 150),
], ids=["double", "half", "tolerance", "uneven"])
def test_utilization(usage: dict[str, float], expected: int, utilization: int) -> None:
    p = resource_replicas(current=2, pods=[pod("a"), pod("b")], usage=usage, resource="cpu",
                          target_utilization=100)
    assert (p.replicas, p.utilization) == (expected, utilization)


def test_average_value_target() -> None:
    p = resource_replicas(current=2, pods=[pod("a"), pod("b")], usage={"a": 300e6, "b": 300e6},
                          resource="memory", target_average=200e6)
    assert p.replicas == 3 and p.utilization is None and p.average_value == 300e6


def test_missing_metrics_count_against_the_move() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    # Scaling up: c (no metrics) counts as using nothing: (0.3 + 0.3 + 0) / 0.3 = 2x.
    up = resource_replicas(current=3, pods=pods, usage={"a": 0.3, "b": 0.3}, resource="cpu",
                           target_utilization=100)
    assert up.replicas == 6
    # Scaling down: c counts as using exactly its target, which damps the move.
    down = resource_replicas(current=3, pods=pods, usage={"a": 0.01, "b": 0.01},
                             resource="cpu", target_utilization=100)
    assert down.replicas == 2
    # Unready pods count as using nothing when scaling up.
    unready = resource_replicas(current=2, pods=[pod("a"), pod("b", ready=False)],
                                usage={"a": 0.15, "b": 0.9}, resource="cpu",
                                target_utilization=100)
    assert unready.replicas == 2  # 0.15 / 0.2 < 1: the move flips, so nothing changes


@pytest.mark.parametrize(("pods", "usage", "message"), [
    ([pod("a", cpu=None)], {"a": 0.1}, "missing request for cpu"),
    ([pod("a")], {}, "did not receive metrics"),
    ([], {}, "no pods match"),
], ids=["no-request", "no-metrics", "no-pods"])
def test_errors(pods: list[dict[str, Any]], usage: dict[str, float], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        resource_replicas(current=1, pods=pods, usage=usage, resource="cpu",
                          target_utilization=50)


def test_scale_down_waits_for_the_stabilization_window() -> None:
    history = Recommendations([], [])
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    assert stabilize(current=5, proposed=5, minimum=1, maximum=10, behavior=behavior,
                     history=history, now=0) == (5, "ReadyForNewScale")
    assert stabilize(current=5, proposed=2, minimum=1, maximum=10, behavior=behavior,
                     history=history, now=30) == (5, "ScaleDownStabilized")
    assert stabilize(current=5, proposed=2, minimum=1, maximum=10, behavior=behavior,
                     history=history, now=61)[0] == 2


def test_scale_up_policies_limit_the_step() -> None:
    history = Recommendations([], [])
    # Defaults: +100% or +4 pods per 15 s, whichever is more.
    assert stabilize(current=2, proposed=20, minimum=1, maximum=50, behavior=None,
                     history=history, now=0) == (6, "ScaleUpLimit")
    history.events.append((0, 4))
    # Within the same 15 s period the step is counted from where the period began.
    assert stabilize(current=6, proposed=20, minimum=1, maximum=50, behavior=None,
                     history=history, now=5)[0] == 6
    assert stabilize(current=6, proposed=20, minimum=1, maximum=50, behavior=None,
                     history=history, now=16)[0] == 12


def test_bounds_and_disabled_policy() -> None:
    history = Recommendations([], [])
    assert stabilize(current=3, proposed=9, minimum=1, maximum=4, behavior=None,
                     history=history, now=0) == (4, "TooManyReplicas")
    no_down = {"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}
    assert stabilize(current=3, proposed=1, minimum=1, maximum=4, behavior=no_down,
                     history=Recommendations([], []), now=0)[0] == 3
