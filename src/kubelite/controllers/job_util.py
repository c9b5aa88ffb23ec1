"""Job facts without I/O, as Kubernetes' job controller computes them: completed
index sets in their wire form ("1,3-5"), which rule of a podFailurePolicy a
failed pod matches, and the pods of an Indexed Job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from kubelite.controllers import podutil

Obj = dict[str, Any]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
# The env var and the hostname every pod of an Indexed Job gets.
INDEX_ENV = "JOB_COMPLETION_INDEX"


def parse_indexes(text: str | None) -> set[int]:
    """ "1,3-5" -> {1, 3, 4, 5}; malformed parts are skipped."""
    out: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if last else lo
        except ValueError:
            continue
        out.update(range(lo, hi + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """{1, 3, 4, 5} -> "1,3-5" (intervals of sorted indexes, as Kubernetes writes them)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(_interval(run))
        run = [i]
    if run:
        parts.append(_interval(run))
    return ",".join(parts)


def _interval(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def pod_index(pod: Obj) -> int | None:
    meta = pod.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or \
        (meta.get("labels") or {}).get(COMPLETION_INDEX)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_failed(pod: Obj, *, only_failed: bool, now: dt.datetime | None = None) -> bool:
    """Counted as a failure (isPodFailed): Failed, or being deleted before it
    succeeded, unless podReplacementPolicy Failed waits for the Failed phase.
    kubelite's agent deletes a pod it stopped without writing Failed first, so a
    pod still terminating a second after its grace period ended counts as Failed."""
    if phase(pod) == "Failed":
        return True
    deleted = podutil.parse_time(pod["metadata"].get("deletionTimestamp"))
    if deleted is None or phase(pod) == "Succeeded":
        return False
    if not only_failed:
        return True
    return ((now or podutil.now_utc()) - deleted).total_seconds() > 1.0


def is_active(pod: Obj) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and \
        not pod["metadata"].get("deletionTimestamp")


def is_terminating(pod: Obj) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and \
        bool(pod["metadata"].get("deletionTimestamp"))


def _exit_codes(pod: Obj, container: str | None) -> list[tuple[str, int]]:
    status = pod.get("status") or {}
    out: list[tuple[str, int]] = []
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        term = (cs.get("state") or {}).get("terminated")
        if term is None or (container and cs.get("name") != container):
            continue
        out.append((cs.get("name", ""), int(term.get("exitCode", 0))))
    return out


def match_failure_rule(job: Obj, pod: Obj) -> tuple[str, int, str] | None:
    """(action, rule index, message) of the first podFailurePolicy rule the failed
    pod matches, or None (the failure then counts, as Count)."""
    policy = (job.get("spec") or {}).get("podFailurePolicy") or {}
    name = f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action", "")
        codes = rule.get("onExitCodes")
        if codes:
            values = set(codes.get("values") or [])
            wanted_in = codes.get("operator", "In") == "In"
            for cname, code in _exit_codes(pod, codes.get("containerName")):
                if code == 0:
                    continue  # exit code 0 never matches, as in Kubernetes
                if (code in values) == wanted_in:
                    return action, i, (f"Container {cname} for pod {name} failed with exit "
                                       f"code {code} matching {action} rule at index {i}")
            continue
        for pattern in rule.get("onPodConditions") or []:
            cond = podutil.condition(pod, pattern.get("type", ""))
            if cond and cond.get("status") == pattern.get("status", "True"):
                return action, i, (f"Pod {name} has condition {pattern.get('type')} "
                                   f"matching {action} rule at index {i}")
    return None


def indexed_pod_spec(template_spec: Obj, job_name: str, index: int) -> Obj:
    """The pod spec of index `index`: JOB_COMPLETION_INDEX in every container's
    env (from the annotation, as Kubernetes) and the hostname JOB-INDEX."""
    env = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
    spec = dict(template_spec)
    for group in ("initContainers", "containers"):
        if spec.get(group):
            spec[group] = [{**c, "env": [*[e for e in c.get("env") or []
                                           if e.get("name") != INDEX_ENV], env]}
                           for c in spec[group]]
    spec.setdefault("hostname", f"{job_name}-{index}")
    return spec
