"""One HorizontalPodAutoscaler, stored once, read and written at autoscaling/v1 and
autoscaling/v2 through the real API server: every verb converts, and a v1 client's
read-modify-write keeps what only v2 can say."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from kubelite.api.conversion import METRICS_ANNOTATION
from kubelite.api.registry import lookup
from kubelite.client import BadRequest, Client, Invalid, load_kubeconfig
from kubelite.server.app import APIServer, ServerConfig
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {
    "type": "AverageValue", "averageValue": "300Mi"}}}


@pytest.fixture
async def client(tmp_path):
    async with APIServer(ServerConfig(data_dir=tmp_path, port=free_port()),
                         SqliteStore(tmp_path / "state.db")):
        async with Client(load_kubeconfig(tmp_path / "kubeconfig"), read_retries=0) as c:
            yield c


def cpu(percent: int) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": percent}}}


async def test_one_object_read_and_written_at_both_versions(client: Client) -> None:
    created = await client.request("POST", V1, body={
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                 "targetCPUUtilizationPercentage": 60}})
    assert created["apiVersion"] == "autoscaling/v1"
    assert created["spec"]["targetCPUUtilizationPercentage"] == 60
    as_v2 = await client.request("GET", f"{V2}/web")
    assert as_v2["apiVersion"] == "autoscaling/v2"
    assert as_v2["spec"]["metrics"] == [cpu(60)]
    assert as_v2["metadata"]["uid"] == created["metadata"]["uid"]

    # A v2 writer adds a metric v1 has no field for.
    as_v2["spec"]["metrics"] = [cpu(60), MEMORY]
    await client.request("PUT", f"{V2}/web", body=as_v2)
    as_v1 = await client.request("GET", f"{V1}/web")
    assert as_v1["spec"]["targetCPUUtilizationPercentage"] == 60
    assert "metrics" not in as_v1["spec"]
    assert orjson.loads(as_v1["metadata"]["annotations"][METRICS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "300Mi"}}]

    # A v1 client's read-modify-write keeps it.
    as_v1["spec"]["maxReplicas"] = 7
    as_v1["spec"]["targetCPUUtilizationPercentage"] = 50
    updated = await client.request("PUT", f"{V1}/web", body=as_v1)
    assert updated["apiVersion"] == "autoscaling/v1"
    as_v2 = await client.request("GET", f"{V2}/web")
    assert as_v2["spec"]["maxReplicas"] == 7
    assert as_v2["spec"]["metrics"] == [MEMORY, cpu(50)]
    assert "annotations" not in as_v2["metadata"]

    # A merge patch against the v1 form.
    await client.request("PATCH", f"{V1}/web", body={"spec": {"minReplicas": 3}},
                         content_type="application/merge-patch+json")
    assert (await client.request("GET", f"{V2}/web"))["spec"]["minReplicas"] == 3

    listed = await client.request("GET", V1)
    assert listed["kind"] == "HorizontalPodAutoscalerList"
    assert [i["apiVersion"] for i in listed["items"]] == ["autoscaling/v1"]
    assert listed["items"][0]["spec"]["targetCPUUtilizationPercentage"] == 50
    cluster_wide = await client.request("GET", "/apis/autoscaling/v1/horizontalpodautoscalers")
    assert cluster_wide["items"][0]["spec"]["maxReplicas"] == 7

    gone = await client.request("DELETE", f"{V1}/web")
    assert gone["apiVersion"] == "autoscaling/v1"
    assert (await client.request("GET", V2))["items"] == []


async def test_a_v1_watch_sees_v1_objects(client: Client) -> None:
    seen: list[tuple[str, dict]] = []

    async def watch() -> None:
        async for event in client.watch(lookup("autoscaling", "v1", "horizontalpodautoscalers"),
                                        "default", resource_version="0"):
            if event[0] != "BOOKMARK":
                seen.append(event)
            if len(seen) == 2:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": REF, "maxReplicas": 4, "metrics": [cpu(70)]}}
    await client.request("POST", V2, body=body)
    await client.request("PATCH", f"{V2}/web", body={"spec": {"maxReplicas": 6}},
                         content_type="application/merge-patch+json")
    await asyncio.wait_for(task, 10)
    assert [kind for kind, _ in seen] == ["ADDED", "MODIFIED"]
    for _, obj in seen:
        assert obj["apiVersion"] == "autoscaling/v1"
        assert obj["spec"]["targetCPUUtilizationPercentage"] == 70
    assert seen[1][1]["spec"]["maxReplicas"] == 6


async def test_a_bad_v1_object_is_refused_at_v1(client: Client) -> None:
    def hpa(**spec) -> dict:
        return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"}, "spec": {"scaleTargetRef": REF, **spec}}

    with pytest.raises(Invalid) as refused:
        await client.request("POST", V1, body=hpa(targetCPUUtilizationPercentage=60))
    assert [c["field"] for c in refused.value.details["causes"]] == ["spec.maxReplicas"]
    with pytest.raises(BadRequest) as refused:
        await client.request("POST", V1, body=hpa(maxReplicas=3,
                                                  targetCPUUtilizationPercentage="high"))
    assert "HorizontalPodAutoscalerSpec.spec.targetCPUUtilizationPercentage of type int32" \
        in refused.value.message
    assert (await client.request("GET", V2))["items"] == []
