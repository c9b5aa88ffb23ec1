"""Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) to JSON objects.

kubectl's typed commands (create deployment|configmap|secret|..., create token,
auth can-i, auth whoami, drain) send protobuf and never fall back to JSON. A
body is the magic `k8s\\x00` and a `runtime.Unknown` message:

    1: typeMeta {1: apiVersion, 2: kind}   2: raw (the object's message)
    3: contentEncoding                     4: contentType

`decode` turns it into the object exactly as the same object looks in
Kubernetes JSON, so the rest of the server sees one shape whatever the wire
format. Field numbers come from `protobuf_fields`; everything else about a
field (string, list, map, bytes, nested type) from the Kubernetes JSON schemas.

What Go's encoding/json would write is reproduced, with one exception: null is
left out (a zero `metav1.Time` such as `creationTimestamp`, nil lists). gogo
protobuf writes every non-pointer field, zero or not, so a zero scalar is kept
only where it means something: Go pointers (`replicas: 0`,
`automountServiceAccountToken: false`) and fields JSON never omits (the
schema's `required`, e.g. `status.allowed`). Messages present on the wire are
kept even when empty (`resources: {}`), as Go writes them.

Quantities keep the client's spelling; canonicalising them ("1000m" -> "1") is
the same work as for JSON bodies and is not done here. Unknown field numbers are
skipped, as protobuf readers must for forward compatibility.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kubelite.api import errors, schemas
from kubelite.server.protobuf_fields import MESSAGES

MAGIC = b"k8s\x00"

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
MICRO_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
FIELDS_V1 = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# time.Time{}.Unix() in Go: metav1.Time marshals the zero time as null.
_GO_ZERO_TIME = -62135596800
_ZERO_SCALARS = ("", 0)

WireValue = int | bytes


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object of a protobuf body; APIError 400 for anything malformed."""
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            f"provided data does not appear to be a protobuf message, expected prefix {list(MAGIC)}"
        )
    envelope: dict[int, WireValue] = {}
    for number, wire, value in iter_fields(body[len(MAGIC) :], "runtime.Unknown"):
        if number in (1, 2, 3, 4):
            envelope[number] = _expect_len(value, wire, f"runtime.Unknown field {number}")
    type_meta: dict[int, WireValue] = {}
    for number, wire, value in iter_fields(_field_bytes(envelope, 1), "runtime.Unknown.typeMeta"):
        if number in (1, 2):
            type_meta[number] = _expect_len(value, wire, f"typeMeta field {number}")
    api_version = _text(_field_bytes(type_meta, 1))
    kind = _text(_field_bytes(type_meta, 2))
    if not kind:
        raise errors.bad_request("Object 'Kind' is missing in protobuf body")
    if not api_version:
        raise errors.bad_request("Object 'apiVersion' is missing in protobuf body")
    encoding = _text(_field_bytes(envelope, 3))
    if encoding:
        raise errors.bad_request(f'unsupported protobuf content encoding "{encoding}"')
    definition = _definition(api_version, kind)
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj.update(_message(_field_bytes(envelope, 2), definition, definition, kind))
    return obj


