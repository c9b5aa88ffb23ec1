"""The StatefulSet controller against a real API server; the test plays the node
agent by writing pod status."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, Invalid
from kubelite.controllers.statefulset import StatefulSetController
from kubelite.controllers.statefulset_pods import max_unavailable
from tests.controllers.live_api import (
    api_server,
    namespace,
    ns_name,
    reap,
    running,
    set_pod_running,
    until,
)

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
PVCS = lookup("", "v1", "persistentvolumeclaims")
SETS = lookup("apps", "v1", "statefulsets")
REVISIONS = lookup("apps", "v1", "controllerrevisions")


def statefulset(name: str = "web", *, replicas: int = 3, policy: str = "OrderedReady",
                claims: bool = True, **spec: object) -> dict:
    body: dict = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": "web-svc", "podManagementPolicy": policy,
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:v1"}]}},
                 **spec},
    }
    if claims:
        body["spec"]["volumeClaimTemplates"] = [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Mi"}}}}]
    return body


async def pod_names(client: Client, ns: str) -> list[str]:
    await reap(client, ns)
    items = (await client.list(PODS, ns))["items"]
    return sorted(p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp"))


async def pod(client: Client, ns: str, name: str) -> dict:
    return await client.get(PODS, name, ns)


async def test_ordered_ready_creates_one_pod_at_a_time_with_identity_and_claims(
        api_server: Path, ns_name: str) -> None:
    async with running(api_server, StatefulSetController) as client:
        ns = await namespace(client, ns_name)
        await client.create(SETS, statefulset(), ns)
        for n in range(3):
            await until(lambda n=n: _has(client, ns, f"web-{n}"))
            assert await pod_names(client, ns) == [f"web-{i}" for i in range(n + 1)]
            p = await pod(client, ns, f"web-{n}")
            labels = p["metadata"]["labels"]
            assert labels["statefulset.kubernetes.io/pod-name"] == f"web-{n}"
            assert labels["apps.kubernetes.io/pod-index"] == str(n)
            assert labels["controller-revision-hash"].startswith("web-")
            assert p["spec"]["hostname"] == f"web-{n}"
            assert p["spec"]["subdomain"] == "web-svc"
            assert {"name": "data", "persistentVolumeClaim": {"claimName": f"data-web-{n}"}} in \
                p["spec"]["volumes"]
            claim = await client.get(PVCS, f"data-web-{n}", ns)
            assert claim["metadata"]["labels"] == {"app": "web"}
            assert "ownerReferences" not in claim["metadata"]  # whenDeleted: Retain
            # Not ready: the next ordinal must wait.
            await set_pod_running(client, p, ready=False)
            assert await pod_names(client, ns) == [f"web-{i}" for i in range(n + 1)]
            await set_pod_running(client, await pod(client, ns, f"web-{n}"), ready=True)

        async def settled() -> bool:
            sts = await client.get(SETS, "web", ns)
            st = sts.get("status") or {}
            return (st.get("readyReplicas") == 3 and st.get("replicas") == 3
                    and st.get("currentRevision") == st.get("updateRevision")
                    and st.get("observedGeneration") == sts["metadata"]["generation"])
        await until(settled)
        revisions = (await client.list(REVISIONS, ns))["items"]
        assert len(revisions) == 1 and revisions[0]["revision"] == 1

        # A deleted pod comes back under the same name, with the same claim.
        victim = await pod(client, ns, "web-1")
        await client.delete(PODS, "web-1", ns)
        await until(lambda: _recreated(client, ns, "web-1", victim["metadata"]["uid"]))
        again = await pod(client, ns, "web-1")
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}} in \
            again["spec"]["volumes"]


async def _has(client: Client, ns: str, name: str) -> bool:
    return name in await pod_names(client, ns)


async def _recreated(client: Client, ns: str, name: str, old_uid: str) -> bool:
    await reap(client, ns)
    try:
        p = await client.get(PODS, name, ns)
    except Exception:
        return False
    return p["metadata"]["uid"] != old_uid


async def test_parallel_creates_all_and_scale_down_deletes_claims_when_asked(
        api_server: Path, ns_name: str) -> None:
    async with running(api_server, StatefulSetController) as client:
        ns = await namespace(client, ns_name)
        body = statefulset(policy="Parallel", persistentVolumeClaimRetentionPolicy={
            "whenDeleted": "Delete", "whenScaled": "Delete"})
        await client.create(SETS, body, ns)
        await until(lambda: _count(client, ns, 3))
        claim = await client.get(PVCS, "data-web-2", ns)
        owner = claim["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("StatefulSet", "web", False)
        await client.patch(SETS, "web", {"spec": {"replicas": 1}}, namespace=ns)

        async def scaled() -> bool:
            names = {c["metadata"]["name"] for c in (await client.list(PVCS, ns))["items"]
                     if not c["metadata"].get("deletionTimestamp")}
            return await pod_names(client, ns) == ["web-0"] and names == {"data-web-0"}
        await until(scaled)


async def _count(client: Client, ns: str, n: int) -> bool:
    return len(await pod_names(client, ns)) == n


async def test_rolling_update_honours_partition_and_goes_from_the_top(
        api_server: Path, ns_name: str) -> None:
    async with running(api_server, StatefulSetController) as client:
        ns = await namespace(client, ns_name)
        await client.create(SETS, statefulset(policy="Parallel", claims=False), ns)
        await until(lambda: _count(client, ns, 3))
        for n in range(3):
            await set_pod_running(client, await pod(client, ns, f"web-{n}"))
        old = {n: (await pod(client, ns, f"web-{n}"))["metadata"]["uid"] for n in range(3)}
        await client.patch(SETS, "web", {"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:v2"}]}}}},
            namespace=ns)
        await until(lambda: _recreated(client, ns, "web-2", old[2]))
        assert (await pod(client, ns, "web-2"))["spec"]["containers"][0]["image"] == "busybox:v2"
        # web-1 waits until web-2 is ready again (maxUnavailable 1).
        assert (await pod(client, ns, "web-1"))["metadata"]["uid"] == old[1]
        await set_pod_running(client, await pod(client, ns, "web-2"))
        await until(lambda: _recreated(client, ns, "web-1", old[1]))
        await set_pod_running(client, await pod(client, ns, "web-1"))

        async def status_says_two_updated() -> bool:
            st = (await client.get(SETS, "web", ns)).get("status") or {}
            return (st.get("updatedReplicas") == 2 and st.get("currentReplicas") == 1
                    and st.get("currentRevision") != st.get("updateRevision"))
        await until(status_says_two_updated)
        assert (await pod(client, ns, "web-0"))["metadata"]["uid"] == old[0]
        assert len((await client.list(REVISIONS, ns))["items"]) == 2


async def test_on_delete_replaces_only_deleted_pods(api_server: Path, ns_name: str) -> None:
    async with running(api_server, StatefulSetController) as client:
        ns = await namespace(client, ns_name)
        await client.create(SETS, statefulset(replicas=2, policy="Parallel", claims=False,
                                              updateStrategy={"type": "OnDelete"}), ns)
        await until(lambda: _count(client, ns, 2))
        for n in range(2):
            await set_pod_running(client, await pod(client, ns, f"web-{n}"))
        old0 = (await pod(client, ns, "web-0"))["metadata"]["uid"]
        await client.patch(SETS, "web", {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": "busybox:v2"}]}}}}, namespace=ns)
        await until(lambda: _update_revision_differs(client, ns))
        assert (await pod(client, ns, "web-0"))["metadata"]["uid"] == old0
        await client.delete(PODS, "web-0", ns)
        await until(lambda: _recreated(client, ns, "web-0", old0))
        assert (await pod(client, ns, "web-0"))["spec"]["containers"][0]["image"] == "busybox:v2"
        assert (await pod(client, ns, "web-1"))["spec"]["containers"][0]["image"] == "busybox:v1"


async def _update_revision_differs(client: Client, ns: str) -> bool:
    st = (await client.get(SETS, "web", ns)).get("status") or {}
    return bool(st.get("updateRevision")) and st.get("updateRevision") != st.get("currentRevision")


@pytest.mark.parametrize(("replicas", "value", "want"), [
    (10, None, 1), (10, 3, 3), (10, "25%", 2), (3, "10%", 1), (10, 0, 1),
], ids=["default one", "an absolute number", "a percentage rounds down",
        "never below one", "zero still progresses"])
def test_max_unavailable(replicas: int, value: object, want: int) -> None:
    body = statefulset(replicas=replicas)
    if value is not None:
        body["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxUnavailable": value}}
    assert max_unavailable(body) == want


@pytest.mark.parametrize(("change", "field"), [
    (lambda s: s["spec"].pop("serviceName"), "spec.serviceName"),
    (lambda s: s["spec"].update(replicas=-1), "spec.replicas"),
    (lambda s: s["spec"]["template"]["metadata"].update(labels={"app": "x"}),
     "spec.template.metadata.labels"),
], ids=["without serviceName", "negative replicas", "selector not matching the template"])
async def test_bad_statefulsets_are_refused_with_the_field(
        api_server: Path, ns_name: str, change, field: str) -> None:
    async with running(api_server) as client:
        ns = await namespace(client, ns_name)
        body = copy.deepcopy(statefulset())
        change(body)
        with pytest.raises(Invalid) as err:
            await client.create(SETS, body, ns)
        assert field in [c.get("field") for c in err.value.causes]
