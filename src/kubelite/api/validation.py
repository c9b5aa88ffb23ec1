"""Validation of API objects on create and update, as kube-apiserver 1.32 does it.

    validate(resource, obj, old=..., field_validation=...) -> (errors, warnings)

runs, in Kubernetes' order:
1. the schema walk (`validation_schema`): JSON types and formats, enums,
   `required` lists, unknown fields. Wrong types and unparsable Quantity,
   date-time or base64 values are *decode* errors (reason FieldValueTypeInvalid),
   unknown fields under fieldValidation=Strict are *strict decoding* errors
   (reason FieldValueUnknown). Kubernetes fails the request at decoding for
   either, so validation stops there and only those are returned.
2. metadata rules and the per-kind rules (`validation_meta`, `validation_pod`,
   `validation_workloads`, `validation_kinds`);
3. with `old`, the update rules (`validation_update`).

The server turns the errors into a response with `to_api_error`:
- any FieldValueTypeInvalid -> 400 BadRequest
  `<Kind> in version "<v>" cannot be handled as a <Kind>: <first decode message>`;
- else any FieldValueUnknown -> 400 BadRequest
  `strict decoding error: unknown field "spec.foo", unknown field "spec.bar"`;
- else 422 Invalid with every cause.
Warnings (fieldValidation=Warn) go into `Warning: 299 - "<text>"` headers.

Status subresource writes are validated the same way with `old`: the spec is
then unchanged, so the update rules pass, and the workload status rules check
the new counters. The server must, before calling validate on an update, fill
`metadata.namespace` from the URL and keep the stored uid / creationTimestamp
when the body has none (rest.BeforeUpdate); the scheduler's binding sets
`spec.nodeName` without going through the pod update rules.

kubelite differs from Kubernetes on purpose in one place: a StatefulSet needs
`spec.serviceName` (the 1.32 schema marks it required; kube-apiserver accepts
an empty one), because kubelite's cluster DNS gives StatefulSet pods their
stable names only through that governing Service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from kubelite.api.errors import APIError, Cause, bad_request, invalid
from kubelite.api.registry import Resource
from kubelite.api.validation_kinds import (
    validate_configmap,
    validate_endpoints,
    validate_endpointslice,
    validate_event,
    validate_lease,
    validate_namespace,
    validate_node,
    validate_pdb,
    validate_priorityclass,
    validate_pv,
    validate_pvc,
    validate_secret,
    validate_service,
    validate_storageclass,
)
from kubelite.api.validation_meta import validate_object_meta
from kubelite.api.validation_networking import validate_ingress, validate_ingressclass
from kubelite.api.validation_pod import validate_pod_spec
from kubelite.api.validation_schema import kind_node, walk
from kubelite.api.validation_update import validate_update
from kubelite.api.validation_values import FIELD_TYPE_INVALID, FIELD_VALUE_UNKNOWN
from kubelite.api.validation_workloads import (
    validate_cronjob,
    validate_daemonset,
    validate_deployment,
    validate_job,
    validate_replicaset,
    validate_statefulset,
    validate_workload_status,
)

__all__ = ["FIELD_TYPE_INVALID", "FIELD_VALUE_UNKNOWN", "FieldValidation", "to_api_error", "validate"]

FieldValidation = Literal["Strict", "Warn", "Ignore"]
_FIELD_VALIDATIONS = ("Ignore", "Warn", "Strict")


def _validate_pod(obj: dict[str, Any], out: list[Cause]) -> None:
    validate_pod_spec(obj.get("spec"), "spec", out)


_KIND_RULES: dict[str, Callable[[dict[str, Any], list[Cause]], None]] = {
    "Pod": _validate_pod,
    "Deployment": validate_deployment,
    "ReplicaSet": validate_replicaset,
    "StatefulSet": validate_statefulset,
    "DaemonSet": validate_daemonset,
    "Job": validate_job,
    "CronJob": validate_cronjob,
    "Service": validate_service,
    "Ingress": validate_ingress,
    "IngressClass": validate_ingressclass,
    "ConfigMap": validate_configmap,
    "Secret": validate_secret,
    "Event": validate_event,
    "Lease": validate_lease,
    "Node": validate_node,
    "PersistentVolume": validate_pv,
    "PersistentVolumeClaim": validate_pvc,
    "PriorityClass": validate_priorityclass,
    "StorageClass": validate_storageclass,
    "EndpointSlice": validate_endpointslice,
    "Endpoints": validate_endpoints,
    "PodDisruptionBudget": validate_pdb,
    "Namespace": validate_namespace,
}
_COUNTED_STATUS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"})


def validate(
    resource: Resource,
    obj: dict[str, Any],
    *,
    old: dict[str, Any] | None = None,
    field_validation: str = "Strict",
) -> tuple[list[Cause], list[str]]:
    """Return (errors, warnings) for `obj`; never modifies `obj` or `old`."""
    if field_validation not in _FIELD_VALIDATIONS:
        raise ValueError('fieldValidation must be one of "Ignore", "Warn", "Strict"')
    errors: list[Cause] = []
    warnings: list[str] = []
    node = kind_node(resource.group, resource.version, resource.kind)
    if node is not None:
        found = walk(node, obj)
        if found.unknown and field_validation == "Strict":
            errors = [Cause(FIELD_VALUE_UNKNOWN, f'unknown field "{p}"', p) for p in found.unknown]
        elif found.unknown and field_validation == "Warn":
            warnings = [f'unknown field "{p}"' for p in found.unknown]
        if found.decode or errors:
            return found.decode + errors, warnings
        errors.extend(found.causes)
    if resource.stored:
        validate_object_meta(
            obj.get("metadata"), kind=resource.kind, namespaced=resource.namespaced, out=errors
        )
    rule = _KIND_RULES.get(resource.kind)
    if rule is not None:
        rule(obj, errors)
    if resource.kind in _COUNTED_STATUS:
        validate_workload_status(resource.kind, obj.get("status"), errors)
    if old is not None:
        validate_update(resource.kind, obj, old, errors)
    return list(dict.fromkeys(errors)), warnings


def to_api_error(resource: Resource, name: str, errors: list[Cause]) -> APIError | None:
    """The error response for validate()'s errors, None when there are none."""
    if not errors:
        return None
    decode = [c for c in errors if c.reason == FIELD_TYPE_INVALID]
    if decode:
        kind = resource.kind
        return bad_request(
            f'{kind} in version "{resource.version}" cannot be handled as a {kind}: {decode[0].message}'
        )
    unknown = [c.message for c in errors if c.reason == FIELD_VALUE_UNKNOWN]
    if unknown:
        return bad_request("strict decoding error: " + ", ".join(unknown))
    return invalid(resource.group, resource.kind, name, errors)