def iter_fields(data: bytes, where: str) -> Iterator[tuple[int, int, WireValue]]:
    """(field number, wire type, value) of each field: an int for varints, bytes otherwise."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos, where)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise errors.bad_request(f"protobuf: {where}: invalid field number 0")
        value: WireValue
        if wire == _VARINT:
            value, pos = _varint(data, pos, where)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = _take(data, pos, size, where), pos + size
        elif wire == _LEN:
            size, pos = _varint(data, pos, where)
            value, pos = _take(data, pos, size, where), pos + size
        else:
            raise errors.bad_request(f"protobuf: {where}: unsupported wire type {wire}")
        yield number, wire, value


def _varint(data: bytes, pos: int, where: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise errors.bad_request(f"protobuf: {where}: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise errors.bad_request(f"protobuf: {where}: varint longer than 10 bytes")


def _take(data: bytes, pos: int, size: int, where: str) -> bytes:
    if pos + size > len(data):
        raise errors.bad_request(
            f"protobuf: {where}: truncated field, {size} bytes announced, {len(data) - pos} present"
        )
    return data[pos : pos + size]


def _definition(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    try:
        definition = schemas.definition_for(group, version, kind)
    except KeyError:
        raise errors.bad_request(
            f'no kind "{kind}" is registered for version "{api_version}"'
        ) from None
    if definition not in MESSAGES:
        raise errors.bad_request(
            f'kind "{kind}" of version "{api_version}" cannot be decoded from protobuf '
            "by this server; send it as JSON"
        )
    return definition


def _message(data: bytes, definition: str, table: str, path: str) -> dict[str, Any]:
    """Decode one message; `table` differs from `definition` only for inlined structs,
    whose fields JSON places in the enclosing object (and so in its schema)."""
    fields = MESSAGES.get(table)
    schema = schemas.definitions().get(definition)
    if fields is None or schema is None:
        raise errors.bad_request(f"protobuf: {path}: type {table} cannot be decoded")
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    out: dict[str, Any] = {}
    for number, wire, value in iter_fields(data, path):
        field = fields.get(number)
        if field is None:
            continue
        if field.inline:
            inner = _expect_len(value, wire, path)
            out.update(_message(inner, definition, field.inline, path))
            continue
        prop = props.get(field.name)
        if prop is None:
            continue
        where = f"{path}.{field.name}"
        shape = _shape(prop)
        if shape == "array":
            out.setdefault(field.name, []).extend(_repeated(value, wire, prop["items"], where))
        elif shape == "map":
            key, item = _map_entry(value, wire, prop["additionalProperties"], where)
            out.setdefault(field.name, {})[key] = item
        else:
            decoded = _value(value, wire, prop, where)
            is_zero = shape != "ref" and decoded in _ZERO_SCALARS
            if decoded is None or (is_zero and not field.pointer and field.name not in required):
                out.pop(field.name, None)
            else:
                out[field.name] = decoded
    return out


def _shape(schema: dict[str, Any]) -> str:
    """ref | array | map | bytes | string | integer | boolean | number."""
    if _ref(schema):
        return "ref"
    kinds = schema.get("type")
    kind = next((k for k in kinds if k != "null"), "") if isinstance(kinds, list) else kinds
    if kind == "object":
        return "map" if isinstance(schema.get("additionalProperties"), dict) else "object"
    if kind == "string" and schema.get("format") == "byte":
        return "bytes"
    return kind or "object"


def _ref(schema: dict[str, Any]) -> str | None:
    name = schemas.ref_name(schema)
    if name is None and len(schema.get("allOf", ())) == 1:
        name = schemas.ref_name(schema["allOf"][0])
    return name


def _repeated(value: WireValue, wire: int, items: dict[str, Any], where: str) -> list[Any]:
    shape = _shape(items)
    if wire == _LEN and shape in ("integer", "boolean", "number"):
        # Packed encoding: one length-delimited run of scalars.
        assert isinstance(value, bytes)
        return [_value(v, w, items, where) for v, w in _unpack(value, shape, where)]
    return [_value(value, wire, items, where)]


def _unpack(data: bytes, shape: str, where: str) -> Iterator[tuple[WireValue, int]]:
    pos = 0
    while pos < len(data):
        if shape == "number":
            yield _take(data, pos, 8, where), _FIXED64
            pos += 8
        else:
            number, pos = _varint(data, pos, where)
            yield number, _VARINT


def _map_entry(
    value: WireValue, wire: int, item_schema: dict[str, Any], where: str
) -> tuple[str, Any]:
    """Protobuf maps are repeated {1: key, 2: value} messages; absent parts are zero."""
    key, raw = "", None
    for number, entry_wire, part in iter_fields(_expect_len(value, wire, where), where):
        if number == 1:
            key = _text(_expect_len(part, entry_wire, where))
        elif number == 2:
            raw = (part, entry_wire)
    where = f"{where}[{key}]"
    if _shape(item_schema) == "array":
        # map[string][]string travels as map<string, {1: repeated string}> (ExtraValue).
        items: list[Any] = []
        if raw is not None:
            for number, item_wire, item in iter_fields(_expect_len(*raw, where), where):
                if number == 1:
                    items.extend(_repeated(item, item_wire, item_schema["items"], where))
        return key, items
    if raw is None:
        raw = (b"", _LEN) if _shape(item_schema) in ("ref", "string", "bytes") else (0, _VARINT)
    return key, _value(raw[0], raw[1], item_schema, where)


def _value(value: WireValue, wire: int, schema: dict[str, Any], where: str) -> Any:
    shape = _shape(schema)
    if shape == "ref":
        ref = _ref(schema)
        assert ref is not None
        return _typed(_expect_len(value, wire, where), ref, where)
    if shape == "string":
        return _text(_expect_len(value, wire, where))
    if shape == "bytes":
        return base64.b64encode(_expect_len(value, wire, where)).decode("ascii")
    if shape in ("integer", "boolean"):
        if wire != _VARINT or not isinstance(value, int):
            raise errors.bad_request(f"protobuf: {where}: expected a varint, got wire type {wire}")
        return bool(value) if shape == "boolean" else _signed(value)
    if shape == "number" and isinstance(value, bytes) and wire in (_FIXED64, _FIXED32):
        return struct.unpack("<d" if wire == _FIXED64 else "<f", value)[0]
    raise errors.bad_request(f"protobuf: {where}: cannot decode a {shape} from wire type {wire}")


def _typed(data: bytes, ref: str, where: str) -> Any:
    """A nested message: the apimachinery types with a JSON form of their own, or an object."""
    if ref == QUANTITY:
        return _text(_field_bytes(_scalars(data, where), 1)) or "0"
    if ref == INT_OR_STRING:
        parts = _scalars(data, where)
        if parts.get(1) == 1:
            return _text(_field_bytes(parts, 3))
        return _int_field(parts, 2, where)
    if ref in (TIME, MICRO_TIME):
        return _timestamp(data, micro=ref == MICRO_TIME, where=where)
    if ref == FIELDS_V1:
        raw = _field_bytes(_scalars(data, where), 1)
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(f"protobuf: {where}: fieldsV1 is not JSON: {exc}") from None
    return _message(data, ref, ref, where)


def _timestamp(data: bytes, *, micro: bool, where: str) -> str | None:
    if not data:
        return None
    parts = _scalars(data, where)
    seconds, nanos = _int_field(parts, 1, where), _int_field(parts, 2, where)
    if seconds == _GO_ZERO_TIME and not nanos:
        return None
    try:
        # metav1.Time keeps whole seconds only (its Unmarshal drops nanos); MicroTime
        # keeps microseconds.
        moment = _EPOCH + timedelta(seconds=seconds)
        if micro:
            moment += timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise errors.bad_request(f"protobuf: {where}: time out of range") from None
    text = moment.replace(tzinfo=None).isoformat(timespec="microseconds" if micro else "seconds")
    return text + "Z"


def _scalars(data: bytes, where: str) -> dict[int, WireValue]:
    """The last value of each field of a small fixed message (Quantity, Time, ...)."""
    return {number: value for number, _, value in iter_fields(data, where)}


def _int_field(fields: dict[int, WireValue], number: int, where: str) -> int:
    value = fields.get(number, 0)
    if not isinstance(value, int):
        raise errors.bad_request(f"protobuf: {where}: field {number} must be a varint")
    return _signed(value)


def _field_bytes(fields: dict[int, WireValue], number: int) -> bytes:
    value = fields.get(number, b"")
    return value if isinstance(value, bytes) else b""


def _expect_len(value: WireValue, wire: int, where: str) -> bytes:
    if wire != _LEN or not isinstance(value, bytes):
        raise errors.bad_request(
            f"protobuf: {where}: expected a length-delimited field, got wire type {wire}"
        )
    return value


def _text(data: bytes) -> str:
    # Go's encoding/json writes invalid UTF-8 as U+FFFD, as "replace" does.
    return data.decode("utf-8", "replace")


def _signed(value: int) -> int:
    """Varints carry negative int32/int64 as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value
