"""Server-side apply and the managedFields every write records.

This follows the apiserver's field manager (structured-merge-diff):

- `update_managed_fields` runs after create, update and the non-apply
  patches. The writer takes ownership of every field it added or changed,
  other managers lose those fields and every field the write removed.
- `server_side_apply` handles `application/apply-patch+yaml`. The applied
  configuration is merged into the live object by the schema's list and map
  kinds. Fields this manager applied last time but leaves out now are removed
  unless another manager owns them. Changing a field that another manager owns
  is a 409 conflict unless the apply is forced; with force the applier takes
  the field.

Managers are told apart by name, operation and subresource, and Update
managers also by apiVersion, as in Kubernetes. The fields the server itself
sets (apiVersion, kind, metadata.name/namespace/uid/resourceVersion/
generation/creationTimestamp/managedFields) are never owned. On kinds with a
status, main-resource writes never own status and status writes never own spec,
as the apiserver's reset fields have it.
managedFields entries that a write leaves unchanged are the very dicts of the
old object (no copy on every write): treat them as read-only.
Not done here: the cap of ten Update managers ("ancient-changes") and the
handover of fields from kubectl's last-applied annotation.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from kubelite.api import fieldpath as fp
from kubelite.api.errors import APIError, bad_request
from kubelite.api.patch import deep_copy, without_nulls
from kubelite.api.schemas import resolve

Schema = dict[str, Any] | None
Tree = fp.Tree
Ident = tuple[str, str, str, str]

APPLY = "Apply"
UPDATE = "Update"
BEFORE_FIRST_APPLY = "before-first-apply"

_STRIPPED: Tree = {
    "f:apiVersion": {},
    "f:kind": {},
    "f:metadata": {
        ".": {},
        **{
            "f:" + name: {}
            for name in (
                "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
                "generation", "managedFields", "resourceVersion",
            )
        },
    },
}


@dataclass(slots=True)
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: Tree
    encoded: dict[str, Any] | None = None  # the entry as read, reused while unchanged
    ordered: bool = True  # fields already in serialization order (difference keeps it)

    @property
    def ident(self) -> Ident:
        return _ident(self.manager, self.operation, self.subresource, self.api_version)

    def printed(self) -> str:
        text = _quote(self.manager)
        if self.subresource:
            text += f" with subresource {_quote(self.subresource)}"
        if self.operation == UPDATE:
            text += f" using {self.api_version}"
        return text


def _ident(manager: str, operation: str, subresource: str, api_version: str) -> Ident:
    # Appliers keep one entry across apiVersions; updaters get one per apiVersion.
    return (manager, operation, subresource, api_version if operation != APPLY else "")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decode(entries: Any) -> dict[Ident, _Entry] | None:
    """managedFields as stored; None when they are malformed."""
    if not isinstance(entries, list):
        return None
    managers: dict[Ident, _Entry] = {}
    for raw in entries:
        if not isinstance(raw, dict):
            return None
        fields = raw.get("fieldsV1") or {}
        texts = [raw.get(k) or "" for k in ("manager", "operation", "apiVersion", "subresource")]
        if not isinstance(fields, dict) or not all(isinstance(t, str) for t in texts):
            return None
        time = raw.get("time")
        entry = _Entry(*texts[:3], texts[3], time if isinstance(time, str) else None, fields, raw)
        known = managers.get(entry.ident)
        if known is not None:
            entry.fields = fp.union(known.fields, fields)
            entry.encoded = None
            entry.ordered = False
        managers[entry.ident] = entry
    return managers


def _encode(managers: dict[Ident, _Entry]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in sorted(
        managers.values(),
        key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource),
    ):
        if entry.encoded is None:
            encoded: dict[str, Any] = {
                "manager": entry.manager,
                "operation": entry.operation,
                "apiVersion": entry.api_version,
            }
            if entry.time:
                encoded["time"] = entry.time
            encoded["fieldsType"] = "FieldsV1"
            encoded["fieldsV1"] = entry.fields if entry.ordered else fp.normalize(entry.fields)
            if entry.subresource:
                encoded["subresource"] = entry.subresource
            entry.encoded = encoded
        out.append(entry.encoded)
    return out


def _store(obj: dict[str, Any], managers: dict[Ident, _Entry]) -> None:
    meta = obj.setdefault("metadata", {})
    managers = {k: e for k, e in managers.items() if e.fields}
    if managers:
        meta["managedFields"] = _encode(managers)
    else:
        meta.pop("managedFields", None)


def _without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _ignored(schema: Schema, subresource: str) -> tuple[str, ...]:
    """Top-level fields a write through this (sub)resource never owns (the reset fields)."""
    resolved = resolve(schema) if schema else None
    props = (resolved or {}).get("properties") or {}
    if "status" not in props:
        return ()
    if subresource == "status":
        return ("spec",) if "spec" in props else ()
    return ("status",) if not subresource else ()


def _owned(tree: Tree, ignored: tuple[str, ...]) -> Tree:
    return fp.difference(fp.without_fields(tree, ignored), _STRIPPED)


# ---- Update ------------------------------------------------------------------


def update_managed_fields(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    operation: str = UPDATE,
    schema: Schema,
    now: str,
    subresource: str = "",
) -> None:
    """Record in `new.metadata.managedFields` what this write changed, as the apiserver does.

    managedFields sent in `new` replace the stored ones (how clients edit or
    clear them, e.g. with `[{}]`); when absent, empty or malformed, or on a
    subresource, the stored ones of `old` carry over. An existing object that
    has no managedFields stays untracked, as in Kubernetes.
    """
    meta = new.setdefault("metadata", {})
    if old is None and not meta.get("managedFields") and not subresource:
        _record_create(new, manager, operation, schema, now)
        return
    managers = _decode(meta.get("managedFields")) if not subresource else None
    if not managers:
        managers = _decode(((old or {}).get("metadata") or {}).get("managedFields")) or {}
        if old is not None and not managers:
            meta.pop("managedFields", None)
            return
    ignored = _ignored(schema, subresource)
    diff = fp.compare(_without_managed_fields(old or {}), _without_managed_fields(new), schema)
    changed = _owned(diff.changed, ignored)
    removed = fp.without_fields(diff.removed, ignored)
    ident = _ident(manager, operation, subresource, new.get("apiVersion", ""))
    _take_from_others(managers, ident, fp.union(changed, removed))
    mine = managers.get(ident)
    if mine is not None and removed:
        _set_fields(mine, fp.difference(mine.fields, removed))
    if changed:
        if mine is None:
            mine = managers[ident] = _Entry(
                manager, operation, new.get("apiVersion", ""), subresource, now, {}
            )
        _set_fields(mine, fp.union(mine.fields, changed), ordered=False)
        mine.time = now
    _store(new, managers)


# The owned set of a create, by schema and shape: it depends on the keys of every
# map and the whole of every list, never on a map's plain values, so a burst of
# alike creates (a Deployment's pods, a scheduler's Events) computes it once.
_CREATED: OrderedDict[tuple[int, str, Any], tuple[Schema, Tree]] = OrderedDict()
_CREATED_LIMIT = 1024


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple([(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return fp.digest(value)
    return None


def _record_create(new: dict[str, Any], manager: str, operation: str, schema: Schema,
                   now: str) -> None:
    """update_managed_fields for a new object with no managedFields of its own: the
    writer owns everything it set."""
    meta = new["metadata"]
    meta.pop("managedFields", None)
    try:
        key: tuple[int, str, Any] | None = (id(schema), operation, _shape(new))
    except (TypeError, orjson.JSONEncodeError):
        key = None
    hit = _CREATED.get(key) if key is not None else None
    if hit is not None and hit[0] is schema:
        fields = hit[1]
    else:
        fields = fp.normalize(_owned(fp.compare({}, new, schema).changed,
                                     _ignored(schema, "")))
        if key is not None:
            _CREATED[key] = (schema, fields)
            if len(_CREATED) > _CREATED_LIMIT:
                _CREATED.popitem(last=False)
    if fields:
        entry = _Entry(manager, operation, new.get("apiVersion", ""), "", now, fields)
        _store(new, {entry.ident: entry})


def _set_fields(entry: _Entry, fields: Tree, *, ordered: bool = True) -> None:
    if fields is not entry.fields:
        entry.fields = fields
        entry.encoded = None
        entry.ordered = entry.ordered and ordered


def _take_from_others(managers: dict[Ident, _Entry], ident: Ident, taken: Tree) -> None:
    if not taken:
        return
    for other, entry in managers.items():
        if other != ident:
            _set_fields(entry, fp.difference(entry.fields, taken))


# ---- Apply -------------------------------------------------------------------


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    schema: Schema,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after applying `applied` for `manager`, its managedFields updated.

    Creates the object when `live` is None. Raises a 409 Conflict `APIError`
    shaped like Kubernetes' when, without force, the apply changes fields that
    other managers own. Neither `live` nor `applied` is changed.
    """
    if not isinstance(applied, dict):
        raise bad_request("the applied configuration must be a JSON object")
    meta = applied.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if meta and meta.get("managedFields"):
        raise bad_request("metadata.managedFields must be nil")
    ignored = _ignored(schema, subresource)
    config = without_nulls({k: v for k, v in applied.items() if k not in ignored})
    applied_set = _owned(fp.to_field_set(config, schema), ignored)
    api_version = config.get("apiVersion") or (live or {}).get("apiVersion", "")
    ident = _ident(manager, APPLY, subresource, "")
    entry = _Entry(manager, APPLY, api_version, subresource, now, applied_set, ordered=False)
    if live is None:
        config.setdefault("metadata", {})
        _store(config, {ident: entry})
        return config

    base = _without_managed_fields(live)
    managers = _decode((live.get("metadata") or {}).get("managedFields")) or {}
    if not managers:
        # Whatever existed before the first apply is owned by a stand-in updater.
        first = _owned(fp.compare({}, base, schema).changed, _ignored(schema, ""))
        if first:
            managers[_ident(BEFORE_FIRST_APPLY, UPDATE, "", live.get("apiVersion", ""))] = _Entry(
                BEFORE_FIRST_APPLY, UPDATE, live.get("apiVersion", ""), "", now, first, ordered=False
            )
    merged = _merge_map(deep_copy(base), config, schema)
    previous = managers.get(ident)
    managers[ident] = entry
    # Only what the applier owned before and no longer applies can go away.
    if previous is not None and fp.difference(previous.fields, applied_set):
        keep: Tree = {}
        for other in managers.values():
            keep = fp.union(keep, other.fields)
        _prune_map(merged, previous.fields, keep, schema)

    diff = fp.compare(base, merged, schema)
    conflicts = {
        other: overlap
        for other, owner in managers.items()
        if other != ident and (overlap := fp.intersection(owner.fields, diff.changed))
    }
    if conflicts and not force:
        raise _conflict_error([(managers[k], tree) for k, tree in conflicts.items()])
    _take_from_others(managers, ident, fp.union(diff.changed, diff.removed))
    unchanged = not diff.changed and not diff.removed
    if previous is not None and unchanged and previous.fields == applied_set:
        entry.time = previous.time
        if previous.api_version == api_version:
            entry.encoded = previous.encoded
    _store(merged, managers)
    return merged


