"""The CronJob controller, as Kubernetes' cronjob_controllerv2.go.

Each sync: the Jobs the CronJob owns update status.active and
lastSuccessfulTime; finished Jobs beyond successfulJobsHistoryLimit /
failedJobsHistoryLimit are deleted, oldest first; then, unless suspended, the
most recent schedule time not yet run (after lastScheduleTime, or creation)
starts a Job named NAME-<minutes since the epoch>, unless it is older than
startingDeadlineSeconds (MissSchedule) or concurrencyPolicy forbids it
(Forbid skips while one runs; Replace deletes the running ones first). The key
is requeued for the next schedule time.

The schedule is read in spec.timeZone (zoneinfo), or in UTC when unset, where
Kubernetes takes the controller manager's local zone. `clock` (an aware
datetime) is injectable, and `max_wait` caps the requeue delay, so that tests
can run a clock faster than real time.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kubelite.api.registry import lookup
from kubelite.client import (
    AlreadyExists,
    Client,
    Conflict,
    Controller,
    EventRecorder,
    InformerFactory,
    NotFound,
    index_by_controller_uid,
    object_reference,
)
from kubelite.controllers import podutil
from kubelite.controllers.cron import CronError, Schedule

log = logging.getLogger(__name__)
Obj = dict[str, Any]

JOBS = lookup("batch", "v1", "jobs")
CRONJOBS = lookup("batch", "v1", "cronjobs")
OWNER_INDEX = "controller-uid"
SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
# Kubernetes stops counting (and warns) past this many missed start times.
MAX_MISSED = 100


def _finished(job: Obj) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"]
    return None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CronJobController(Controller):
    name = "cronjob-controller"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 clock: Callable[[], dt.datetime] = _utc_now,
                 max_wait: float | None = None) -> None:
        super().__init__(workers=2)
        assert JOBS is not None and CRONJOBS is not None
        self.client = client
        self.clock = clock
        self.max_wait = max_wait
        self.recorder = EventRecorder(client, component="cronjob-controller")
        self.cronjobs = self.watch(factory.informer(CRONJOBS))
        self.jobs = self.watch_owned(
            factory.informer(JOBS, indexers={OWNER_INDEX: index_by_controller_uid}),
            owner=self.cronjobs, owner_kind="CronJob")

    async def sync(self, key: str) -> None:
        cj = self.cronjobs.get(key)
        if cj is None:
            return
        spec = cj["spec"]
        status = copy.deepcopy(cj.get("status") or {})
        jobs = self.jobs.by_index(OWNER_INDEX, cj["metadata"]["uid"])
        self._track_jobs(cj, status, jobs)
        await self._prune_history(cj, jobs)
        wait: float | None = None
        if not cj["metadata"].get("deletionTimestamp") and not spec.get("suspend"):
            try:
                zone = ZoneInfo(spec["timeZone"]) if spec.get("timeZone") else dt.UTC
                schedule = Schedule.parse(spec["schedule"])
            except (CronError, ZoneInfoNotFoundError, ValueError) as e:
                await self.recorder.record(cj, "Warning", "UnparseableSchedule",
                                           f"unparseable schedule: {spec.get('schedule')!r}: {e}")
                await self._write_status(cj, status)
                return
            now = self.clock().astimezone(zone)
            wait = await self._maybe_start(cj, status, schedule, now)
        await self._write_status(cj, status)
        if wait is not None:
            if self.max_wait is not None:
                wait = min(wait, self.max_wait)
            self.queue.add_after(key, max(wait, 0.0) + 0.05)

    def _track_jobs(self, cj: Obj, status: Obj, jobs: list[Obj]) -> None:
        running = {j["metadata"]["uid"] for j in jobs if not _finished(j)}
        known = {j["metadata"]["uid"]: j for j in jobs}
        active = [ref for ref in status.get("active") or [] if ref.get("uid") in running]
        listed = {ref.get("uid") for ref in active}
        for job in jobs:
            if job["metadata"]["uid"] in running and job["metadata"]["uid"] not in listed:
                active.append(_ref(job))
        status["active"] = active or None
        for job in known.values():
            if _finished(job) == "Complete":
                done = (job.get("status") or {}).get("completionTime")
                if done and (not status.get("lastSuccessfulTime")
                             or done > status["lastSuccessfulTime"]):
                    status["lastSuccessfulTime"] = done

    async def _prune_history(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj["spec"]
        doomed: list[Obj] = []
        for outcome, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                               ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            if limit is None:
                continue
            finished = sorted((j for j in jobs if _finished(j) == outcome
                               and not j["metadata"].get("deletionTimestamp")),
                              key=lambda j: (j.get("status") or {}).get("startTime")
                              or j["metadata"].get("creationTimestamp") or "")
            doomed.extend(finished[:max(len(finished) - int(limit), 0)])
        await asyncio.gather(*(self._delete_job(cj, j, "SuccessfulDelete") for j in doomed))

    async def _maybe_start(self, cj: Obj, status: Obj, schedule: Schedule,
                           now: dt.datetime) -> float | None:
        """Start the Job of the latest missed time if allowed; returns the seconds
        until the next schedule time."""
        spec = cj["spec"]
        since = podutil.parse_time(status.get("lastScheduleTime")) or podutil.parse_time(
            cj["metadata"].get("creationTimestamp")) or now
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None:
            since = max(since, now - dt.timedelta(seconds=int(deadline)))
        latest: dt.datetime | None = None
        missed = 0
        cursor = schedule.next(since.astimezone(now.tzinfo))
        while cursor is not None and cursor <= now:
            latest, missed = cursor, missed + 1
            if missed > MAX_MISSED:
                break
            cursor = schedule.next(cursor)
        if missed > MAX_MISSED:
            await self.recorder.record(
                cj, "Warning", "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew")
        upcoming = schedule.next(now)
        wait = (upcoming - now).total_seconds() if upcoming is not None else None
        if latest is None:
            return wait
        if deadline is not None and (now - latest).total_seconds() > int(deadline):
            await self.recorder.record(cj, "Warning", "MissSchedule",
                                       f"Missed scheduled time to start a job: "
                                       f"{podutil.rfc3339(latest.astimezone(dt.UTC))}")
            return wait
        policy = spec.get("concurrencyPolicy", "Allow")
        running = [self.jobs.get(f"{ref.get('namespace')}/{ref.get('name')}")
                   for ref in status.get("active") or []]
        running = [j for j in running if j is not None]
        if running and policy == "Forbid":
            await self.recorder.record(cj, "Normal", "JobAlreadyActive",
                                       "Not starting job because prior execution is running "
                                       "and concurrency policy is Forbid")
            return wait
        if running and policy == "Replace":
            await asyncio.gather(*(self._delete_job(cj, j, "SuccessfulDelete") for j in running))
            status["active"] = None
        job = await self._create_job(cj, latest)
        if job is not None:
            status["active"] = [*(status.get("active") or []), _ref(job)]
        status["lastScheduleTime"] = podutil.rfc3339(latest.astimezone(dt.UTC))
        return wait

    async def _create_job(self, cj: Obj, scheduled: dt.datetime) -> Obj | None:
        template = cj["spec"]["jobTemplate"]
        meta = template.get("metadata") or {}
        name = f"{cj['metadata']['name']}-{int(scheduled.timestamp() // 60)}"
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": name, "namespace": cj["metadata"]["namespace"],
                "labels": dict(meta.get("labels") or {}),
                "annotations": {**(meta.get("annotations") or {}),
                                SCHEDULED_ANNOTATION: scheduled.isoformat()},
                "ownerReferences": [podutil.owner_reference(cj)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            created = await self.client.create(JOBS, job, cj["metadata"]["namespace"])
        except AlreadyExists:
            return None
        await self.recorder.record(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        return created

    async def _delete_job(self, cj: Obj, job: Obj, reason: str) -> None:
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta["namespace"],
                                     propagation_policy="Background",
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        await self.recorder.record(cj, "Normal", reason, f"Deleted job {meta['name']}")

    async def _write_status(self, cj: Obj, status: Obj) -> None:
        status = {k: v for k, v in status.items() if v is not None}
        if status == (cj.get("status") or {}):
            return
        try:
            await self.client.update_status(CRONJOBS, {**cj, "status": status})
        except (NotFound, Conflict):
            # A newer CronJob is on its way through the informer and brings another sync.
            pass


def _ref(job: Obj) -> Obj:
    ref = object_reference(job)
    ref.pop("fieldPath", None)
    return ref
