"""The Job controller, as Kubernetes' job_controller.go (1.32).

Pods are created from the template with the job-tracking finalizer
(`batch.kubernetes.io/job-tracking`), so that a finished pod cannot vanish
before it is counted: its uid first goes into status.uncountedTerminatedPods,
then the finalizer is removed, then it moves into succeeded / failed (and, for
Indexed Jobs, completedIndexes). A pod deleted before it succeeded counts as
failed, unless podReplacementPolicy is Failed. podFailurePolicy rules (FailJob,
Ignore, Count on exit codes and pod conditions such as DisruptionTarget) decide
what a failed pod means; Ignore does not count towards backoffLimit.

A Job ending gets FailureTarget (BackoffLimitExceeded, DeadlineExceeded,
PodFailurePolicy) or SuccessCriteriaMet (CompletionsReached) first; once none
of its pods runs any more, Failed or Complete with the same reason.
Replacements for failed pods wait an exponential back-off (Kubernetes: 10 s
doubling to 6 min). ttlSecondsAfterFinished is handled here rather than by a
separate TTL controller: the finished Job is deleted in the background.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from kubelite.api.registry import lookup
from kubelite.client import (
    AlreadyExists,
    Client,
    Conflict,
    Controller,
    EventRecorder,
    Expectations,
    InformerFactory,
    NotFound,
    index_by_controller_uid,
    object_key,
    slow_start_batch,
)
from kubelite.controllers import job_util as ju
from kubelite.controllers import podutil

log = logging.getLogger(__name__)
Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
JOBS = lookup("batch", "v1", "jobs")
OWNER_INDEX = "controller-uid"
# Kubernetes' DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
FAILURE_BACKOFF = 10.0
FAILURE_BACKOFF_MAX = 360.0
# Pods one sync creates at most (Kubernetes' MaxPodCreateDeletePerSync).
MAX_PER_SYNC = 500


def condition(job: Obj, kind: str) -> Obj | None:
    return podutil.condition(job, kind)


def is_finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _set_condition(status: Obj, kind: str, cstatus: str, reason: str, message: str) -> bool:
    """Sets the condition, keeping lastTransitionTime when the status is unchanged;
    returns whether anything changed."""
    conditions = status.setdefault("conditions", [])
    now = podutil.rfc3339(podutil.now_utc())
    for cond in conditions:
        if cond.get("type") == kind:
            if (cond.get("status"), cond.get("reason"), cond.get("message")) == (
                    cstatus, reason, message):
                return False
            if cond.get("status") != cstatus:
                cond["lastTransitionTime"] = now
            cond.update(status=cstatus, reason=reason, message=message, lastProbeTime=now)
            return True
    conditions.append({"type": kind, "status": cstatus, "reason": reason, "message": message,
                       "lastProbeTime": now, "lastTransitionTime": now})
    return True


class JobController(Controller):
    name = "job-controller"

    def __init__(self, client: Client, factory: InformerFactory, *,
                 failure_backoff: float = FAILURE_BACKOFF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(workers=4)
        assert PODS is not None and JOBS is not None
        self.client = client
        self.failure_backoff = failure_backoff
        self.clock = clock
        self.recorder = EventRecorder(client, component="job-controller")
        self.expectations = Expectations()
        # When each Job last had a pod failure counted: replacements back off from it.
        self._last_failure: dict[str, float] = {}
        self.jobs = self.watch(factory.informer(JOBS))
        self.pods = self.watch_owned(
            factory.informer(PODS, indexers={OWNER_INDEX: index_by_controller_uid}),
            owner=self.jobs, owner_kind="Job", expectations=self.expectations)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.expectations.delete(key)
            self._last_failure.pop(key, None)
            return
        pods = self.pods.by_index(OWNER_INDEX, job["metadata"]["uid"])
        if is_finished(job):
            await self._release(pods, [p["metadata"]["uid"] for p in pods if _finished(p)])
            await self._expire(key, job)
            return
        if not self.expectations.satisfied(key):
            return
        job = await self._count_finished(key, job, pods)
        if job is None:
            return
        await self._reconcile(key, job, pods)

    # -- counting finished pods ------------------------------------------------------

    async def _count_finished(self, key: str, job: Obj, pods: list[Obj]) -> Obj | None:
        """Count finished pods through uncountedTerminatedPods; returns the Job as
        stored, with `_failure_target` noted when a FailJob rule matched."""
        status = copy.deepcopy(job.get("status") or {})
        only_failed = job["spec"].get("podReplacementPolicy") == "Failed"
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        pending = set(uncounted.get("succeeded") or []) | set(uncounted.get("failed") or [])
        ignored: list[str] = []
        target: tuple[str, str] | None = None
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if ju.TRACKING_FINALIZER not in (pod["metadata"].get("finalizers") or []) \
                    or uid in pending:
                continue
            if ju.phase(pod) == "Succeeded":
                uncounted.setdefault("succeeded", []).append(uid)
            elif ju.is_failed(pod, only_failed=only_failed):
                rule = ju.match_failure_rule(job, pod)
                if rule is not None and rule[0] == "Ignore":
                    ignored.append(uid)
                    continue
                if rule is not None and rule[0] == "FailJob" and target is None:
                    target = ("PodFailurePolicy", rule[2])
                uncounted.setdefault("failed", []).append(uid)
        added = set(uncounted.get("succeeded") or []) | set(uncounted.get("failed") or [])
        if target is not None:
            _set_condition(status, "FailureTarget", "True", *target)
        if added != pending or target is not None:
            job = await self._write_status(job, status)
            if job is None:
                return None
        if not added and not ignored:
            return job
        released = await self._release(pods, [*added, *ignored])
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        status = copy.deepcopy(job.get("status") or {})
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        completed = ju.parse_indexes(status.get("completedIndexes"))
        new_failures = 0
        for outcome in ("succeeded", "failed"):
            keep = []
            for uid in uncounted.get(outcome) or []:
                pod = by_uid.get(uid)
                if pod is not None and uid not in released:
                    keep.append(uid)
                    continue
                status[outcome] = int(status.get(outcome) or 0) + 1
                if outcome == "failed":
                    new_failures += 1
                elif pod is not None and ju.pod_index(pod) is not None:
                    completed.add(ju.pod_index(pod))  # type: ignore[arg-type]
            uncounted[outcome] = keep
        if job["spec"].get("completionMode") == "Indexed":
            status["completedIndexes"] = ju.format_indexes(
                i for i in completed if i < int(job["spec"].get("completions") or 0))
        if new_failures:
            self._last_failure[key] = self.clock()
        return await self._write_status(job, status)

    async def _release(self, pods: list[Obj], uids: list[str]) -> set[str]:
        """Remove the tracking finalizer from these pods; returns the uids done."""
        wanted = set(uids)
        todo = [p for p in pods if p["metadata"]["uid"] in wanted
                and ju.TRACKING_FINALIZER in (p["metadata"].get("finalizers") or [])]
        results = await asyncio.gather(*(self._drop_finalizer(p) for p in todo))
        done = {p["metadata"]["uid"] for p, ok in zip(todo, results, strict=True) if ok}
        return done | {u for u in wanted if u not in {p["metadata"]["uid"] for p in todo}}

    async def _drop_finalizer(self, pod: Obj) -> bool:
        meta = pod["metadata"]
        rest = [f for f in meta.get("finalizers") or [] if f != ju.TRACKING_FINALIZER]
        patch = {"metadata": {"finalizers": rest or None, "uid": meta["uid"],
                              "resourceVersion": meta["resourceVersion"]}}
        try:
            await self.client.patch(PODS, meta["name"], patch, namespace=meta["namespace"])
        except NotFound:
            return True
        except Conflict:
            return False
        return True

    # -- acting on the count -------------------------------------------------------

    async def _reconcile(self, key: str, job: Obj, pods: list[Obj]) -> None:
        spec, status = job["spec"], copy.deepcopy(job.get("status") or {})
        only_failed = spec.get("podReplacementPolicy") == "Failed"
        active = [p for p in pods if ju.is_active(p)]
        terminating = [p for p in pods if ju.is_terminating(p)]
        now = podutil.now_utc()
        ending = self._ending(job, status, active, now)
        if ending is not None:
            await self._delete(key, job, active)
            active = []
        elif spec.get("suspend"):
            if _set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended"):
                await self.recorder.record(job, "Normal", "Suspended", "Job suspended")
            await self._delete(key, job, active)
            active = []
        else:
            if (condition(job, "Suspended") or {}).get("status") == "True":
                _set_condition(status, "Suspended", "False", "JobResumed", "Job resumed")
                status["startTime"] = podutil.rfc3339(now)
                await self.recorder.record(job, "Normal", "Resumed", "Job resumed")
            status.setdefault("startTime", podutil.rfc3339(now))
            active = await self._manage(key, job, status, active, terminating, only_failed)
            deadline = spec.get("activeDeadlineSeconds")
            if deadline is not None:
                started = podutil.parse_time(status["startTime"]) or now
                left = float(deadline) - (now - started).total_seconds()
                self.queue.add_after(key, max(left, 0.0) + 0.05)
        if ending is not None and not active and not terminating:
            kind, reason, message = ending
            _set_condition(status, kind, "True", reason, message)
            if kind == "Complete":
                status["completionTime"] = podutil.rfc3339(now)
            await self.recorder.record(job, "Normal" if kind == "Complete" else "Warning",
                                       "Completed" if kind == "Complete" else reason, message)
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if podutil.is_ready(p))
        status["terminating"] = len(terminating)
        status.setdefault("succeeded", 0)
        status.setdefault("failed", 0)
        await self._write_status(job, status)

    def _ending(self, job: Obj, status: Obj, active: list[Obj],
                now: Any) -> tuple[str, str, str] | None:
        """(final condition, reason, message) once the Job is bound to end; the
        interim condition (FailureTarget or SuccessCriteriaMet) is set in `status`."""
        spec = job["spec"]
        for cond in status.get("conditions") or []:
            if cond.get("status") != "True":
                continue
            if cond.get("type") == "FailureTarget":
                return "Failed", cond.get("reason", ""), cond.get("message", "")
            if cond.get("type") == "SuccessCriteriaMet":
                return "Complete", cond.get("reason", ""), cond.get("message", "")
        failed, succeeded = int(status.get("failed") or 0), int(status.get("succeeded") or 0)
        ending: tuple[str, str, str] | None = None
        deadline = spec.get("activeDeadlineSeconds")
        started = podutil.parse_time(status.get("startTime"))
        if failed > int(spec.get("backoffLimit", 6)):
            ending = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and started is not None and not spec.get("suspend") \
                and (now - started).total_seconds() >= float(deadline):
            ending = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        elif self._succeeded(job, status, succeeded, active):
            ending = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        if ending is not None:
            interim = "FailureTarget" if ending[0] == "Failed" else "SuccessCriteriaMet"
            _set_condition(status, interim, "True", ending[1], ending[2])
        return ending

    @staticmethod
    def _succeeded(job: Obj, status: Obj, succeeded: int, active: list[Obj]) -> bool:
        completions = job["spec"].get("completions")
        if job["spec"].get("completionMode") == "Indexed":
            return len(ju.parse_indexes(status.get("completedIndexes"))) >= int(completions or 0)
        if completions is None:
            return succeeded > 0 and not active
        return succeeded >= int(completions)

    async def _manage(self, key: str, job: Obj, status: Obj, active: list[Obj],
                      terminating: list[Obj], only_failed: bool) -> list[Obj]:
        """Create or delete pods toward the wanted parallelism; returns the active pods
        that remain."""
        spec = job["spec"]
        parallelism = int(spec.get("parallelism", 1))
        busy = len(active) + (len(terminating) if only_failed else 0)
        completions = spec.get("completions")
        indexed = spec.get("completionMode") == "Indexed"
        doomed: list[Obj] = []
        missing: list[int | None] = []
        if indexed:
            completed = ju.parse_indexes(status.get("completedIndexes"))
            seen: set[int] = set()
            for pod in sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", "")):
                index = ju.pod_index(pod)
                if index is None or index >= int(completions or 0) or index in completed \
                        or index in seen:
                    doomed.append(pod)
                else:
                    seen.add(index)
            if only_failed:
                seen |= {i for i in map(ju.pod_index, terminating) if i is not None}
            free = max(parallelism - (busy - len(doomed)), 0)
            missing = [i for i in range(int(completions or 0))
                       if i not in completed and i not in seen][:free]
        else:
            succeeded = int(status.get("succeeded") or 0)
            want = parallelism if completions is None else min(
                parallelism, int(completions) - succeeded)
            if completions is None and succeeded > 0:
                want = 0
            diff = max(want, 0) - busy
            if diff < 0:
                doomed = sorted(active, key=podutil.deletion_rank)[:-diff]
            missing = [None] * max(diff, 0)
        if doomed:
            await self._delete(key, job, doomed)
        if missing:
            wait = self._backoff_left(key, int(status.get("failed") or 0))
            if wait > 0:
                self.queue.add_after(key, wait)
            else:
                await self._create(key, job, missing[:MAX_PER_SYNC])
        return [p for p in active if p not in doomed]

    def _backoff_left(self, key: str, failed: int) -> float:
        last = self._last_failure.get(key)
        if last is None or failed <= 0:
            return 0.0
        delay = min(self.failure_backoff * 2 ** (failed - 1), FAILURE_BACKOFF_MAX)
        return last + delay - self.clock()

    async def _create(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        name = job["metadata"]["name"]
        template = job["spec"]["template"]
        pending = list(indexes)
        self.expectations.expect_creations(key, len(pending))

        async def create() -> None:
            index = pending.pop(0)
            prefix = f"{name}-" if index is None else f"{name}-{index}-"
            pod = podutil.pod_from_template(job, template, generate_name=prefix)
            pod["metadata"]["finalizers"].append(ju.TRACKING_FINALIZER)
            if index is not None:
                pod["metadata"]["annotations"][ju.COMPLETION_INDEX] = str(index)
                pod["metadata"]["labels"][ju.COMPLETION_INDEX] = str(index)
                pod["spec"] = ju.indexed_pod_spec(pod["spec"], name, index)
            try:
                created = await self.client.create(PODS, pod, job["metadata"]["namespace"])
            except BaseException:
                self.expectations.lower_creations(key, 1)
                raise
            await self.recorder.record(job, "Normal", "SuccessfulCreate",
                                       f"Created pod: {created['metadata']['name']}")

        done, error = await slow_start_batch(len(indexes), 1, create)
        self.expectations.lower_creations(key, len(indexes) - done - (1 if error else 0))
        if error is not None and not isinstance(error, AlreadyExists):
            await self.recorder.record(job, "Warning", "FailedCreate", f"Error creating: {error}")
            raise error

    async def _delete(self, key: str, job: Obj, pods: list[Obj]) -> None:
        if not pods:
            return
        self.expectations.expect_deletions(key, [object_key(p) for p in pods])

        async def delete(pod: Obj) -> None:
            meta = pod["metadata"]
            try:
                await self.client.delete(PODS, meta["name"], meta["namespace"],
                                         preconditions={"uid": meta["uid"]})
            except (NotFound, Conflict):
                self.expectations.deletion_observed(key, object_key(pod))
                return
            await self.recorder.record(job, "Normal", "SuccessfulDelete",
                                       f"Deleted pod: {meta['name']}")

        await asyncio.gather(*(delete(p) for p in pods))

    async def _write_status(self, job: Obj, status: Obj) -> Obj | None:
        if status == job.get("status"):
            return job
        try:
            return await self.client.update_status(JOBS, {**job, "status": status})
        except (NotFound, Conflict):
            # A newer Job is on its way through the informer and brings another sync.
            return None

    async def _expire(self, key: str, job: Obj) -> None:
        """ttlSecondsAfterFinished: delete the finished Job (and, in the background,
        its pods) once the time is up."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or job["metadata"].get("deletionTimestamp"):
            return
        ends = [podutil.parse_time(c.get("lastTransitionTime"))
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"]
        finished = max((e for e in ends if e is not None), default=None)
        if finished is None:
            return
        left = float(ttl) - (podutil.now_utc() - finished).total_seconds()
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        meta = job["metadata"]
        try:
            await self.client.delete(JOBS, meta["name"], meta["namespace"],
                                     propagation_policy="Background",
                                     preconditions={"uid": meta["uid"]})
        except (NotFound, Conflict):
            return
        log.info("job %s: deleted %s s after it finished", key, ttl)


def _finished(pod: Obj) -> bool:
    return ju.phase(pod) in ("Succeeded", "Failed") or bool(
        pod["metadata"].get("deletionTimestamp"))