def _conflict_error(conflicts: list[tuple[_Entry, Tree]]) -> APIError:
    conflicts.sort(key=lambda c: c[0].printed())
    found = [(owner, fp.path_string(path)) for owner, tree in conflicts for path in fp.members(tree)]
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {owner.printed()}", "field": path}
        for owner, path in found
    ]
    if len(found) == 1:
        owner, path = found[0]
        message = f"Apply failed with 1 conflict: conflict with {owner.printed()}: {path}"
    else:
        lines: list[str] = []
        for owner, tree in conflicts:
            lines.append(f"conflicts with {owner.printed()}:")
            lines.extend(f"- {fp.path_string(path)}" for path in fp.members(tree))
        message = f"Apply failed with {len(found)} conflicts: " + "\n".join(lines)
    return APIError(409, "Conflict", message, {"causes": causes})


# ---- structured merge --------------------------------------------------------

_MISSING: Any = object()


def _merge_map(target: dict[str, Any], config: dict[str, Any], prop: Schema) -> dict[str, Any]:
    """Merge an applied map into `target`, which this call owns; `config` values are owned too."""
    for name, value in config.items():
        child_prop = fp.child(prop, name)
        target[name] = _merge_value(target.get(name, _MISSING), value, child_prop)
    return target


def _merge_value(live: Any, value: Any, prop: Schema) -> Any:
    if isinstance(value, dict) and isinstance(live, dict) and not fp.is_atomic_map(prop):
        return _merge_map(live, value, prop)
    if isinstance(value, list) and isinstance(live, list):
        kind, keys = fp.list_kind(prop)
        if kind != fp.ATOMIC:
            return _merge_list(live, value, kind, keys, fp.items_of(prop))
    return value


