"""ObjectMeta, labels, annotations and label selectors (apimachinery's meta validation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubelite.api.errors import Cause
from kubelite.api.validation_values import (
    check_nonnegative,
    each,
    forbidden,
    invalid,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_label_value,
    is_qualified_name,
    required,
    strs,
    too_long,
)

NameCheck = Callable[[str], list[str]]

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_STANDARD_FINALIZERS = frozenset({"kubernetes", "orphan", "foregroundDeletion"})

# Name rules per kind where they differ from the default DNS-1123 subdomain
# (core/validation ValidateNamespaceName, ValidateServiceName).
NAME_CHECKS: dict[str, NameCheck] = {
    "Namespace": is_dns1123_label,
    "Service": is_dns1035_label,
}
CRONJOB_NAME_MAX = 52  # 63 minus the 11 characters the controller appends to Job names


def _mask_trailing_dash(name: str) -> str:
    # generateName may end in '-': the random suffix follows it.
    return name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name


def validate_labels(labels: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        for msg in is_qualified_name(key):
            out.append(invalid(path, key, msg))
        if isinstance(value, str):
            for msg in is_label_value(value):
                out.append(invalid(path, value, msg))


def validate_annotations(annotations: Any, path: str, out: list[Cause]) -> None:
    if not isinstance(annotations, dict):
        return
    size = 0
    for key, value in annotations.items():
        for msg in is_qualified_name(key.lower()):
            out.append(invalid(path, key, msg))
        size += len(key) + len(value.encode() if isinstance(value, str) else b"")
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        out.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))


def validate_object_meta(
    meta: Any, *, kind: str, namespaced: bool, out: list[Cause], path: str = "metadata"
) -> None:
    if not isinstance(meta, dict):
        out.append(required(path))
        return
    check = NAME_CHECKS.get(kind, is_dns1123_subdomain)
    name = meta.get("name")
    generate = meta.get("generateName")
    if generate:
        for msg in check(_mask_trailing_dash(generate)):
            out.append(invalid(f"{path}.generateName", generate, msg))
    if not name:
        if not generate:
            out.append(required(f"{path}.name", "name or generateName is required"))
    else:
        for msg in check(name):
            out.append(invalid(f"{path}.name", name, msg))
    namespace = meta.get("namespace")
    if namespaced:
        if not namespace:
            out.append(required(f"{path}.namespace"))
        else:
            for msg in is_dns1123_label(namespace):
                out.append(invalid(f"{path}.namespace", namespace, msg))
    elif namespace:
        out.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    check_nonnegative(meta.get("generation"), f"{path}.generation", out)
    validate_labels(meta.get("labels"), f"{path}.labels", out)
    validate_annotations(meta.get("annotations"), f"{path}.annotations", out)
    for i, fin in strs(meta.get("finalizers")):
        _validate_finalizer(fin, f"{path}.finalizers[{i}]", out)


def _validate_finalizer(name: str, path: str, out: list[Cause]) -> None:
    msgs = is_qualified_name(name)
    if msgs:
        out.extend(invalid(path, name, m) for m in msgs)
    elif "/" not in name and name not in _STANDARD_FINALIZERS:
        out.append(invalid(path, name, "name is neither a standard finalizer name nor is it fully qualified"))


def validate_template_meta(meta: Any, path: str, out: list[Cause]) -> None:
    """Labels and annotations of a pod template (its name/namespace are not used)."""
    if isinstance(meta, dict):
        validate_labels(meta.get("labels"), f"{path}.labels", out)
        validate_annotations(meta.get("annotations"), f"{path}.annotations", out)


# ---------------------------------------------------------------- label selectors

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(selector: Any, path: str, out: list[Cause]) -> bool:
    """Check selector syntax; True when it can be used for matching."""
    if not isinstance(selector, dict):
        return False
    start = len(out)
    validate_labels(selector.get("matchLabels"), f"{path}.matchLabels", out)
    for i, expr in each(selector.get("matchExpressions")):
        epath = f"{path}.matchExpressions[{i}]"
        op = expr.get("operator")
        values = expr.get("values") or ()
        if op in ("In", "NotIn"):
            if not values:
                out.append(required(f"{epath}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                out.append(forbidden(f"{epath}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        elif op is not None:
            out.append(invalid(f"{epath}.operator", op, "not a valid selector operator"))
        key = expr.get("key")
        if isinstance(key, str):
            for msg in is_qualified_name(key):
                out.append(invalid(f"{epath}.key", key, msg))
    return len(out) == start


def selector_is_empty(selector: Any) -> bool:
    return not isinstance(selector, dict) or not (
        selector.get("matchLabels") or selector.get("matchExpressions")
    )


def selector_matches(selector: dict[str, Any], labels: dict[str, str] | None) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    labels = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for _, expr in each(selector.get("matchExpressions")):
        key, op = expr.get("key"), expr.get("operator")
        values = expr.get("values") or ()
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True
