"""Update rules: what may not change between the stored object and the new one.

Comparisons follow apimachinery's semantic equality: an absent field, null, an
empty list and an empty map are the same value, so a status write that
round-trips the spec through a client never trips these rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelite.api.errors import Cause
from kubelite.api.validation_values import (
    GoRepr,
    forbidden,
    go_label_selector,
    immutable,
    invalid,
    parse_quantity,
)

POD_UPDATE_MSG = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
    "`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)
STS_UPDATE_MSG = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)
PVC_UPDATE_MSG = (
    "spec is immutable after creation except resources.requests and volumeAttributesClassName "
    "for bound claims"
)
IMMUTABLE_SET_MSG = "field is immutable when `immutable` is set"

UpdateRule = Callable[[dict[str, Any], dict[str, Any], list[Cause]], None]


def prune(value: Any) -> Any:
    """Drop null, empty-list and empty-map members recursively (semantic equality)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = prune(v)
            if v is not None and v != [] and v != {}:
                out[k] = v
        return out
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    return a == b or prune(a) == prune(b)


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def validate_meta_update(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    # Kinds without a schema (metrics) reach here with whatever the body held.
    meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
    old_meta = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
    for key in ("name", "namespace"):
        if (meta.get(key) or "") != (old_meta.get(key) or ""):
            out.append(immutable(f"metadata.{key}", meta.get(key) or ""))
    # An update without uid or creationTimestamp keeps the stored ones (rest.BeforeUpdate).
    for key in ("uid", "creationTimestamp"):
        if meta.get(key) and old_meta.get(key) and meta[key] != old_meta[key]:
            out.append(immutable(f"metadata.{key}", meta[key]))


def _selector_immutable(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    selector = _spec(new).get("selector")
    if not same(selector, _spec(old).get("selector")):
        out.append(immutable("spec.selector", GoRepr(go_label_selector(selector))))


def _pod(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    spec, old_spec = _spec(new), _spec(old)
    munged = dict(spec)
    for group in ("containers", "initContainers"):
        news, olds = spec.get(group) or [], old_spec.get(group) or []
        if len(news) == len(olds):
            munged[group] = [
                {**c, "image": o.get("image")} if isinstance(c, dict) and isinstance(o, dict) else c
                for c, o in zip(news, olds, strict=True)
            ]
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline != old_deadline:
        if deadline is None:
            out.append(invalid("spec.activeDeadlineSeconds", 0, "must not update from a positive integer to nil value"))
        elif old_deadline is not None and deadline > old_deadline:
            out.append(invalid("spec.activeDeadlineSeconds", deadline, "must be less than or equal to previous value"))
        munged["activeDeadlineSeconds"] = old_deadline
    grace, old_grace = spec.get("terminationGracePeriodSeconds"), old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and grace == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    tolerations, old_tolerations = spec.get("tolerations") or [], old_spec.get("tolerations") or []
    if tolerations != old_tolerations:
        if all(not isinstance(t, dict) or _has_toleration(tolerations, t) for t in old_tolerations):
            munged["tolerations"] = old_tolerations
        else:
            out.append(forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"))
            munged["tolerations"] = old_tolerations
    gates, old_gates = spec.get("schedulingGates") or [], old_spec.get("schedulingGates") or []
    if all(g in old_gates for g in gates):
        munged["schedulingGates"] = old_gates  # gates may only be removed
    if not same(munged, old_spec):
        out.append(forbidden("spec", POD_UPDATE_MSG))


def _has_toleration(tolerations: list[Any], old: dict[str, Any]) -> bool:
    def key(t: dict[str, Any]) -> tuple[Any, ...]:
        return (t.get("key") or "", t.get("operator") or "Equal", t.get("value") or "", t.get("effect") or "")

    for t in tolerations:
        if isinstance(t, dict) and key(t) == key(old):
            seconds, old_seconds = t.get("tolerationSeconds"), old.get("tolerationSeconds")
            if seconds == old_seconds or (old_seconds is not None and seconds is not None and seconds <= old_seconds):
                return True
    return False


def _statefulset(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    mutable = ("replicas", "ordinals", "template", "updateStrategy",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
    a = {k: v for k, v in _spec(new).items() if k not in mutable}
    b = {k: v for k, v in _spec(old).items() if k not in mutable}
    if not same(a, b):
        out.append(forbidden("spec", STS_UPDATE_MSG))


def _job(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    _selector_immutable(new, old, out)
    spec, old_spec = _spec(new), _spec(old)
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "manualSelector"):
        if not same(spec.get(key), old_spec.get(key)):
            out.append(immutable(f"spec.{key}", spec.get(key)))
    if old_spec.get("completionMode") != "Indexed" and not same(spec.get("completions"), old_spec.get("completions")):
        out.append(immutable("spec.completions", spec.get("completions")))
    template, old_template = spec.get("template") or {}, old_spec.get("template") or {}
    never_started = old_spec.get("suspend") is True and not (old.get("status") or {}).get("startTime")
    if never_started:
        # Suspended Jobs that never ran may retarget their pods (JobMutableNodeSchedulingDirectives).
        template, old_template = _scheduling_free(template), _scheduling_free(old_template)
    if not same(template, old_template):
        out.append(immutable("spec.template", GoRepr("core.PodTemplateSpec{...}")))


def _scheduling_free(template: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in (template.get("spec") or {}).items()
            if k not in ("nodeSelector", "affinity", "tolerations", "schedulingGates")}
    meta = {k: v for k, v in (template.get("metadata") or {}).items() if k not in ("labels", "annotations")}
    return {**template, "metadata": meta, "spec": spec}


def _service(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    spec, old_spec = _spec(new), _spec(old)
    ip, old_ip = spec.get("clusterIP"), old_spec.get("clusterIP")
    if old_ip and ip and ip != old_ip and spec.get("type") != "ExternalName":
        out.append(invalid("spec.clusterIPs[0]", spec.get("clusterIPs") or [ip], "may not change once set"))


def _pvc(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    spec, old_spec = dict(_spec(new)), dict(_spec(old))
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = spec.get("volumeName")  # binding sets it once
    if old_spec.get("storageClassName") is None:
        # Retroactive default StorageClass assignment sets a class once on unbound claims.
        old_spec["storageClassName"] = spec.get("storageClassName")
    size = _storage(spec)
    old_size = _storage(old_spec)
    bound = (new.get("status") or {}).get("phase") == "Bound"
    if bound and size is not None:
        spec = _with_storage(spec, (old_spec.get("resources") or {}).get("requests", {}).get("storage"))
    spec.pop("volumeAttributesClassName", None)
    old_spec.pop("volumeAttributesClassName", None)
    if not same(spec, old_spec):
        out.append(forbidden("spec", PVC_UPDATE_MSG))
    elif size is not None and old_size is not None and size < old_size:
        out.append(forbidden("spec.resources.requests.storage", "field can not be less than previous value"))


def _storage(spec: dict[str, Any]) -> Any:
    raw = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    return parse_quantity(raw) if raw is not None else None


def _with_storage(spec: dict[str, Any], storage: Any) -> dict[str, Any]:
    resources = dict(spec.get("resources") or {})
    requests = dict(resources.get("requests") or {})
    requests["storage"] = storage
    resources["requests"] = requests
    return {**spec, "resources": resources}


def _immutable_data(keys: tuple[str, ...], *, typed: bool) -> UpdateRule:
    def check(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
        if typed and (new.get("type") or "Opaque") != (old.get("type") or "Opaque"):
            out.append(immutable("type", new.get("type") or ""))
        if old.get("immutable") is not True:
            return
        if new.get("immutable") is not True:
            out.append(forbidden("immutable", IMMUTABLE_SET_MSG))
        for key in keys:
            if not same(new.get(key), old.get(key)):
                out.append(forbidden(key, IMMUTABLE_SET_MSG))

    return check


def _fields(*rules: tuple[str, str]) -> UpdateRule:
    """Top-level fields that may not change; each rule is (field, Forbidden detail or '')."""

    def check(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
        for key, detail in rules:
            value = new.get(key)
            if not same(value, old.get(key)):
                out.append(forbidden(key, detail) if detail else immutable(key, value))

    return check


def _node(new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    cidr, old_cidr = _spec(new).get("podCIDR"), _spec(old).get("podCIDR")
    if old_cidr and cidr != old_cidr:
        out.append(forbidden("spec.podCIDRs", 'node updates may not change podCIDR except from "" to valid'))


UPDATE_RULES: dict[str, UpdateRule] = {
    "Pod": _pod,
    "Deployment": _selector_immutable,
    "ReplicaSet": _selector_immutable,
    "DaemonSet": _selector_immutable,
    "StatefulSet": _statefulset,
    "Job": _job,
    "Service": _service,
    "PersistentVolumeClaim": _pvc,
    "ConfigMap": _immutable_data(("data", "binaryData"), typed=False),
    "Secret": _immutable_data(("data",), typed=True),
    "Node": _node,
    "PriorityClass": _fields(("value", "may not be changed in an update."), ("preemptionPolicy", "")),
    "StorageClass": _fields(
        ("parameters", "updates to parameters are forbidden."),
        ("provisioner", "updates to provisioner are forbidden."),
        ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
        ("volumeBindingMode", ""),
    ),
    "EndpointSlice": _fields(("addressType", "")),
    "ControllerRevision": _fields(("data", "")),
}


def validate_update(kind: str, new: dict[str, Any], old: dict[str, Any], out: list[Cause]) -> None:
    validate_meta_update(new, old, out)
    rule = UPDATE_RULES.get(kind)
    if rule is not None:
        rule(new, old, out)