def _merge_list(live: list[Any], applied: list[Any], kind: str, keys: tuple[str, ...], item_prop: Schema) -> list[Any]:
    """structured-merge-diff's list merge: live-only items stay where they were,
    shared and new items follow the applied order."""
    live_keys = [fp.item_element(v, kind, keys, item_prop, i) for i, v in enumerate(live)]
    applied_keys = [fp.item_element(v, kind, keys, item_prop, i) for i, v in enumerate(applied)]
    live_items = dict(zip(live_keys, live, strict=True))
    applied_items = dict(zip(applied_keys, applied, strict=True))
    shared = [k for k in applied_keys if k in live_items]
    next_shared = 0
    done: set[str] = set()
    out: list[Any] = []

    def merged(key: str) -> Any:
        done.add(key)
        old = live_items.get(key, _MISSING)
        new = applied_items[key]
        if kind == fp.LIST_MAP and isinstance(old, dict) and isinstance(new, dict):
            return _merge_map(old, new, item_prop)
        return new

    li = ai = 0
    while li < len(live_keys) or ai < len(applied_keys):
        if li < len(live_keys) and ai < len(applied_keys):
            key = live_keys[li]
            if key == applied_keys[ai]:
                out.append(merged(key))
                li += 1
                ai += 1
                next_shared += 1
                continue
            expected = shared[next_shared] if next_shared < len(shared) else None
            if key in applied_items and expected is not None and expected != key:
                li += 1
                continue
        if li < len(live_keys):
            key = live_keys[li]
            if key not in applied_items:
                out.append(live[li])
                li += 1
                continue
            if key in done:
                li += 1
                continue
        if ai < len(applied_keys):
            key = applied_keys[ai]
            if key not in done:
                out.append(merged(key))
            ai += 1
            if next_shared < len(shared) and shared[next_shared] == key:
                next_shared += 1
    return out


