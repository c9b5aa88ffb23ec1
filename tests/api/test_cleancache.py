"""Validation remembers only clean values: a repeated valid spec is not walked
again, and nothing invalid is ever hidden by what was remembered."""

from __future__ import annotations

import copy
import datetime

import pytest

from kubelite.api.cleancache import CleanCache
from kubelite.api.registry import lookup
from kubelite.api.validation import validate

PODS = lookup("", "v1", "pods")
DEPLOYMENTS = lookup("apps", "v1", "deployments")


def pod(name: str, container: str = "c", cpu: object = "100m") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": container, "image": "busybox",
                                     "resources": {"requests": {"cpu": cpu}}}]}}


def fields(causes) -> list[str]:
    return sorted(c.field for c in causes)


def test_findings_are_reported_every_time_and_after_a_clean_alike_spec() -> None:
    for i in range(3):
        assert validate(PODS, pod(f"ok-{i}"))[0] == []
    for i in range(2):
        bad = pod(f"bad-{i}", container="Not_A_Name")
        assert fields(validate(PODS, bad)[0]) == ["spec.containers[0].name"]
        wrong_type = pod(f"type-{i}", cpu=["1"])
        assert "spec.containers[0].resources.requests[cpu]" in fields(
            validate(PODS, wrong_type, field_validation="Strict")[0])


def test_the_same_spec_is_checked_at_each_path_it_appears_at() -> None:
    template = {"metadata": {"labels": {"app": "x"}}, "spec": copy.deepcopy(
        pod("x", container="Bad_Name")["spec"])}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "d", "namespace": "default"},
                  "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}
    assert fields(validate(PODS, pod("p", container="Bad_Name"))[0]) == [
        "spec.containers[0].name"]
    assert "spec.template.spec.containers[0].name" in fields(
        validate(DEPLOYMENTS, deployment)[0])


def test_keys_are_per_owner_and_tag_and_unencodable_values_are_never_clean() -> None:
    cache = CleanCache(limit=2)
    owner_a, owner_b = object(), object()
    key = cache.key({"a": 1}, owner=owner_a)
    cache.add(key, owner=owner_a)
    assert cache.is_clean(cache.key({"a": 1}, owner=owner_a), owner=owner_a)
    assert not cache.is_clean(cache.key({"a": 1}, owner=owner_b), owner=owner_b)
    assert not cache.is_clean(cache.key({"a": 1}, owner=owner_a, tag="x"), owner=owner_a)
    assert cache.key({"a": 2**70}) is None
    cache.add(None)
    cache.add(cache.key({"b": 1}))
    cache.add(cache.key({"c": 1}))
    assert not cache.is_clean(cache.key({"a": 1}, owner=owner_a), owner=owner_a)


@pytest.mark.parametrize(("seen", "odd"), [
    ("2024-01-01", datetime.date(2024, 1, 1)),
    (None, float("nan")),
], ids=["yaml-date-after-its-string", "nan-after-a-null"])
def test_a_value_seen_clean_does_not_vouch_for_one_json_would_write_alike(seen, odd) -> None:
    """orjson writes a date as its string and a NaN as null: keyed by that JSON, the
    clean string (or null) would have let the date (or NaN) through unchecked."""
    assert PODS is not None

    def with_image(image: object) -> dict:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                                         "workingDir": image}]}}
    assert validate(PODS, with_image(seen))[0] == []
    causes, _ = validate(PODS, with_image(odd))
    assert [c.field for c in causes] == ["spec.containers[0].workingDir"]
