"""Field selectors (apimachinery `fields`); re-exported by `kubelite.api.selectors`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import bad_request

FieldGetter = Callable[[Mapping[str, Any]], str]

_META_FIELDS = ("metadata.name", "metadata.namespace")
# The apiserver's field label conversions (pkg/apis/*/v1/conversion.go). Resources
# missing here accept only the two metadata fields, with a different message.
SUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (*_META_FIELDS, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
             "status.nominatedNodeName"),
    "events": (*_META_FIELDS, "involvedObject.kind", "involvedObject.namespace",
               "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
               "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
               "reportingComponent", "source", "type"),
    "secrets": (*_META_FIELDS, "type"),
    "nodes": ("metadata.name", "spec.unschedulable"),
    "namespaces": ("metadata.name", "status.phase"),
    "replicasets": (*_META_FIELDS, "status.replicas"),
    "jobs": (*_META_FIELDS, "status.successful"),
}
# Old clients still send spec.host for pods; the apiserver rewrites it.
_FIELD_ALIASES = {("pods", "spec.host"): "spec.nodeName"}


def _go_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return ""


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path as selectable fields spell it: "" when missing,
    booleans as true/false, numbers in decimal."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
        if current is None:
            return ""
    return _go_string(current)


def _path_getter(path: str, default: str = "") -> FieldGetter:
    parts = tuple(path.split("."))
    if len(parts) == 2:
        # Most selectable fields sit two levels deep; skip the generic walk.
        first, second = parts

        def two(obj: Mapping[str, Any]) -> str:
            parent = obj.get(first)
            value = parent.get(second) if isinstance(parent, Mapping) else None
            return default if value is None else _go_string(value)

        return two
    return lambda obj: field_value(obj, path) or default


def _pod_ip(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    ips = status.get("podIPs")
    if ips:
        return ips[0].get("ip") or ""
    return status.get("podIP") or ""


# Fields whose value is not the plain value at their path (the Go structs'
# zero values, or a differently named field).
_SPECIAL_GETTERS: dict[tuple[str, str], FieldGetter] = {
    ("pods", "status.podIP"): _pod_ip,
    ("pods", "spec.hostNetwork"): _path_getter("spec.hostNetwork", "false"),
    ("nodes", "spec.unschedulable"): _path_getter("spec.unschedulable", "false"),
    ("events", "source"): _path_getter("source.component"),
    ("replicasets", "status.replicas"): _path_getter("status.replicas", "0"),
    ("jobs", "status.successful"): _path_getter("status.succeeded", "0"),
}


def supported_fields(resource_plural: str) -> tuple[str, ...]:
    return SUPPORTED_FIELDS.get(resource_plural, _META_FIELDS)


def _resolve_field(plural: str | None, name: str) -> tuple[str, FieldGetter]:
    if plural is None:
        return name, _path_getter(name)
    name = _FIELD_ALIASES.get((plural, name), name)
    if plural in SUPPORTED_FIELDS:
        if name not in SUPPORTED_FIELDS[plural]:
            raise bad_request(f"field label not supported: {name}")
    elif name not in _META_FIELDS:
        raise bad_request(f'"{name}" is not a known field selector: only '
                          f'"metadata.name", "metadata.namespace"')
    return name, _SPECIAL_GETTERS.get((plural, name)) or _path_getter(name)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape(value: str) -> str:
    if "\\" not in value and "," not in value and "=" not in value:
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            # Go prints the rune with %v: its code point.
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start, escaped = 0, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


@dataclass(frozen=True, slots=True)
class FieldTerm:
    field: str
    value: str
    negate: bool = False

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negate else '='}{_escape(self.value)}"


class FieldSelector:
    """An AND of `field=value` / `field!=value` terms with their getters prebuilt."""

    __slots__ = ("terms", "_checks")

    def __init__(self, terms: Iterable[FieldTerm] = (), *,
                 resource_plural: str | None = None) -> None:
        resolved: list[FieldTerm] = []
        checks: list[tuple[FieldGetter, str, bool]] = []
        for term in terms:
            name, getter = _resolve_field(resource_plural, term.field)
            resolved.append(FieldTerm(name, term.value, term.negate))
            checks.append((getter, term.value, term.negate))
        self.terms: tuple[FieldTerm, ...] = tuple(resolved)
        self._checks = tuple(checks)

    @classmethod
    def parse(cls, text: str, *, resource_plural: str | None = None) -> FieldSelector:
        """The `fieldSelector` query parameter. With `resource_plural` (what the
        apiserver does) unsupported fields are a 400; without, any path is read."""
        terms: list[FieldTerm] = []
        for part in sorted(_split_terms(text)) if text else ():
            if not part:
                continue
            split = _split_term(part)
            if split is None:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            lhs, op, rhs = split
            terms.append(FieldTerm(lhs, _unescape(rhs), op == "!="))
        return cls(terms, resource_plural=resource_plural)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for getter, value, negate in self._checks:
            if (getter(obj) == value) == negate:
                return False
        return True

    def requires_exact_match(self, field: str) -> str | None:
        """The value an `=` term demands for `field` (as fields.RequiresExactMatch), else None."""
        for term in self.terms:
            if term.field == field and not term.negate:
                return term.value
        return None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"
