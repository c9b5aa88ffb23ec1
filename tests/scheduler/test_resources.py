"""Requests as the scheduler counts them: units, init containers, overhead, and the
memo of converted quantities."""

from __future__ import annotations

import pytest

from kubelite.scheduler import resources
from kubelite.scheduler.resources import non_zero_requests, pod_requests, to_units


@pytest.mark.parametrize(("name", "value", "units"), [
    ("cpu", "100m", 100), ("cpu", "1", 1000), ("cpu", 0.5, 500), ("cpu", "1.0001", 1001),
    ("memory", "1Gi", 1 << 30), ("memory", "1.5", 2), ("memory", "100M", 100_000_000),
    ("pods", 3, 3), ("cpu", "nonsense", 0),
])
def test_units(name: str, value: object, units: int) -> None:
    assert to_units(name, value) == units
    assert to_units(name, value) == units  # the second answer comes from the memo


def test_the_memo_keeps_equal_values_of_other_types_apart() -> None:
    resources._UNITS.clear()
    # 1 == 1.0 == True in Python, but True is no quantity.
    assert [to_units("cpu", v) for v in (1, True, 1.0)] == [1000, 0, 1000]
    resources._UNITS.clear()
    assert [to_units("cpu", v) for v in (True, 1, 1.0)] == [0, 1000, 1000]
    assert to_units("cpu", ["1"]) == 0  # unhashable and no quantity


def test_pod_requests_count_init_containers_and_overhead() -> None:
    pod = {"spec": {
        "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                       {"resources": {"limits": {"cpu": "200m"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1"}}},
                           {"restartPolicy": "Always",
                            "resources": {"requests": {"memory": "16Mi"}}}],
        "overhead": {"cpu": "10m"}}}
    # cpu: max(100 + 200, 1000 + 0 sidecars) + 10; memory: 64Mi + 16Mi sidecar
    assert pod_requests(pod) == {"cpu": 1010, "memory": 80 << 20}
    assert non_zero_requests(pod) == {"cpu": 300, "memory": (64 << 20) + (200 << 20)}
