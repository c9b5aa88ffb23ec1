"""Container environments: expansion, valueFrom sources, envFrom, service links."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from kubelite.agent.envs import (
    ContainerConfigError,
    container_env,
    expand,
    field_value,
    resource_value,
    service_links,
)
from tests.agent.fakes import FakeSource, make_pod


@pytest.mark.parametrize(("value", "want"), [
    ("$(A)", "1"),
    ("x-$(A)-$(B)-y", "x-1-two-y"),
    ("$(MISSING)", "$(MISSING)"),
    ("$$(A)", "$(A)"),
    ("cost: $5", "cost: $5"),
    ("$(A", "$(A"),
    ("trailing $", "trailing $"),
], ids=["simple", "two", "undefined-kept", "escaped", "lone-dollar", "unterminated", "trailing"])
def test_expand(value: str, want: str) -> None:
    assert expand(value, {"A": "1", "B": "two"}) == want


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def source() -> FakeSource:
    s = FakeSource()
    s.put("configmaps", "default", "cfg", data={"mode": "fast", "level": "3"})
    s.put("secrets", "default", "sec", data={"password": _b64("s3cret")})
    return s


async def env_of(container: dict[str, Any], source: FakeSource) -> list[tuple[str, str]]:
    pod = make_pod("p", containers=[container])
    pod["metadata"]["labels"] = {"app": "web"}
    return await container_env(pod, container, source=source, host_ip="10.0.0.5",
                               pod_ip="10.244.0.7", allocatable={"cpu": "4", "memory": "8Gi"})


async def test_value_from_sources_and_expansion(source: FakeSource) -> None:
    c = {"name": "app", "image": "busybox", "resources": {"limits": {"memory": "64Mi"}},
         "env": [
             {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
             {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
             {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
             {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                "divisor": "1Mi"}}},
             {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "URL", "value": "http://$(POD):$(MEM)/$(NOPE)"},
         ]}
    env = dict(await env_of(c, source))
    assert env == {"MODE": "fast", "PASS": "s3cret", "POD": "p", "APP": "web",
                   "NODE_IP": "10.0.0.5", "MEM": "64", "CPU": "4",
                   "URL": "http://p:64/$(NOPE)"}


async def test_env_from_with_prefix_and_env_override(source: FakeSource) -> None:
    c = {"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                                    {"secretRef": {"name": "sec"}},
                                    {"configMapRef": {"name": "absent", "optional": True}}],
         "env": [{"name": "CFG_MODE", "value": "slow"}]}
    env = await env_of(c, source)
    assert dict(env) == {"CFG_mode": "fast", "CFG_level": "3", "password": "s3cret",
                         "CFG_MODE": "slow"}


@pytest.mark.parametrize(("env", "message"), [
    ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
    ({"configMapKeyRef": {"name": "cfg", "key": "k"}}, "couldn't find key k in ConfigMap default/cfg"),
    ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
    ({"secretKeyRef": {"name": "sec", "key": "k"}}, "couldn't find key k in Secret default/sec"),
], ids=["missing-configmap", "missing-cm-key", "missing-secret", "missing-secret-key"])
async def test_missing_sources_are_config_errors(source: FakeSource, env: dict, message: str
                                                 ) -> None:
    c = {"name": "app", "env": [{"name": "X", "valueFrom": env}]}
    with pytest.raises(ContainerConfigError) as err:
        await env_of(c, source)
    assert str(err.value) == message


async def test_optional_missing_key_is_skipped(source: FakeSource) -> None:
    c = {"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
        "name": "cfg", "key": "k", "optional": True}}}]}
    assert await env_of(c, source) == []


def test_service_links_like_docker_links() -> None:
    services = [
        {"metadata": {"name": "redis-main", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "db", "port": 6379,
                                                        "protocol": "TCP"}]}},
        {"metadata": {"name": "headless", "namespace": "default"}, "spec": {"clusterIP": "None"}},
        {"metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443,
                                                       "protocol": "TCP"}]}},
    ]
    env = service_links(services, namespace="default", enable=True)
    assert env["REDIS_MAIN_SERVICE_HOST"] == "10.96.0.11"
    assert env["REDIS_MAIN_SERVICE_PORT_DB"] == "6379"
    assert env["REDIS_MAIN_PORT_6379_TCP"] == "tcp://10.96.0.11:6379"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith("HEADLESS") for k in env)
    only_master = service_links(services, namespace="default", enable=False)
    assert set(only_master) == {k for k in env if k.startswith("KUBERNETES_")}


def test_downward_label_map_format() -> None:
    pod = make_pod("p")
    pod["metadata"]["labels"] = {"b": 'say "hi"', "a": "1"}
    assert field_value(pod, "metadata.labels", host_ip="", pod_ip="") == 'a="1"\nb="say \\"hi\\""'


def test_cpu_request_in_millicores() -> None:
    pod = make_pod("p", containers=[{"name": "app", "resources": {"requests": {"cpu": "250m"}}}])
    ref = {"resource": "requests.cpu", "divisor": "1m"}
    assert resource_value(pod, ref, container_name="app", allocatable={}) == "250"
