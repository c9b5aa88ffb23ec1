"""The three PATCH body types the apiserver accepts besides apply.

- `json_patch`: RFC 6902 (`application/json-patch+json`), through `jsonpatch`.
- `merge_patch`: RFC 7386 (`application/merge-patch+json`).
- `strategic_merge_patch`: Kubernetes' strategic merge patch
  (`application/strategic-merge-patch+json`), as kubectl's client-side apply,
  `kubectl patch`, `rollout restart` and `set image` send it. Merge keys and
  patch strategies come from the schemas' `x-kubernetes-patch-merge-key` and
  `x-kubernetes-patch-strategy`.

None of them mutates its inputs. Errors are `APIError`s with the codes the
apiserver uses: 400 for malformed patches, 422 for a failed JSON patch `test`.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer
import orjson

from kubelite.api.errors import APIError, bad_request, too_large
from kubelite.api.schemas import field_schema, items_schema

Schema = dict[str, Any] | None

# The apiserver's limit on operations in one JSON patch.
MAX_JSON_PATCH_OPERATIONS = 10000

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"

# Messages of apimachinery's mergepatch errors, which kubectl users see verbatim.
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_SET_ELEMENT_ORDER = "invalid patch format of setElementOrder list"


def deep_copy(value: Any) -> Any:
    """A copy of a JSON value; orjson's round trip is far faster than copy.deepcopy."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        if isinstance(value, dict):
            return {k: deep_copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [deep_copy(v) for v in value]
        return value


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


# ---- RFC 6902 ----------------------------------------------------------------


def json_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, list) or not all(isinstance(op, dict) for op in patch):
        raise bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            if isinstance(patch, dict)
            else "the JSON patch must be a list of operations"
        )
    if len(patch) > MAX_JSON_PATCH_OPERATIONS:
        raise too_large(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got: {len(patch)}"
        )
    doc: Any = deep_copy(obj)
    for op in patch:
        name = op.get("op")
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            # Kubernetes answers a failed test with a bare 422 and no detail.
            raise APIError(
                422, "Invalid", "the server rejected our request due to an error in our request"
            ) from exc
        except jsonpatch.InvalidJsonPatch as exc:
            raise bad_request(f"invalid JSON patch operation {_show(op)}: {exc}") from exc
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
            raise bad_request(
                f"jsonpatch {name} operation does not apply: doc is missing path: "
                f"{_show(op.get('path'))}: {exc}"
            ) from exc
    if not isinstance(doc, dict):
        raise bad_request("the JSON patch must leave a JSON object")
    return doc


# ---- RFC 7386 ----------------------------------------------------------------


def merge_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise bad_request("the merge patch must be a JSON object")
    return _merge(deep_copy(obj), patch)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _merge(current if isinstance(current, dict) else {}, value)
        else:
            target[key] = deep_copy(value) if isinstance(value, list) else value
    return target


# ---- strategic merge patch ---------------------------------------------------


def strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Apply a strategic merge patch; with no schema (unknown type) it is a merge patch."""
    if not isinstance(patch, dict):
        raise bad_request("the strategic merge patch must be a JSON object")
    if schema is None:
        return merge_patch(obj, patch)
    return _smp_map(deep_copy(obj), patch, schema)


def _strategies(prop: Schema) -> tuple[str, ...]:
    return tuple(prop.get("x-kubernetes-patch-strategy", "").split(",")) if prop else ()


def _smp_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Merge `patch` into `original`, which this call owns and may change."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            return _smp_map({}, {k: v for k, v in patch.items() if k != DIRECTIVE}, schema)
        if directive == "delete":
            return {}
        raise bad_request(f"unknown patch type: {_show(directive)} in map: {_show(patch)}")
    if RETAIN_KEYS in patch:
        _retain_keys(original, patch)
    done: set[str] = set()
    deletions: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key.startswith(SET_ELEMENT_ORDER):
            field = key[len(SET_ELEMENT_ORDER):]
            if not field:
                raise bad_request(_BAD_SET_ELEMENT_ORDER)
            _set_element_order(original, patch, field, value, schema)
            done.add(field)
    for key, value in patch.items():
        if key in done or key == RETAIN_KEYS or key.startswith(SET_ELEMENT_ORDER):
            continue
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            deletions.append((key[len(DELETE_FROM_PRIMITIVE_LIST):], value))
            continue
        if value is None:
            original.pop(key, None)
            continue
        original[key] = _smp_value(original.get(key), value, field_schema(schema, key))
    for field, values in deletions:
        if not field or not isinstance(values, list):
            raise bad_request(_BAD_PRIMITIVE_LIST)
        current = original.get(field)
        if isinstance(current, list):
            original[field] = [v for v in current if v not in values]
    return original


def _retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    retain = patch[RETAIN_KEYS]
    if not isinstance(retain, list):
        raise bad_request(_BAD_RETAIN_KEYS)
    keep = set(v for v in retain if isinstance(v, str))
    for key, value in patch.items():
        if value is None or key in (RETAIN_KEYS, DIRECTIVE) or key.startswith(
            (SET_ELEMENT_ORDER, DELETE_FROM_PRIMITIVE_LIST)
        ):
            continue
        if key not in keep:
            raise bad_request(_BAD_RETAIN_KEYS)
    for key in [k for k in original if k not in keep]:
        del original[key]


def _smp_value(current: Any, value: Any, prop: Schema) -> Any:
    strategies = _strategies(prop)
    if isinstance(value, dict):
        if isinstance(current, dict) and "replace" not in strategies:
            return _smp_map(current, value, prop)
        return _smp_map({}, value, prop)
    if isinstance(value, list):
        if "merge" in strategies:
            return _smp_list(current if isinstance(current, list) else [], value, prop)
        return without_nulls(value)
    return value


def without_nulls(value: Any) -> Any:
    """A copy of a replacing value, minus the nulls that Kubernetes' decoding would drop."""
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        encoded = None
    if encoded is not None and b"null" not in encoded:
        # The usual case, copied in C; a "null" inside some string only costs the walk.
        return orjson.loads(encoded)
    return _without_nulls(value)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "null"


def _element_kind(original: list[Any], patch: list[Any]) -> str:
    kinds = {_kind_of(v) for v in original} | {_kind_of(v) for v in patch}
    if "list" in kinds:
        raise bad_request("lists of lists are not supported")
    kinds.discard("null")
    if len(kinds) > 1:
        raise bad_request(f"list element types are not identical: {_show(original)} {_show(patch)}")
    return kinds.pop() if kinds else "null"


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else _show(value)


def _merge_key_value(item: dict[str, Any], merge_key: str) -> Any:
    if merge_key not in item:
        raise bad_request(f"map: {_show(item)} does not contain declared merge key: {merge_key}")
    return _hashable(item[merge_key])


def _live_key(item: Any, merge_key: str) -> Any:
    """The merge key of a live item; live lists are not validated against the patch rules."""
    return _hashable(item.get(merge_key)) if isinstance(item, dict) else _hashable(item)


def _smp_list(original: list[Any], patch: list[Any], prop: Schema) -> list[Any]:
    """Merge a list whose patch strategy is merge; `original` is owned by this call."""
    if not original and not patch:
        return original
    merge_key = prop.get("x-kubernetes-patch-merge-key") if prop else None
    if _element_kind(original, patch) != "map":
        merged = list(dict.fromkeys(_hashable(v) for v in original))
        known = set(merged)
        merged += [v for v in dict.fromkeys(_hashable(v) for v in patch) if v not in known]
        return _order_items(merged, [_hashable(v) for v in patch], original, None)
    if not merge_key:
        raise bad_request("cannot merge lists without merge key")
    item_prop = items_schema(prop)
    items: list[dict[str, Any]] = []
    replace = False
    for item in patch:
        directive = item.get(DIRECTIVE)
        if directive is None:
            items.append(item)
        elif directive == "delete":
            gone = _merge_key_value(item, merge_key)
            original = [o for o in original if _live_key(o, merge_key) != gone]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise bad_request("merging lists cannot yet be specified in the patch")
        else:
            raise bad_request(f"unknown patch type: {_show(directive)} in map: {_show(item)}")
    if replace:
        return [_smp_map({}, item, item_prop) for item in items]
    position = {_live_key(o, merge_key): i for i, o in enumerate(original)}
    merged = list(original)
    for item in items:
        key = _merge_key_value(item, merge_key)
        index = position.get(key)
        if index is None:
            position[key] = len(merged)
            merged.append(_smp_map({}, item, item_prop))
        else:
            merged[index] = _smp_map(merged[index], item, item_prop)
    return _order_items(merged, [_merge_key_value(i, merge_key) for i in items], original, merge_key)


