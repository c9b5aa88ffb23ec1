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
_ABSENT = object()
Key = tuple[int, str, bytes]


class CleanCache:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._clean: dict[Key, object] = {}

    def key(self, value: Any, *, owner: object = None, tag: str = "") -> Key | None:
        """The key of `value` checked against `owner` (a schema node, say) at `tag` (a
        path, say); None when the value has no JSON form to key it by."""
        try:
            return id(owner), tag, orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            return None

    def is_clean(self, key: Key | None, *, owner: object = None) -> bool:
        return key is not None and self._clean.get(key, _ABSENT) is owner

    def add(self, key: Key | None, *, owner: object = None) -> None:
        if key is None:
            return
        if len(self._clean) >= self.limit:
            self._clean.clear()
        self._clean[key] = owner
