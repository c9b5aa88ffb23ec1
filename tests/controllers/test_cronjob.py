"""Cron schedules, and the CronJob controller against a real API server on a clock
that runs sixty times faster than real time (one real second per minute)."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from zoneinfo import ZoneInfo

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client
from kubelite.controllers.cron import CronError, Schedule
from kubelite.controllers.cronjob import CronJobController
from tests.controllers.live_api import api_server, namespace, ns_name, running, until

__all__ = ["api_server", "ns_name"]

JOBS = lookup("batch", "v1", "jobs")
CRONJOBS = lookup("batch", "v1", "cronjobs")
UTC = dt.UTC


def at(text: str, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(("schedule", "after", "expected"), [
    ("*/15 * * * *", "2024-03-01T10:07:30", "2024-03-01T10:15:00"),
    ("0 9-17/4 * * *", "2024-03-01T13:00:00", "2024-03-01T17:00:00"),
    ("30 2 * * mon-fri", "2024-03-01T03:00:00", "2024-03-04T02:30:00"),
    ("0 0 1 jan,jul *", "2024-03-01T00:00:00", "2024-07-01T00:00:00"),
    ("0 0 13 * 5", "2024-03-01T00:00:00", "2024-03-08T00:00:00"),
    ("0 0 * * 7", "2024-03-01T00:00:00", "2024-03-03T00:00:00"),
    ("@hourly", "2024-03-01T10:00:00", "2024-03-01T11:00:00"),
    ("@weekly", "2024-03-01T10:00:00", "2024-03-03T00:00:00"),
    ("@yearly", "2024-03-01T10:00:00", "2025-01-01T00:00:00"),
    ("5/20 * * * ?", "2024-03-01T10:46:00", "2024-03-01T11:05:00"),
    ("0 0 29 2 *", "2025-03-01T00:00:00", "2028-02-29T00:00:00"),
], ids=["a step over a star", "a stepped range", "weekday names", "a list of month names",
        "day of month OR day of week when both are restricted", "7 is Sunday", "@hourly",
        "@weekly is Sunday midnight", "@yearly", "a step from a start value",
        "the next leap day"])
def test_next_fire_time(schedule: str, after: str, expected: str) -> None:
    assert Schedule.parse(schedule).next(at(after)) == at(expected)


def test_a_time_zone_is_honoured_across_daylight_saving() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 02:30 does not exist on 2024-03-31 in Berlin: the next day's run is the next one.
    fired = Schedule.parse("30 2 * * *").next(at("2024-03-30T03:00:00", berlin))
    assert fired == at("2024-04-01T02:30:00", berlin)


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* * * * mon-xyz", "*/0 * * * *",
                                 "5-2 * * * *"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(CronError):
        Schedule.parse(bad)


def fast_clock() -> functools.partial:
    base, start = dt.datetime.now(UTC), time.monotonic()

    def now() -> dt.datetime:
        return base + dt.timedelta(seconds=(time.monotonic() - start) * 60)

    return functools.partial(CronJobController, clock=now, max_wait=0.2)


def cronjob(name: str, **spec: object) -> dict:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"from": name}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "busybox"}]}}}}, **spec}}


async def _jobs(client: Client, ns: str) -> list[dict]:
    return (await client.list(JOBS, ns))["items"]


async def _complete(client: Client, job: dict) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    job = await client.get(JOBS, job["metadata"]["name"], job["metadata"]["namespace"])
    job["status"] = {"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
        {"type": "Complete", "status": "True", "reason": "CompletionsReached"}]}
    await client.update_status(JOBS, job)


async def test_every_minute_creates_jobs_and_keeps_the_history_limit(api_server, ns_name) -> None:
    async with running(api_server, fast_clock()) as client:
        await namespace(client, ns_name)
        await client.create(CRONJOBS, cronjob("tick", successfulJobsHistoryLimit=2), ns_name)
        seen: set[str] = set()
        while len(seen) < 4:
            jobs = await until(lambda: _unfinished(client, ns_name), timeout=5)
            for job in jobs:
                assert job["metadata"]["labels"]["from"] == "tick"
                assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
                assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in \
                    job["metadata"]["annotations"]
                seen.add(job["metadata"]["name"])
                await _complete(client, job)
        await until(lambda: _finished_count(client, ns_name, 2), timeout=5)
        cj = await client.get(CRONJOBS, "tick", ns_name)
        assert cj["status"]["lastScheduleTime"] and cj["status"]["lastSuccessfulTime"]


async def _unfinished(client: Client, ns: str) -> list[dict]:
    return [j for j in await _jobs(client, ns) if not (j.get("status") or {}).get("conditions")
            and not j["metadata"].get("deletionTimestamp")]


async def _finished_count(client: Client, ns: str, n: int) -> bool:
    done = [j for j in await _jobs(client, ns) if (j.get("status") or {}).get("conditions")
            and not j["metadata"].get("deletionTimestamp")]
    return len(done) == n


async def test_forbid_runs_one_job_at_a_time(api_server, ns_name: str) -> None:
    async with running(api_server, fast_clock()) as client:
        await namespace(client, ns_name)
        await client.create(CRONJOBS, cronjob("solo", concurrencyPolicy="Forbid"), ns_name)
        await until(lambda: _jobs(client, ns_name), timeout=5)
        await until(lambda: _active_listed(client, ns_name, "solo"), timeout=5)
        await _wait(2.5)
        assert len(await _jobs(client, ns_name)) == 1


async def _active_listed(client: Client, ns: str, name: str) -> bool:
    return bool((await client.get(CRONJOBS, name, ns)).get("status", {}).get("active"))


async def _wait(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def test_replace_deletes_the_running_job(api_server, ns_name: str) -> None:
    async with running(api_server, fast_clock()) as client:
        await namespace(client, ns_name)
        await client.create(CRONJOBS, cronjob("swap", concurrencyPolicy="Replace"), ns_name)
        first = (await until(lambda: _jobs(client, ns_name), timeout=5))[0]["metadata"]["name"]
        await until(lambda: _replaced(client, ns_name, first), timeout=6)


async def _replaced(client: Client, ns: str, first: str) -> bool:
    live = [j["metadata"]["name"] for j in await _jobs(client, ns)
            if not j["metadata"].get("deletionTimestamp")]
    return bool(live) and first not in live


async def test_suspended_cronjobs_create_nothing(api_server, ns_name: str) -> None:
    async with running(api_server, fast_clock()) as client:
        await namespace(client, ns_name)
        await client.create(CRONJOBS, cronjob("off", suspend=True), ns_name)
        await _wait(2.5)
        assert await _jobs(client, ns_name) == []
