"""Workload rules: Deployment, ReplicaSet, StatefulSet, DaemonSet (apps) and Job, CronJob (batch)."""

from __future__ import annotations

import re
from typing import Any

from kubelite.api.errors import Cause
from kubelite.api.validation_kinds import pvc_spec
from kubelite.api.validation_meta import (
    CRONJOB_NAME_MAX,
    selector_is_empty,
    selector_matches,
    validate_label_selector,
    validate_template_meta,
)
from kubelite.api.validation_pod import validate_pod_spec
from kubelite.api.validation_values import (
    GoRepr,
    check_enum,
    check_nonnegative,
    each,
    forbidden,
    go_label_selector,
    int_or_percent,
    invalid,
    max_len_msg,
    not_supported,
    required,
)

MISMATCH = "`selector` does not match template `labels`"
JOB_RESTART_POLICIES = ("OnFailure", "Never")


def _template(spec: dict[str, Any], path: str, out: list[Cause], *, restart: tuple[str, ...]) -> dict[str, Any]:
    """Validate spec.template and return it ({} when absent)."""
    template = spec.get("template")
    if not isinstance(template, dict):
        return {}
    tpath = f"{path}.template"
    validate_template_meta(template.get("metadata"), f"{tpath}.metadata", out)
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, dict):
        out.append(required(f"{tpath}.spec.containers"))
        return template
    validate_pod_spec(pod_spec, f"{tpath}.spec", out)
    policy = pod_spec.get("restartPolicy")
    if policy in ("Always", "OnFailure", "Never") and policy not in restart:
        out.append(not_supported(f"{tpath}.spec.restartPolicy", policy, restart))
    return template


def _selector(spec: dict[str, Any], template: dict[str, Any], path: str, kind: str, out: list[Cause]) -> None:
    selector = spec.get("selector")
    if selector is None:
        return  # required: reported by the schema walk
    if not validate_label_selector(selector, f"{path}.selector", out):
        return
    if selector_is_empty(selector):
        out.append(invalid(f"{path}.selector", GoRepr(go_label_selector(selector)), f"empty selector is invalid for {kind}"))
        return
    if template:
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector_matches(selector, labels):
            out.append(invalid(f"{path}.template.metadata.labels", labels, MISMATCH))


