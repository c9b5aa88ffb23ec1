"""Field sets for managedFields, kept in the FieldsV1 encoding itself.

A set is a tree of dicts exactly as `metadata.managedFields[].fieldsV1` holds
it: children are keyed by path elements (`f:<field>`, `k:<json of the list map
keys>`, `v:<json value>` for set items, `i:<index>`), and the key `.` marks
the node itself as a member. Keeping that shape in memory means decoding and
encoding managedFields costs nothing; the set operations below build new trees
and never mutate their inputs, because trees read from a live object are shared.

How a value maps to paths follows structured-merge-diff (the library behind
the apiserver's field manager), with the list and map kinds read from the
Kubernetes schemas: `x-kubernetes-list-type` / `-list-map-keys` /
`-map-type`, falling back on the patch strategy and merge key where a list
declares no list type.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson

from kubelite.api.schemas import items_schema, resolve

Tree = dict[str, Any]
Schema = dict[str, Any] | None

MEMBER = "."
ATOMIC = "atomic"
LIST_MAP = "map"
LIST_SET = "set"

# The JSON schemas drop the `default` that Kubernetes' own OpenAPI models give a
# list map key (ports' `protocol`), which structured-merge-diff uses for items
# that omit the key; the schema's description still states it.
_DEFAULT_RE = re.compile(r'Defaults? (?:to|is) "?([A-Za-z0-9_.-]+?)"?\.')


class _Info:
    """What the walks need to know about one schema node, resolved once."""

    __slots__ = ("prop", "props", "extra", "atomic_map", "list_kind", "items", "required", "defaults")

    def __init__(self, prop: dict[str, Any]) -> None:
        resolved = resolve(prop) or {}
        self.prop = prop
        self.props: dict[str, Any] = resolved.get("properties") or {}
        extra = resolved.get("additionalProperties")
        self.extra: Schema = extra if isinstance(extra, dict) else None
        self.atomic_map = ATOMIC in (prop.get("x-kubernetes-map-type"), resolved.get("x-kubernetes-map-type"))
        self.list_kind = _list_kind(prop)
        self.items: Schema = items_schema(prop)
        self.required = frozenset(resolved.get("required") or ())
        self.defaults: dict[str, Any] = {}


_INFO: dict[int, _Info] = {}
_INFO_LIMIT = 50000
_ATOMIC_LIST: tuple[str, tuple[str, ...]] = (ATOMIC, ())


def _info(prop: dict[str, Any]) -> _Info:
    # Keyed by identity: the schemas are cached for the process, and the entry
    # holds its schema so that an id cannot be reused while cached.
    info = _INFO.get(id(prop))
    if info is None or info.prop is not prop:
        if len(_INFO) >= _INFO_LIMIT:
            _INFO.clear()
        info = _INFO[id(prop)] = _Info(prop)
    return info


def child(prop: Schema, name: str) -> Schema:
    """The schema of field `name` (or of a free-form map's values), like schemas.field_schema."""
    if not prop:
        return None
    info = _info(prop)
    found = info.props.get(name)
    return found if found is not None else info.extra


def items_of(prop: Schema) -> Schema:
    return _info(prop).items if prop else None


def _list_kind(prop: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    list_type = prop.get("x-kubernetes-list-type")
    if list_type == LIST_MAP:
        keys = prop.get("x-kubernetes-list-map-keys") or [prop.get("x-kubernetes-patch-merge-key")]
        return LIST_MAP, tuple(k for k in keys if k)
    if list_type in (LIST_SET, ATOMIC):
        return list_type, ()
    if "merge" in prop.get("x-kubernetes-patch-strategy", "").split(","):
        key = prop.get("x-kubernetes-patch-merge-key")
        return (LIST_MAP, (key,)) if key else (LIST_SET, ())
    return _ATOMIC_LIST


def list_kind(prop: Schema) -> tuple[str, tuple[str, ...]]:
    """How a list field merges: (atomic | map | set, map keys)."""
    return _info(prop).list_kind if prop else _ATOMIC_LIST


def is_atomic_map(prop: Schema) -> bool:
    return _info(prop).atomic_map if prop else False


def declared(prop: Schema, name: str) -> bool:
    """Whether `name` is a named field of a struct schema (not a key of a free-form map)."""
    return name in _info(prop).props if prop else False


def is_struct(prop: Schema) -> bool:
    return bool(_info(prop).props) if prop else False


def required_fields(prop: Schema) -> frozenset[str]:
    return _info(prop).required if prop else frozenset()


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(value)


def item_element(item: Any, kind: str, keys: tuple[str, ...], item_prop: Schema, index: int) -> str:
    """The path element naming one item of a map or set list."""
    if kind == LIST_SET:
        return "v:" + _json(item)
    if not isinstance(item, dict):
        return f"i:{index}"
    fields: dict[str, Any] = {}
    for key in keys:
        if key in item and item[key] is not None:
            fields[key] = item[key]
            continue
        default = _key_default(item_prop, key)
        if default is not None:
            fields[key] = default
    return "k:" + _json(fields) if fields else f"i:{index}"


def _key_default(item_prop: Schema, key: str) -> Any:
    if not item_prop:
        return None
    defaults = _info(item_prop).defaults
    if key not in defaults:
        prop = child(item_prop, key) or {}
        match = _DEFAULT_RE.search(prop.get("description", ""))
        defaults[key] = prop.get("default", match.group(1) if match else None)
    return defaults[key]


# A node is a member when it is a leaf (`{}`) or carries `.`; a node that is no
# member always has children. The root of a set is never a member.


def is_member(node: Tree) -> bool:
    return not node or MEMBER in node


def _kids(node: Tree) -> Tree:
    if MEMBER not in node:
        return node
    return {k: v for k, v in node.items() if k != MEMBER}


def _make(member: bool, kids: Tree) -> Tree | None:
    if not kids:
        return {} if member else None
    if member:
        return {MEMBER: {}, **kids}
    return kids


def _put(tree: Tree, element: str, member: bool, kids: Tree) -> None:
    node = _make(member, kids)
    if node is not None:
        tree[element] = node


def to_field_set(value: dict[str, Any], schema: Schema) -> Tree:
    """Every path an applied configuration sets (structured-merge-diff's ToFieldSet)."""
    out: Tree = {}
    _fs_map(value, schema, out)
    return out


def _fs_map(value: dict[str, Any], prop: Schema, out: Tree) -> None:
    for name, item in value.items():
        child_prop = child(prop, name)
        kids = _fs_value(item, child_prop)
        if kids is None:
            out["f:" + name] = {}
        else:
            # Named struct fields are not members themselves; free-form map keys are.
            _put(out, "f:" + name, not declared(prop, name), kids)


def _fs_value(value: Any, prop: Schema) -> Tree | None:
    """The children of a value's node, or None when the value is owned as a whole."""
    if isinstance(value, dict):
        if not value or is_atomic_map(prop):
            return None
        out: Tree = {}
        _fs_map(value, prop, out)
        return out
    if isinstance(value, list):
        kind, keys = list_kind(prop)
        if kind == ATOMIC:
            return None
        item_prop = items_of(prop)
        out = {}
        for index, item in enumerate(value):
            element = item_element(item, kind, keys, item_prop, index)
            kids: Tree = {}
            if kind == LIST_MAP and isinstance(item, dict):
                _fs_map(item, item_prop, kids)
            _put(out, element, True, kids)
        return out
    return None


class Comparison:
    """Paths that a write added or modified (`changed`) and paths it removed."""

    __slots__ = ("changed", "removed")

    def __init__(self) -> None:
        self.changed: Tree = {}
        self.removed: Tree = {}


_MISSING: Any = object()


def compare(old: dict[str, Any], new: dict[str, Any], schema: Schema) -> Comparison:
    """structured-merge-diff's Compare, with its added and modified sets folded together.

    A map or list that appears where there was none is itself a member of the
    changed set, except for schema structs and required fields: Kubernetes
    compares against a Go zero object in which those already exist.
    """
    result = Comparison()
    _cmp_map(old, new, schema, result.changed, result.removed)
    return result


def _cmp_map(old: dict[str, Any], new: dict[str, Any], prop: Schema, changed: Tree, removed: Tree) -> None:
    required = required_fields(prop)
    for name, new_value in new.items():
        old_value = old.get(name, _MISSING)
        # Unchanged subtrees are skipped by one C-level comparison.
        if old_value is new_value or old_value == new_value:
            continue
        child_prop = child(prop, name)
        granular = not declared(prop, name)
        _cmp_value(old_value, new_value, child_prop, "f:" + name, changed, removed,
                   granular=granular, required=name in required)
    for name, old_value in old.items():
        if name not in new:
            child_prop = child(prop, name)
            _cmp_value(old_value, _MISSING, child_prop, "f:" + name, changed, removed,
                       granular=True, required=False)


def _composite(value: Any, prop: Schema) -> str | None:
    """'map' or 'list' for values whose parts are tracked one by one; None for leaves."""
    if isinstance(value, dict):
        return None if is_atomic_map(prop) else "map"
    if isinstance(value, list):
        return None if list_kind(prop)[0] == ATOMIC else "list"
    return None


def _cmp_value(
    old: Any, new: Any, prop: Schema, element: str, changed: Tree, removed: Tree,
    *, granular: bool, required: bool,
) -> None:
    old_kind = None if old is _MISSING else _composite(old, prop)
    new_kind = None if new is _MISSING else _composite(new, prop)
    if old is not _MISSING and new is not _MISSING and old_kind != new_kind:
        _cmp_value(old, _MISSING, prop, element, changed, removed, granular=True, required=False)
        _cmp_value(_MISSING, new, prop, element, changed, removed, granular=granular, required=required)
        return
    if old_kind is None and new_kind is None:
        (removed if new is _MISSING else changed)[element] = {}
        return
    sub_changed: Tree = {}
    sub_removed: Tree = {}
    if old is _MISSING:
        node = _added(new, new_kind, prop, granular=granular, required=required)
        if node is not None:
            changed[element] = node
    elif new is _MISSING:
        _cmp_composite(old, {} if old_kind == "map" else [], prop, sub_changed, sub_removed)
        _put(removed, element, True, sub_removed)
    else:
        _cmp_composite(old, new, prop, sub_changed, sub_removed)
        _put(changed, element, False, sub_changed)
        _put(removed, element, False, sub_removed)


# Sets of wholly new values (what every create compares), by schema node and value:
# a burst of alike objects (a Deployment's pods, a scheduler's Events) repeats the
# same specs, whose walks are most of the cost of a create's managedFields. Each
# entry holds its schema node, so that an id cannot be mistaken while cached, and
# its normalised form for `normalize`. Sets are never changed in place, so a
# cached one is shared safely.
_ADDED: OrderedDict[tuple[int, bool, bool, bytes | tuple[str, ...]],
                    tuple[Schema, Tree | None]] = OrderedDict()
# id -> (cached set, its normalised form once asked for)
_NORMALIZED: dict[int, tuple[Tree, Tree | None]] = {}
_ADDED_LIMIT = 4096


def digest(value: Any) -> bytes:
    """A JSON value's fingerprint as a memo key: 16 bytes however large the value,
    so that a memo of big objects stays small. TypeError when it is not JSON."""
    return hashlib.blake2b(orjson.dumps(value), digest_size=16).digest()


def _added(new: Any, kind: str, prop: Schema, *, granular: bool, required: bool) -> Tree | None:
    """The node of `new` appearing where there was nothing: None or a member set."""
    key: tuple[int, bool, bool, bytes | tuple[str, ...]] | None
    if kind == "map" and not any(isinstance(v, (dict, list)) for v in new.values()):
        # A map of plain values (metadata, an object reference) owns one field per
        # key whatever the values: unique names and uids still share an entry.
        key = (id(prop), granular, required, tuple(new))
    else:
        try:
            key = (id(prop), granular, required, digest(new))
        except (TypeError, orjson.JSONEncodeError):
            key = None
    if key is not None:
        hit = _ADDED.get(key)
        if hit is not None and hit[0] is prop:
            return hit[1]
    sub_changed: Tree = {}
    _cmp_composite({} if kind == "map" else [], new, prop, sub_changed, {})
    member = granular or not required and (kind == "list" or not new or not is_struct(prop))
    node = _make(member, sub_changed)
    if key is not None:
        _ADDED[key] = (prop, node)
        if node:
            _NORMALIZED[id(node)] = (node, None)
        if len(_ADDED) > _ADDED_LIMIT:
            _, (_, dropped) = _ADDED.popitem(last=False)
            if dropped:
                _NORMALIZED.pop(id(dropped), None)
    return node


def _cmp_composite(old: Any, new: Any, prop: Schema, changed: Tree, removed: Tree) -> None:
    if isinstance(new, dict):
        _cmp_map(old, new, prop, changed, removed)
        return
    kind, keys = list_kind(prop)
    item_prop = items_of(prop)
    old_items = {item_element(v, kind, keys, item_prop, i): v for i, v in enumerate(old)}
    new_items = {item_element(v, kind, keys, item_prop, i): v for i, v in enumerate(new)}
    for element, new_item in new_items.items():
        old_item = old_items.get(element, _MISSING)
        if old_item == new_item:
            continue
        sub_changed: Tree = {}
        sub_removed: Tree = {}
        if isinstance(new_item, dict) and kind == LIST_MAP:
            _cmp_map(old_item if isinstance(old_item, dict) else {}, new_item, item_prop,
                     sub_changed, sub_removed)
        _put(changed, element, old_item is _MISSING or not isinstance(new_item, dict), sub_changed)
        _put(removed, element, False, sub_removed)
    for element, old_item in old_items.items():
        if element not in new_items:
            sub: Tree = {}
            if isinstance(old_item, dict) and kind == LIST_MAP:
                _cmp_map(old_item, {}, item_prop, {}, sub)
            _put(removed, element, True, sub)


def union(a: Tree, b: Tree) -> Tree:
    """Two sets (roots, or the children of two nodes) united; unchanged parts are shared."""
    if not b or a is b:
        return a
    if not a:
        return b
    out: Tree | None = None
    for key, y in b.items():
        if key == MEMBER:
            continue
        x = a.get(key)
        node = y if x is None else _union_node(x, y)
        if node is not x:
            if out is None:
                out = dict(a)
            out[key] = node
    return a if out is None else out


def _union_node(x: Tree, y: Tree) -> Tree:
    member = is_member(x) or is_member(y)
    kids = _kids(x)
    merged = union(kids, _kids(y))
    if merged is kids and member == is_member(x):
        return x
    return _make(member, merged) or {}


def difference(a: Tree, b: Tree) -> Tree:
    """Members of `a` that are not members of `b`, member by member (Set.Difference).

    Returns `a` itself when nothing is taken away.
    """
    if not a or not b:
        return a
    out: Tree | None = None
    for key, x in a.items():
        if key == MEMBER:
            continue
        y = b.get(key)
        if y is None:
            continue
        member = is_member(x) and not is_member(y)
        kids = _kids(x)
        rest = difference(kids, _kids(y))
        if rest is kids and member == is_member(x):
            continue
        if out is None:
            out = dict(a)
        node = _make(member, rest)
        if node is None:
            del out[key]
        else:
            out[key] = node
    return a if out is None else out


def intersection(a: Tree, b: Tree) -> Tree:
    if not a or not b:
        return {}
    out: Tree = {}
    for key, x in a.items():
        if key == MEMBER:
            continue
        y = b.get(key)
        if y is None:
            continue
        node = _make(is_member(x) and is_member(y), intersection(_kids(x), _kids(y)))
        if node is not None:
            out[key] = node
    return out


def without_fields(tree: Tree, names: tuple[str, ...]) -> Tree:
    """The set minus whole top-level fields (a recursive difference)."""
    drop = {"f:" + n for n in names}
    if drop.isdisjoint(tree):
        return tree
    return {k: v for k, v in tree.items() if k not in drop}


def normalize(tree: Tree) -> Tree:
    """Order a set as the apiserver serializes it: `.`, then fields, keys, values, indices."""
    known = _NORMALIZED.get(id(tree))
    if known is not None and known[0] is tree:
        if known[1] is None:
            _NORMALIZED[id(tree)] = (tree, _normalize(tree))
        return _NORMALIZED[id(tree)][1]  # type: ignore[return-value]
    return _normalize(tree)


def _normalize(tree: Tree) -> Tree:
    return {k: (v if k == MEMBER else normalize(v)) for k, v in sorted(tree.items(), key=_order)}


_ELEMENT_RANK = {".": 0, "f": 1, "k": 2, "v": 3, "i": 4}


def _order(entry: tuple[str, Any]) -> tuple[int, str]:
    key = entry[0]
    return _ELEMENT_RANK.get(key[0], 5), key


def members(tree: Tree) -> Iterator[tuple[str, ...]]:
    """Every member path of a set, as tuples of path elements, in serialization order."""
    for key, node in normalize(tree).items():
        if key != MEMBER:
            yield from _members((key,), node)


def _members(prefix: tuple[str, ...], node: Tree) -> Iterator[tuple[str, ...]]:
    if is_member(node):
        yield prefix
    for key, sub in node.items():
        if key != MEMBER:
            yield from _members((*prefix, key), sub)


def path_string(path: tuple[str, ...]) -> str:
    """A path as the apiserver prints it: `.spec.containers[name="c"].image`."""
    parts: list[str] = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            fields = orjson.loads(rest)
            parts.append("[" + ",".join(f"{k}={_json(v)}" for k, v in fields.items()) + "]")
        elif kind == "v":
            parts.append(f"[={_json(orjson.loads(rest))}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)
