"""Validation's fast answer (`_clean`): an object is found clean without a walk only
when the walk would have found nothing, whatever is wrong with it."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from kubelite.api import validation_schema as vs

SAMPLES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("", "v1", "Pod"): {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "a"},
                     "creationTimestamp": "2026-11-29T10:00:00Z",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "rs", "uid": "u", "controller": True}]},
        "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Always",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                 "resources": {"requests": {"cpu": "100m"}},
                                 "env": [{"name": "X", "value": "1"}]}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                 "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                                  "tolerationSeconds": 300}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": "2026-11-29T10:00:01Z"}]}},
    ("", "v1", "Event"): {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "p.1", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u"},
        "reason": "Scheduled", "message": "Successfully assigned default/p to n",
        "source": {"component": "default-scheduler"}, "count": 1, "type": "Normal",
        "firstTimestamp": "2026-11-29T10:00:00Z", "lastTimestamp": "2026-11-29T10:00:00Z"},
    ("", "v1", "Secret"): {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": "dmFsdWU="}, "type": "Opaque"},
    ("apps", "v1", "Deployment"): {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "a"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "a"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    ("", "v1", "Service"): {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"type": "ClusterIP", "selector": {"app": "a"},
                 "ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}]}},
}

ODD_VALUES = ["Bogus", "yesterday", "1.2.3", 2**40, -1, 1.5, True, None, "", {}, [],
              {"x": 1}, ["x"], "not base64!", 7]


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    return found


def _mutate(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    path = rng.choice(_paths(obj)[1:])
    parent = obj
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    action = rng.random()
    if action < 0.15 and isinstance(parent, dict):
        del parent[last]
    elif action < 0.3 and isinstance(parent, dict):
        parent[rng.choice(["bogus", "Name", "x-y"])] = rng.choice(ODD_VALUES)
    else:
        parent[last] = copy.deepcopy(rng.choice(ODD_VALUES))
    return obj


def _walked_clean(node: Any, obj: Any) -> bool:
    found = vs.SchemaFindings()
    vs._walk(node, obj, "", "", found)
    return not (found.decode or found.unknown or found.causes)


@pytest.mark.parametrize("kind", sorted(SAMPLES), ids=lambda k: k[2])
def test_clean_agrees_with_the_walk_on_mutated_objects(kind) -> None:
    node = vs.kind_node(*kind)
    sample = SAMPLES[kind]
    assert vs._clean(node, sample, root=True) and _walked_clean(node, sample)
    rng = random.Random(kind[2])
    outcomes = set()
    for _ in range(1500):
        obj = _mutate(sample, rng)
        for _ in range(rng.randint(0, 2)):
            obj = _mutate(obj, rng)
        expected = _walked_clean(node, obj)
        assert vs._clean(node, obj) == expected, obj
        assert vs._clean(node, obj, root=True) == expected, obj
        outcomes.add(expected)
    assert outcomes == {True, False}
