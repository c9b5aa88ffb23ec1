"""The scheduler's algorithm alone: CPU per scheduling cycle, in-process, for several
kinds of pods on N nodes spread over zones, with no API server and no HTTP.
bench/scheduler.py measures the whole path; this one tells which part of a cycle's
cost belongs to the plugins.

    .venv/bin/python bench/scheduler_cycle.py [--nodes 5000] [--pods 300] [--kind K] [--seed S]

Each kind schedules --pods pods (after as many to warm up) and assumes each on its
node, as the scheduler does between cycles. Prints one JSON object on its last line:
milliseconds of CPU per cycle by kind.

CPU time drifts with the machine; instruction counts do not. With --seed (ties are
broken at random) and PYTHONHASHSEED=0 a run repeats exactly, so the instructions
of a cycle are the difference between two runs under callgrind, divided by 100:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python bench/scheduler_cycle.py --kind bare --seed 1 --pods 60
    (the same with --pods 10; compare the "Collected" totals)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

from kubelite.scheduler.cache import SchedulerCache
from kubelite.scheduler.config import Profile, SchedulerConfiguration, build_framework
from kubelite.scheduler.explain import StaticLister
from kubelite.scheduler.framework import CycleState
from kubelite.scheduler.nodeinfo import HOSTNAME, ZONE, PodInfo
from kubelite.scheduler.plugins import PluginContext
from kubelite.scheduler.scheduler import WATCHED, SchedulerHandle

Obj = dict[str, Any]
REPLICASET = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid"},
              "spec": {"selector": {"matchLabels": {"app": "web"}}}}


def node(i: int, zones: int) -> Obj:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"n{i}", "labels": {HOSTNAME: f"n{i}", ZONE: f"z{i % zones}"}},
            "spec": {}, "status": {"allocatable": capacity, "capacity": capacity}}


def pod(name: str, labels: dict[str, str], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {
                "requests": {"cpu": "100m", "memory": "100Mi"}}}], **spec},
            "status": {"phase": "Pending"}}


def bare(name: str) -> Obj:
    return pod(name, {"app": "bare"})


def owned(name: str) -> Obj:
    obj = pod(name, {"app": "web"})
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                           "name": "web", "uid": "rs-uid", "controller": True}]
    return obj


def hard_spread(key: str) -> Callable[[str], Obj]:
    app = f"hard-{key}"
    return lambda name: pod(name, {"app": app}, topologySpreadConstraints=[{
        "maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": app}}}])


KINDS: dict[str, Callable[[str], Obj]] = {
    "bare": bare, "replicaset_default_spread": owned,
    "hard_spread_hostname": hard_spread(HOSTNAME), "hard_spread_zone": hard_spread(ZONE)}


def cpu_per_cycle(make: Callable[[str], Obj], nodes: int, zones: int, pods: int) -> float:
    """Milliseconds of CPU per cycle over `pods` cycles, after as many to warm up."""
    cache = SchedulerCache()
    for i in range(nodes):
        cache.set_node(node(i, zones))
    listers = {p: StaticLister([REPLICASET] if p == "replicasets" else []) for p in WATCHED}
    framework = build_framework(Profile(), SchedulerConfiguration(),
                                PluginContext(SchedulerHandle(cache, listers), cache))
    start = 0
    began = 0.0
    for i in range(2 * pods):
        if i == pods:
            began = time.process_time()
        info = PodInfo.of(make(f"p{i}"))
        placement = framework.schedule(CycleState(), info, cache.node_list(), start=start,
                                       cache=cache)
        if placement.chosen is None:
            raise SystemExit(f"pod {i} did not fit")
        start = (start + placement.examined) % nodes
        cache.assume(info, placement.chosen)
    return (time.process_time() - began) * 1000 / pods


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--kind", choices=sorted(KINDS), action="append",
                        help="only this kind of pod (repeatable)")
    parser.add_argument("--seed", type=int, help="seed the random tie-breaking")
    args = parser.parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    result: dict[str, Any] = {"nodes": args.nodes, "pods": args.pods}
    for kind, make in KINDS.items():
        if args.kind and kind not in args.kind:
            continue
        result[f"{kind}_ms_per_cycle"] = round(
            cpu_per_cycle(make, args.nodes, args.zones, args.pods), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
