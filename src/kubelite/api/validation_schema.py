"""Walk an object along its OpenAPI schema: JSON types, formats, enums, required, unknown fields.

The schemas are compiled once per definition into small `_Node` tables (the
property dict of each definition, its required names, a type code), so one walk
is a few dict lookups per field. `jsonschema` is not used: it is an order of
magnitude slower and its error paths are not Kubernetes' field paths.

Three classes of finding come out, because Kubernetes reports them differently:
- decode errors (wrong JSON type, bad Quantity / date-time / base64): 400, the
  object "cannot be handled"; the message is the Go decoder's.
- unknown field paths: a strict decoding error (400), a warning, or nothing,
  depending on fieldValidation.
- field errors (required, enum): ordinary 422 causes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubelite.api import schemas
from kubelite.api.cleancache import CleanCache
from kubelite.api.errors import Cause
from kubelite.api.validation_values import (
    FIELD_TYPE_INVALID,
    QUANTITY_MSG,
    is_quantity,
    not_supported,
    required,
)

_OBJ, _MAP, _ARR, _STR, _INT, _NUM, _BOOL, _INTSTR, _QTY, _TIME, _BYTES, _ANYOBJ, _ANY = range(13)
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_JSON_TYPE = {dict: "object", list: "array", str: "string", bool: "bool", int: "number", float: "number"}
_INDEX = re.compile(r"\[[^\]]*\]")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


class _Node:
    __slots__ = ("code", "props", "required", "extra", "items", "enum", "bits", "go", "owner")

    def __init__(self, code: int) -> None:
        self.code = code
        self.props: dict[str, _Node] = {}
        self.required: tuple[str, ...] = ()
        self.extra: _Node | None = None
        self.items: _Node | None = None
        self.enum: tuple[Any, ...] | None = None
        self.bits: tuple[int, int] | None = None
        self.go = ""  # Go type name, for decoder-style messages
        self.owner = ""  # Go struct name of an object node


@dataclass(slots=True)
class SchemaFindings:
    decode: list[Cause] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)


def _go_name(defname: str) -> tuple[str, str]:
    parts = defname.split(".")
    return parts[-1], f"{parts[-2]}.{parts[-1]}"


_compiled: dict[str, _Node] = {}


def _compile_def(defname: str) -> _Node:
    node = _compiled.get(defname)
    if node is None:
        # Registered before its children compile, so recursive types terminate.
        node = _compiled[defname] = _Node(_OBJ)
        _fill(node, schemas.definitions()[defname], defname)
    return node


def _node_for(schema: dict[str, Any]) -> _Node:
    name = schemas.ref_name(schema)
    if name is None and "allOf" in schema and len(schema["allOf"]) == 1:
        name = schemas.ref_name(schema["allOf"][0])
    if name is not None:
        return _compile_def(name)
    node = _Node(_ANY)
    _fill(node, schema, "")
    return node


def _fill(node: _Node, schema: dict[str, Any], defname: str) -> None:
    if defname.endswith("api.resource.Quantity"):
        node.code, node.go = _QTY, "resource.Quantity"
        return
    if defname.endswith("util.intstr.IntOrString"):
        node.code, node.go = _INTSTR, "intstr.IntOrString"
        return
    types = schema.get("type")
    kind = types[0] if isinstance(types, list) else types
    fmt = schema.get("format")
    if "enum" in schema:
        node.enum = tuple(schema["enum"])
    if kind == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props:
            node.code = _OBJ
            node.owner, node.go = _go_name(defname) if defname else ("", "struct")
            node.props = {k: _node_for(v) for k, v in props.items()}
            node.required = tuple(schema.get("required", ()))
            if isinstance(extra, dict):
                node.extra = _node_for(extra)
        elif isinstance(extra, dict):
            node.code = _MAP
            node.extra = _node_for(extra)
            node.go = f"map[string]{node.extra.go or 'interface {}'}"
        else:
            node.code, node.go = _ANYOBJ, "map[string]interface {}"
    elif kind == "array":
        node.code = _ARR
        node.items = _node_for(schema.get("items") or {})
        node.go = f"[]{node.items.go or 'interface {}'}"
    elif kind == "string":
        if fmt == "date-time":
            node.code, node.go = _TIME, "v1.Time"
        elif fmt == "byte":
            node.code, node.go = _BYTES, "[]uint8"
        else:
            node.code, node.go = _STR, "string"
    elif kind == "integer":
        node.code = _INT
        node.bits = _INT32 if fmt == "int32" else _INT64
        node.go = "int32" if fmt == "int32" else "int64"
    elif kind == "number":
        node.code, node.go = _NUM, "float64"
    elif kind == "boolean":
        node.code, node.go = _BOOL, "bool"


def kind_node(group: str, version: str, kind: str) -> _Node | None:
    try:
        return _compile_def(schemas.definition_for(group, version, kind))
    except KeyError:
        return None


def walk(node: _Node, obj: dict[str, Any]) -> SchemaFindings:
    found = SchemaFindings()
    if not _clean(node, obj, root=True):
        _walk(node, obj, "", "", found)
    return found


def _clean_spec(node: _Node, spec: Any) -> bool:
    memo = _CLEAN.key(spec, owner=node)
    if _CLEAN.is_clean(memo, owner=node):
        return True
    if not _clean(node, spec):
        return False
    _CLEAN.add(memo, owner=node)
    return True


def _clean(node: _Node, value: Any, *, root: bool = False) -> bool:
    """Whether _walk would find nothing in `value`. Nearly every object is clean, and
    answering that alone, without paths or findings, is a third of the cost of a
    walk: the walk only runs to say what is wrong. A root's clean spec is remembered:
    a Deployment's pods share one, and every status write repeats its object's; the
    other parts are unique (metadata) or small, and keying them costs more."""
    code = node.code
    vtype = type(value)
    if code == _OBJ:
        if vtype is not dict:
            return False
        props, extra = node.props, node.extra
        for key, sub in value.items():
            child = props.get(key) or extra
            if child is None:
                return False
            if sub is None:
                continue
            if root and key == "spec" and child.code == _OBJ:
                if not _clean_spec(child, sub):
                    return False
            elif not _clean(child, sub):
                return False
        return all(value.get(name) is not None for name in node.required)
    if code == _STR:
        return vtype is str and (node.enum is None or value in node.enum)
    if code == _INT:
        return vtype is int and node.bits[0] <= value <= node.bits[1]  # type: ignore[index]
    if code == _ARR:
        if vtype is not list:
            return False
        items = node.items
        if items is None or items.code == _ANY:
            return True
        return all(_clean(items, item) if item is not None else not items.required
                   for item in value)
    if code == _MAP:
        if vtype is not dict:
            return False
        extra = node.extra
        if extra is None or extra.code == _ANY:
            return True
        return all(sub is None or _clean(extra, sub) for sub in value.values())
    if code == _BOOL:
        return vtype is bool
    if code == _INTSTR:
        return vtype is str or vtype is int
    if code == _QTY:
        return is_quantity(value)
    if code == _NUM:
        return vtype is int or vtype is float
    if code == _TIME:
        return _time_ok(value)
    if code == _BYTES:
        found = SchemaFindings()
        _check_base64(node, value, "", "", found)
        return not found.decode
    if code == _ANYOBJ:
        return vtype is dict
    return True


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode_error(found: SchemaFindings, node: _Node, value: Any, path: str, owner: str) -> None:
    jtype = _JSON_TYPE.get(type(value), "value")
    if jtype == "number":
        jtype = f"number {value}"
    where = _INDEX.sub("", path)
    target = f"Go struct field {owner}.{where}" if owner else "Go value"
    found.decode.append(
        Cause(FIELD_TYPE_INVALID, f"json: cannot unmarshal {jtype} into {target} of type {node.go}", path)
    )


# Objects a walk found nothing in, by schema node and value.
_CLEAN = CleanCache()


def _walk(node: _Node, value: Any, path: str, owner: str, found: SchemaFindings) -> None:
    code = node.code
    vtype = type(value)
    if code == _OBJ:
        if vtype is not dict:
            _decode_error(found, node, value, path, owner)
            return
        key = _CLEAN.key(value, owner=node)
        if _CLEAN.is_clean(key, owner=node):
            return
        before = len(found.decode) + len(found.unknown) + len(found.causes)
        _walk_object(node, value, path, found)
        if before == len(found.decode) + len(found.unknown) + len(found.causes):
            _CLEAN.add(key, owner=node)
        return
    _walk_value(node, value, path, owner, found)


def _walk_object(node: _Node, value: dict[str, Any], path: str, found: SchemaFindings) -> None:
    props = node.props
    for key, sub in value.items():
        child = props.get(key) or node.extra
        if child is None:
            found.unknown.append(_join(path, key))
        elif sub is not None:
            _walk(child, sub, _join(path, key), node.owner, found)
    for name in node.required:
        if value.get(name) is None:
            found.causes.append(required(_join(path, name)))


def _walk_value(node: _Node, value: Any, path: str, owner: str, found: SchemaFindings) -> None:
    code = node.code
    vtype = type(value)
    if code == _STR:
        if vtype is not str:
            _decode_error(found, node, value, path, owner)
        elif node.enum is not None and value not in node.enum:
            found.causes.append(not_supported(path, value, node.enum))
    elif code == _INT:
        if vtype is not int:
            _decode_error(found, node, value, path, owner)
        elif not node.bits[0] <= value <= node.bits[1]:  # type: ignore[index]
            _decode_error(found, node, value, path, owner)
    elif code == _ARR:
        if vtype is not list:
            _decode_error(found, node, value, path, owner)
            return
        items = node.items
        if items is not None and items.code != _ANY:
            for i, item in enumerate(value):
                if item is not None:
                    _walk(items, item, f"{path}[{i}]", owner, found)
                else:
                    # Go decodes null into a zero struct, whose required fields are then missing.
                    found.causes.extend(required(f"{path}[{i}].{name}") for name in items.required)
    elif code == _MAP:
        if vtype is not dict:
            _decode_error(found, node, value, path, owner)
            return
        extra = node.extra
        if extra is not None and extra.code != _ANY:
            for key, sub in value.items():
                if sub is not None:
                    _walk(extra, sub, f"{path}[{key}]", owner, found)
    elif code == _BOOL:
        if vtype is not bool:
            _decode_error(found, node, value, path, owner)
    elif code == _INTSTR:
        if vtype is not str and vtype is not int:
            _decode_error(found, node, value, path, owner)
    elif code == _QTY:
        if not is_quantity(value):
            found.decode.append(Cause(FIELD_TYPE_INVALID, QUANTITY_MSG, path))
    elif code == _NUM:
        if vtype is not int and vtype is not float:
            _decode_error(found, node, value, path, owner)
    elif code == _TIME:
        _check_time(node, value, path, owner, found)
    elif code == _BYTES:
        _check_base64(node, value, path, owner, found)
    elif code == _ANYOBJ and vtype is not dict:
        _decode_error(found, node, value, path, owner)


# Timestamps of a burst of writes repeat (creation times, an Event's first and last).
_GOOD_TIMES: set[str] = set()
_GOOD_TIMES_LIMIT = 1024


def _time_ok(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if value in _GOOD_TIMES:
        return True
    if _RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    if len(_GOOD_TIMES) >= _GOOD_TIMES_LIMIT:
        _GOOD_TIMES.clear()
    _GOOD_TIMES.add(value)
    return True


def _check_time(node: _Node, value: Any, path: str, owner: str, found: SchemaFindings) -> None:
    if not isinstance(value, str):
        _decode_error(found, node, value, path, owner)
        return
    if not _time_ok(value):
        found.decode.append(
            Cause(
                FIELD_TYPE_INVALID,
                f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse "{value}" as "2006"',
                path,
            )
        )


_B64_ALPHABET = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _check_base64(node: _Node, value: Any, path: str, owner: str, found: SchemaFindings) -> None:
    if not isinstance(value, str):
        _decode_error(found, node, value, path, owner)
        return
    try:
        base64.b64decode(value, validate=True)
        return
    except (binascii.Error, ValueError):
        pass
    m = _B64_ALPHABET.match(value)
    at = m.end() if m and m.end() < len(value) else (len(value) // 4) * 4
    found.decode.append(Cause(FIELD_TYPE_INVALID, f"illegal base64 data at input byte {at}", path))
