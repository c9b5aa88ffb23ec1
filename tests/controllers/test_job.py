"""The Job controller against a real API server; the test plays the node agent by
writing pod phases and exit codes."""

from __future__ import annotations

import asyncio
import functools

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, NotFound
from kubelite.controllers import job_util as ju
from kubelite.controllers.job import JobController
from tests.controllers.live_api import api_server, namespace, ns_name, reap, running, until

__all__ = ["api_server", "ns_name"]

PODS = lookup("", "v1", "pods")
JOBS = lookup("batch", "v1", "jobs")
EVENTS = lookup("", "v1", "events")
Fast = functools.partial(JobController, failure_backoff=0.05)


@pytest.mark.parametrize(("text", "indexes"), [
    ("", set()), ("0", {0}), ("1,3-5", {1, 3, 4, 5}), ("0-2,7", {0, 1, 2, 7}), ("x,2", {2})])
def test_index_sets_round_trip(text: str, indexes: set[int]) -> None:
    assert ju.parse_indexes(text) == indexes
    if "x" not in text:
        assert ju.format_indexes(indexes) == text


def _failed_pod(code: int, *, conditions: list | None = None) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions or [],
                       "containerStatuses": [{"name": "main", "state": {
                           "terminated": {"exitCode": code}}}]}}


@pytest.mark.parametrize(("rules", "pod", "expected"), [
    ([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}],
     _failed_pod(42), ("FailJob", 0)),
    ([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}],
     _failed_pod(1), None),
    ([{"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}}],
     _failed_pod(3), ("Ignore", 0)),
    ([{"action": "Count", "onExitCodes": {"operator": "In", "values": [3]}},
      {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}],
     _failed_pod(9, conditions=[{"type": "DisruptionTarget", "status": "True"}]), ("Ignore", 1)),
    ([{"action": "FailJob", "onExitCodes": {"containerName": "other", "operator": "In",
                                            "values": [42]}}], _failed_pod(42), None),
], ids=["FailJob on a listed exit code", "an unlisted code matches nothing",
        "NotIn matches codes outside the list", "a pod condition matches the second rule",
        "containerName limits the rule to that container"])
def test_pod_failure_policy_rules(rules: list, pod: dict, expected: tuple | None) -> None:
    match = ju.match_failure_rule({"spec": {"podFailurePolicy": {"rules": rules}}}, pod)
    assert (match[:2] if match else None) == expected


def job(name: str, **spec: object) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "busybox"}]}}, **spec}}


async def _pods(client: Client, ns: str, *, active: bool = True) -> list[dict]:
    items = (await client.list(PODS, ns))["items"]
    return [p for p in items if not active or (
        p["status"].get("phase") not in ("Succeeded", "Failed")
        and not p["metadata"].get("deletionTimestamp"))]


async def _no_pods(client: Client, ns: str) -> bool:
    await reap(client, ns)
    return not (await client.list(PODS, ns))["items"]


async def finish(client: Client, pod: dict, phase: str, code: int = 0) -> None:
    """Play the agent: the pod's one container ended with `code`."""
    pod = await client.get(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
    state = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
    pod["status"] = {**pod["status"], "phase": phase, "containerStatuses": [
        {"name": "main", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
         "state": state}]}
    await client.update_status(PODS, pod)


async def _condition(client: Client, ns: str, name: str, kind: str) -> dict | None:
    obj = await client.get(JOBS, name, ns)
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind and cond["status"] == "True":
            return obj
    return None


async def test_completions_five_parallelism_two_completes(api_server, ns_name: str) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("five", completions=5, parallelism=2), ns_name)
        done = 0
        while done < 5:
            active = await until(lambda: _pods(client, ns_name))
            assert len(active) <= 2
            assert ju.TRACKING_FINALIZER in active[0]["metadata"]["finalizers"]
            await finish(client, active[0], "Succeeded")
            done += 1
            await until(lambda d=done: _counted(client, ns_name, "five", d))
        finished = await until(lambda: _condition(client, ns_name, "five", "Complete"))
        status = finished["status"]
        assert status["succeeded"] == 5 and status["active"] == 0
        assert status["completionTime"] and status["startTime"]
        kinds = {c["type"] for c in status["conditions"]}
        assert {"SuccessCriteriaMet", "Complete"} <= kinds
        for pod in await _pods(client, ns_name, active=False):
            assert ju.TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or [])


async def _counted(client: Client, ns: str, name: str, succeeded: int) -> bool:
    obj = await client.get(JOBS, name, ns)
    return obj.get("status", {}).get("succeeded", 0) >= succeeded


async def test_backoff_limit_fails_the_job_after_counted_failures(api_server, ns_name) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("flaky", backoffLimit=1), ns_name)
        for _ in range(2):
            active = await until(lambda: _pods(client, ns_name))
            await finish(client, active[0], "Failed", 1)
            await asyncio.sleep(0.2)
        failed = await until(lambda: _condition(client, ns_name, "flaky", "Failed"))
        cond = [c for c in failed["status"]["conditions"] if c["type"] == "Failed"][0]
        assert cond["reason"] == "BackoffLimitExceeded"
        assert failed["status"]["failed"] == 2
        assert not await _pods(client, ns_name)


