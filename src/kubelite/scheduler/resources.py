"""Pod resource requests as the scheduler counts them (Kubernetes' PodRequests)."""

from __future__ import annotations

import math
from typing import Any

from kubelite.api.validation_values import parse_quantity

Obj = dict[str, Any]
CPU = "cpu"
MEMORY = "memory"
PODS = "pods"


# Every pod of a Deployment asks for the same few quantities, and the exact
# arithmetic of parsing one costs a few microseconds: each is converted once.
_UNITS: dict[tuple[str, type, Any], int] = {}
_UNITS_LIMIT = 4096


def to_units(name: str, value: Any) -> int:
    """cpu in millicores, everything else in its base unit, rounded up."""
    key = (name, type(value), value)  # 1, 1.0 and True are equal keys otherwise
    try:
        return _UNITS[key]
    except KeyError:
        pass
    except TypeError:  # not hashable: not a quantity either, but parse says so
        return _to_units(name, value)
    units = _to_units(name, value)
    if len(_UNITS) >= _UNITS_LIMIT:
        _UNITS.clear()
    _UNITS[key] = units
    return units


def _to_units(name: str, value: Any) -> int:
    q = parse_quantity(value)
    if q is None:
        return 0
    return math.ceil(q * 1000) if name == CPU else math.ceil(q)


def _requests(container: Obj) -> dict[str, int]:
    resources = container.get("resources") or {}
    wanted = resources.get("requests") or resources.get("limits") or {}
    if resources.get("limits") and resources.get("requests"):
        # A limit without a request defaults the request to the limit.
        wanted = {**resources["limits"], **resources["requests"]}
    return {k: to_units(k, v) for k, v in wanted.items()}


def pod_requests(pod: Obj) -> dict[str, int]:
    """Sum of the app containers (and restartable init containers), or the largest
    single init container if that is more, plus the pod overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for k, v in _requests(c).items():
            total[k] = total.get(k, 0) + v
    sidecars: dict[str, int] = {}
    peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        req = _requests(c)
        if c.get("restartPolicy") == "Always":
            for k, v in req.items():
                sidecars[k] = sidecars.get(k, 0) + v
                total[k] = total.get(k, 0) + v
        else:
            for k, v in req.items():
                peak[k] = max(peak.get(k, 0), v + sidecars.get(k, 0))
    for k, v in peak.items():
        total[k] = max(total.get(k, 0), v)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0) + to_units(k, v)
    return total


def allocatable(node: Obj) -> dict[str, int]:
    status = node.get("status") or {}
    source = status.get("allocatable") or status.get("capacity") or {}
    return {k: to_units(k, v) for k, v in source.items()}


# Kubernetes' defaults for scoring a container that requests nothing.
DEFAULT_CPU_MILLI = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


def non_zero_requests(pod: Obj) -> dict[str, int]:
    """cpu and memory requests with each container's missing ones at the defaults."""
    total = {CPU: 0, MEMORY: 0}
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = _requests(c)
        total[CPU] += req.get(CPU) or DEFAULT_CPU_MILLI
        total[MEMORY] += req.get(MEMORY) or DEFAULT_MEMORY
    return total
