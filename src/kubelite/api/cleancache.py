"""Values a check already found nothing wrong in, by their encoded bytes.

A burst of alike writes (a Deployment's pods, a scheduler's Events) repeats the
same specs, and walking them again is most of the cost of validating them. Only
clean results are kept: findings name the paths they were found at. Each entry
keeps the object its key names by id (a schema node), so that a reused id can
never be mistaken for it.
"""

from __future__ import annotations

from typing import Any

import orjson

DEFAULT_LIMIT = 4096
# orjson writes a datetime (YAML makes them) as the string it resembles, and a NaN
# or an infinity as null: a value seen clean must not vouch for one of those.
_STRICT = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
           | orjson.OPT_PASSTHROUGH_SUBCLASS)
_ABSENT = object()
Key = tuple[int, str, bytes]


def json_key(value: Any) -> bytes | None:
    """`value` as JSON when that names it exactly, None otherwise. No nulls either:
    callers key values whose nulls are gone, so a null stands for a NaN."""
    try:
        encoded = orjson.dumps(value, option=_STRICT)
    except (TypeError, orjson.JSONEncodeError):
        return None
    return None if b"null" in encoded else encoded


class CleanCache:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._clean: dict[Key, object] = {}

    def key(self, value: Any, *, owner: object = None, tag: str = "") -> Key | None:
        """The key of `value` checked against `owner` (a schema node, say) at `tag` (a
        path, say); None when the value has no JSON form to key it by."""
        encoded = json_key(value)
        return None if encoded is None else (id(owner), tag, encoded)

    def is_clean(self, key: Key | None, *, owner: object = None) -> bool:
        return key is not None and self._clean.get(key, _ABSENT) is owner

    def add(self, key: Key | None, *, owner: object = None) -> None:
        if key is None:
            return
        if len(self._clean) >= self.limit:
            self._clean.clear()
        self._clean[key] = owner