# ---- pruning -----------------------------------------------------------------


def _prune_map(obj: dict[str, Any], last: Tree, keep: Tree, prop: Schema) -> None:
    """Remove what the applier owned last time and nobody owns now.

    As in structured-merge-diff, a named struct field counts as owned when
    anything below it is; a list item or map key only when it is a member itself.
    """
    for element, node in last.items():
        if not element.startswith("f:"):
            continue
        name = element[2:]
        if name not in obj:
            continue
        named = fp.declared(prop, name)
        kept = keep.get(element)
        if (named or fp.is_member(node)) and (kept is None or not (named or fp.is_member(kept))):
            del obj[name]
            continue
        _prune_value(obj[name], node, kept or {}, fp.child(prop, name))


def _prune_value(value: Any, last: Tree, keep: Tree, prop: Schema) -> None:
    if isinstance(value, dict):
        if not fp.is_atomic_map(prop):
            _prune_map(value, last, keep, prop)
        return
    if not isinstance(value, list):
        return
    kind, keys = fp.list_kind(prop)
    if kind == fp.ATOMIC:
        return
    item_prop = fp.items_of(prop)
    remaining: list[Any] = []
    for index, item in enumerate(value):
        element = fp.item_element(item, kind, keys, item_prop, index)
        node = last.get(element)
        if node is not None:
            kept = keep.get(element)
            if fp.is_member(node) and (kept is None or not fp.is_member(kept)):
                continue
            if isinstance(item, dict) and kind == fp.LIST_MAP:
                _prune_map(item, node, kept or {}, item_prop)
        remaining.append(item)
    value[:] = remaining