async def test_indexed_job_gives_each_pod_its_index(api_server, ns_name: str) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("idx", completions=3, parallelism=3,
                                      completionMode="Indexed"), ns_name)
        pods = await until(lambda: _three(client, ns_name))
        by_index = {ju.pod_index(p): p for p in pods}
        assert set(by_index) == {0, 1, 2}
        one = by_index[1]
        assert one["metadata"]["labels"][ju.COMPLETION_INDEX] == "1"
        assert one["metadata"]["name"].startswith("idx-1-")
        assert one["spec"]["hostname"] == "idx-1"
        env = one["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
        await finish(client, by_index[1], "Succeeded")
        await finish(client, by_index[0], "Failed", 1)
        await until(lambda: _status_is(client, ns_name, "idx", completedIndexes="1", failed=1))
        again = await until(lambda: _index_active(client, ns_name, 0))
        await finish(client, again, "Succeeded")
        await finish(client, by_index[2], "Succeeded")
        done = await until(lambda: _condition(client, ns_name, "idx", "Complete"))
        assert done["status"]["completedIndexes"] == "0-2"


async def _three(client: Client, ns: str) -> list[dict] | None:
    pods = await _pods(client, ns)
    return pods if len(pods) == 3 else None


async def _index_active(client: Client, ns: str, index: int) -> dict | None:
    for pod in await _pods(client, ns):
        if ju.pod_index(pod) == index:
            return pod
    return None


async def _status_is(client: Client, ns: str, name: str, **fields: object) -> bool:
    status = (await client.get(JOBS, name, ns)).get("status", {})
    return all(status.get(k) == v for k, v in fields.items())


async def test_pod_failure_policy_fail_job_and_ignore(api_server, ns_name: str) -> None:
    policy = {"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]}
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("policy", backoffLimit=0, podFailurePolicy=policy),
                            ns_name)
        first = (await until(lambda: _pods(client, ns_name)))[0]
        await finish(client, first, "Failed", 7)
        second = await until(lambda: _other_than(client, ns_name, first))
        await asyncio.sleep(0.3)
        assert (await client.get(JOBS, "policy", ns_name))["status"].get("failed", 0) == 0
        await finish(client, second, "Failed", 42)
        failed = await until(lambda: _condition(client, ns_name, "policy", "Failed"))
        cond = [c for c in failed["status"]["conditions"] if c["type"] == "Failed"][0]
        assert cond["reason"] == "PodFailurePolicy"
        assert "failed with exit code 42 matching FailJob rule at index 0" in cond["message"]
        target = [c for c in failed["status"]["conditions"] if c["type"] == "FailureTarget"]
        assert target and target[0]["reason"] == "PodFailurePolicy"


async def _other_than(client: Client, ns: str, pod: dict) -> dict | None:
    for other in await _pods(client, ns):
        if other["metadata"]["uid"] != pod["metadata"]["uid"]:
            return other
    return None


async def test_active_deadline_fails_the_job_and_removes_its_pods(api_server, ns_name) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("slow", parallelism=2, completions=4,
                                      activeDeadlineSeconds=1), ns_name)

        async def failed() -> dict | None:
            await reap(client, ns_name)
            return await _condition(client, ns_name, "slow", "Failed")

        obj = await until(failed, timeout=8)
        cond = [c for c in obj["status"]["conditions"] if c["type"] == "Failed"][0]
        assert cond["reason"] == "DeadlineExceeded"
        assert obj["status"]["active"] == 0
        # Told by the Job's events rather than by watching its pods: on a loaded
        # machine the second they stay active can pass between two polls.
        notes = [e["reason"] for e in (await client.list(EVENTS, ns_name))["items"]
                 if e["involvedObject"]["name"] == "slow"]
        assert notes.count("SuccessfulCreate") == 2
        assert notes.count("SuccessfulDelete") == 2
        assert await until(lambda: _no_pods(client, ns_name))


async def test_suspend_deletes_pods_and_resume_restarts(api_server, ns_name: str) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("pause", parallelism=2, completions=2), ns_name)
        await until(lambda: _pods(client, ns_name))
        await client.patch(JOBS, "pause", {"spec": {"suspend": True}}, namespace=ns_name)

        async def suspended() -> dict | None:
            await reap(client, ns_name)
            if await _pods(client, ns_name, active=False):
                return None
            return await _condition(client, ns_name, "pause", "Suspended")

        await until(suspended, timeout=8)
        await client.patch(JOBS, "pause", {"spec": {"suspend": False}}, namespace=ns_name)
        assert len(await until(lambda: _two(client, ns_name))) == 2
        obj = await client.get(JOBS, "pause", ns_name)
        cond = [c for c in obj["status"]["conditions"] if c["type"] == "Suspended"][0]
        assert cond["status"] == "False" and cond["reason"] == "JobResumed"


async def _two(client: Client, ns: str) -> list[dict] | None:
    pods = await _pods(client, ns)
    return pods if len(pods) == 2 else None


async def test_ttl_after_finished_deletes_the_job(api_server, ns_name: str) -> None:
    async with running(api_server, Fast) as client:
        await namespace(client, ns_name)
        await client.create(JOBS, job("short", ttlSecondsAfterFinished=1), ns_name)
        pod = (await until(lambda: _pods(client, ns_name)))[0]
        await finish(client, pod, "Succeeded")
        await until(lambda: _condition(client, ns_name, "short", "Complete"))

        async def gone() -> bool:
            try:
                await client.get(JOBS, "short", ns_name)
            except NotFound:
                return True
            return False

        await until(gone, timeout=5)