def _order_items(merged: list[Any], patch_order: list[Any], server: list[Any], merge_key: str | None) -> list[Any]:
    """Kubernetes' element order after a merge.

    Items named in `patch_order` come in that order; the others keep their
    relative order from the live list (`server`), and are slotted in front of a
    patch item only when the live list had them in front of it.
    """
    def ident(item: Any) -> Any:
        return _live_key(item, merge_key) if merge_key else _hashable(item)

    rank = {k: i for i, k in enumerate(patch_order)}
    server_pos: dict[Any, int] = {}
    for i, item in enumerate(server):
        server_pos.setdefault(ident(item), i)
    in_patch = sorted((m for m in merged if ident(m) in rank), key=lambda m: rank[ident(m)])
    server_only = [m for m in merged if ident(m) not in rank]
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if j >= len(in_patch):
            out.append(server_only[i])
            i += 1
            continue
        if i < len(server_only):
            left = server_pos.get(ident(server_only[i]))
            right = server_pos.get(ident(in_patch[j]))
            if left is not None and right is not None and left < right:
                out.append(server_only[i])
                i += 1
                continue
        out.append(in_patch[j])
        j += 1
    return out


def _set_element_order(
    original: dict[str, Any], patch: dict[str, Any], field: str, order: Any, schema: Schema
) -> None:
    if not isinstance(order, list):
        raise bad_request(_BAD_SET_ELEMENT_ORDER)
    current = original.get(field)
    change = patch.get(field)
    if current is not None and not isinstance(current, list) or change is not None and not isinstance(change, list):
        raise bad_request(_BAD_SET_ELEMENT_ORDER)
    prop = field_schema(schema, field)
    if "merge" not in _strategies(prop):
        if change is not None:
            original[field] = without_nulls(change)
        return
    merge_key = prop.get("x-kubernetes-patch-merge-key") if prop else None
    _check_order(change or [], order, merge_key)
    if change is None:
        if current is None:
            return
        merged = current
    else:
        merged = _smp_list(current or [], change, prop)
    if merged and isinstance(merged[0], dict):
        if not merge_key:
            raise bad_request("cannot merge lists without merge key")
        wanted = [_merge_key_value(o, merge_key) for o in order if isinstance(o, dict)]
    else:
        merge_key = None
        wanted = [_hashable(o) for o in order]
    original[field] = _order_items(merged, wanted, current or [], merge_key)


def _check_order(change: list[Any], order: list[Any], merge_key: str | None) -> None:
    """The patch list's items must appear in `$setElementOrder` in the same relative order."""
    def ident(item: Any) -> Any:
        if merge_key and isinstance(item, dict):
            return _merge_key_value(item, merge_key)
        return _hashable(item)

    wanted = [ident(o) for o in order]
    at = 0
    for item in change:
        if isinstance(item, dict) and DIRECTIVE in item:
            continue
        key = ident(item)
        while at < len(wanted) and wanted[at] != key:
            at += 1
        if at == len(wanted):
            raise bad_request(
                f"The order in patch list:\n{_show(change)}\n doesn't match "
                f"{SET_ELEMENT_ORDER} list:\n{_show(order)}\n"
            )
        at += 1