def validate_deployment(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    check_nonnegative(spec.get("replicas"), "spec.replicas", out)
    check_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out)
    check_nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit", out)
    template = _template(spec, "spec", out, restart=("Always",))
    _selector(spec, template, "spec", "deployment", out)
    deadline = spec.get("progressDeadlineSeconds")
    if isinstance(deadline, int):
        check_nonnegative(deadline, "spec.progressDeadlineSeconds", out)
        if deadline <= (spec.get("minReadySeconds") or 0):
            out.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    strategy = spec.get("strategy") or {}
    stype = strategy.get("type")
    check_enum(stype, "spec.strategy.type", ("Recreate", "RollingUpdate"), out)
    rolling = strategy.get("rollingUpdate")
    if stype == "Recreate" and rolling is not None:
        out.append(forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"))
    elif isinstance(rolling, dict):
        _rolling("spec.strategy.rollingUpdate", rolling, out)


def _rolling(path: str, rolling: dict[str, Any], out: list[Cause]) -> None:
    unavailable = rolling.get("maxUnavailable")
    surge = rolling.get("maxSurge")
    u = int_or_percent(unavailable, f"{path}.maxUnavailable", out) if unavailable is not None else None
    s = int_or_percent(surge, f"{path}.maxSurge", out) if surge is not None else None
    if isinstance(unavailable, str) and u is not None and u > 100:
        out.append(invalid(f"{path}.maxUnavailable", unavailable, "must not be greater than 100%"))
    if u == 0 and s == 0:
        out.append(invalid(f"{path}.maxUnavailable", unavailable, "may not be 0 when `maxSurge` is 0"))


def validate_replicaset(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    check_nonnegative(spec.get("replicas"), "spec.replicas", out)
    check_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out)
    if spec.get("template") is None:
        out.append(required("spec.template"))
    template = _template(spec, "spec", out, restart=("Always",))
    _selector(spec, template, "spec", "deployment", out)


def validate_statefulset(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    check_nonnegative(spec.get("replicas"), "spec.replicas", out)
    check_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out)
    policy = spec.get("podManagementPolicy")
    if policy is not None and policy not in ("OrderedReady", "Parallel"):
        out.append(invalid("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    strategy = spec.get("updateStrategy") or {}
    stype = strategy.get("type")
    if stype is not None and stype not in ("RollingUpdate", "OnDelete"):
        out.append(invalid("spec.updateStrategy", GoRepr(f'apps.StatefulSetUpdateStrategy{{Type:"{stype}"}}'), "must be 'RollingUpdate' or 'OnDelete'"))
    rolling = strategy.get("rollingUpdate")
    if stype == "OnDelete" and rolling is not None:
        out.append(invalid("spec.updateStrategy.rollingUpdate", GoRepr("apps.RollingUpdateStatefulSetStrategy{...}"), "only allowed for updateStrategy 'RollingUpdate'"))
    elif isinstance(rolling, dict):
        check_nonnegative(rolling.get("partition"), "spec.updateStrategy.rollingUpdate.partition", out)
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for key in ("whenDeleted", "whenScaled"):
        check_enum(retention.get(key), f"spec.persistentVolumeClaimRetentionPolicy.{key}", ("Retain", "Delete"), out)
    template = _template(_with_claim_volumes(spec), "spec", out, restart=("Always",))
    if (template.get("spec") or {}).get("activeDeadlineSeconds") is not None:
        out.append(invalid("spec.template.spec.activeDeadlineSeconds", template["spec"]["activeDeadlineSeconds"], "must not be specified"))
    _selector(spec, template, "spec", "statefulset", out)
    # Checked here so that a bad claim fails the StatefulSet, not each PVC the controller creates.
    for i, claim in each(spec.get("volumeClaimTemplates")):
        validate_template_meta(claim.get("metadata"), f"spec.volumeClaimTemplates[{i}].metadata", out)
        pvc_spec(claim.get("spec") or {}, f"spec.volumeClaimTemplates[{i}].spec", out)


def _with_claim_volumes(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as its pods will be: each claim template is a volume the containers may
    mount, as the StatefulSet controller adds it."""
    template, claims = spec.get("template"), spec.get("volumeClaimTemplates")
    pod_spec = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(pod_spec, dict) or not isinstance(claims, list):
        return spec
    names = [c["metadata"]["name"] for c in claims
             if isinstance(c, dict) and isinstance(c.get("metadata"), dict)
             and isinstance(c["metadata"].get("name"), str)]
    declared = {v.get("name") for v in pod_spec.get("volumes") or [] if isinstance(v, dict)}
    extra = [{"name": n, "persistentVolumeClaim": {"claimName": n}}
             for n in names if n not in declared]
    if not extra or not isinstance(pod_spec.get("volumes", []), list):
        return spec
    pod_spec = {**pod_spec, "volumes": [*(pod_spec.get("volumes") or []), *extra]}
    return {**spec, "template": {**template, "spec": pod_spec}}


def validate_daemonset(obj: dict[str, Any], out: list[Cause]) -> None:
    spec = obj.get("spec") or {}
    check_nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out)
    template = _template(spec, "spec", out, restart=("Always",))
    _selector(spec, template, "spec", "daemonset", out)
    strategy = spec.get("updateStrategy") or {}
    check_enum(strategy.get("type"), "spec.updateStrategy.type", ("OnDelete", "RollingUpdate"), out)
    rolling = strategy.get("rollingUpdate")
    if strategy.get("type") == "RollingUpdate" and isinstance(rolling, dict):
        _rolling("spec.updateStrategy.rollingUpdate", rolling, out)


def validate_job(obj: dict[str, Any], out: list[Cause]) -> None:
    _job_spec(obj.get("spec") or {}, "spec", out, generated=True)


def _job_spec(spec: dict[str, Any], path: str, out: list[Cause], *, generated: bool) -> None:
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        check_nonnegative(spec.get(key), f"{path}.{key}", out)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and deadline <= 0:
        out.append(invalid(f"{path}.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode")
    check_enum(mode, f"{path}.completionMode", ("NonIndexed", "Indexed"), out)
    if mode == "Indexed" and spec.get("completions") is None:
        out.append(required(f"{path}.completions", "when completion mode is Indexed"))
    check_enum(spec.get("podReplacementPolicy"), f"{path}.podReplacementPolicy", ("TerminatingOrFailed", "Failed"), out)
    template = _template(spec, path, out, restart=JOB_RESTART_POLICIES)
    if not generated:
        return  # a CronJob's jobTemplate gets its selector when the Job is created
    if spec.get("manualSelector") is True and spec.get("selector") is None:
        out.append(required(f"{path}.selector"))
    _selector(spec, template, path, "job", out)


def validate_cronjob(obj: dict[str, Any], out: list[Cause]) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and len(name) > CRONJOB_NAME_MAX:
        out.append(invalid("metadata.name", name, max_len_msg(CRONJOB_NAME_MAX)))
    spec = obj.get("spec") or {}
    schedule = spec.get("schedule")
    if isinstance(schedule, str):
        msg = cron_error(schedule)
        if msg:
            out.append(invalid("spec.schedule", schedule, msg))
        elif "TZ=" in schedule:
            out.append(invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
    check_enum(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy", ("Allow", "Forbid", "Replace"), out)
    for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        check_nonnegative(spec.get(key), f"spec.{key}", out)
    job_template = spec.get("jobTemplate") or {}
    validate_template_meta(job_template.get("metadata"), "spec.jobTemplate.metadata", out)
    _job_spec(job_template.get("spec") or {}, "spec.jobTemplate.spec", out, generated=False)


_CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_CRON_FIELD = re.compile(r"(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = {
    3: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}


def cron_error(schedule: str) -> str | None:
    """robfig/cron's standard parser, reduced to its error messages that users meet."""
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        text = text.split(None, 1)[1] if " " in text else ""
    if text.startswith("@"):
        return None if text in _CRON_MACROS else f"unrecognized descriptor: {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
    for i, fld in enumerate(fields):
        for part in fld.split(","):
            m = _CRON_FIELD.fullmatch(part)
            if not m:
                return f"failed to parse int from {part}: strconv.Atoi: parsing {part!r}: invalid syntax".replace("'", '"')
            if m.group(1) in ("*", "?"):
                continue
            lo, hi = _CRON_RANGES[i]
            for bound in m.group(1).split("-"):
                value = _NAMES.get(i, {}).get(bound.lower())
                if value is None:
                    if not bound.isdigit():
                        return f'failed to parse int from {bound}: strconv.Atoi: parsing "{bound}": invalid syntax'
                    value = int(bound)
                if not lo <= value <= hi:
                    return f"end of range ({value}) above maximum ({hi}): {part}" if value > hi else f"beginning of range ({value}) below minimum ({lo}): {part}"
    return None


def validate_workload_status(kind: str, status: Any, out: list[Cause]) -> None:
    """Counters in controller status must not go negative (apps/batch ValidateXStatus)."""
    if not isinstance(status, dict):
        return
    for key, value in status.items():
        if isinstance(value, int) and not isinstance(value, bool):
            check_nonnegative(value, f"status.{key}", out)
    replicas = status.get("replicas")
    if kind in ("Deployment", "ReplicaSet", "StatefulSet") and isinstance(replicas, int):
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "currentReplicas"):
            value = status.get(key)
            if isinstance(value, int) and value > replicas and not (kind == "Deployment" and key == "updatedReplicas"):
                out.append(invalid(f"status.{key}", value, "cannot be greater than status.replicas"))
