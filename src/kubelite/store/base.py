"""The Store contract: an etcd-like revisioned key-value store.

Keys are strings such as `/apps/deployments/default/web`; values are opaque
bytes (the API layer keeps serialised objects there and injects
`metadata.resourceVersion` from `mod_revision` when it reads them). One global
revision counter orders every write, as in etcd: each create, update or delete
gets the next revision. History is kept so that a list can be served at an
older revision and a watch can resume from one, until compaction drops it.

Every backend passes the contract tests in tests/store/test_contract.py.

Errors (see store/errors.py):

    StoreError
    ├── KeyExists          create of a key that exists
    ├── KeyNotFound        update or delete of a key that does not exist
    ├── RevisionMismatch   update or delete whose expected revision is not current
    └── Compacted          list or watch at a revision older than the compaction point
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(slots=True)
class Event:
    """One committed change. For DELETED, `value` is the last value before deletion
    and `revision` the revision of the deletion. `prev` is the value before the
    change when the backend still knows it (None for ADDED)."""

    type: EventType
    key: str
    value: bytes
    revision: int
    prev: bytes | None = None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KV]
    # The revision the list was served at.
    revision: int
    # True when `limit` cut the list short; continue after items[-1].key.
    more: bool


class Store(Protocol):
    async def start(self) -> None:
        """Open the backend; after it, reads and writes work."""

    async def close(self) -> None:
        """Flush acknowledged writes, end every watch, release files."""

    @property
    def revision(self) -> int:
        """The newest committed revision (0 for an empty store)."""

    @property
    def compacted_revision(self) -> int:
        """History at or below this revision is gone."""

    async def get(self, key: str) -> KV | None: ...

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> ListResult:
        """Keys starting with `prefix`, in key order, as of `revision` (None: newest).
        Raises Compacted for a revision at or below the compaction point."""

    async def create(self, key: str, value: bytes) -> KV:
        """Returns once the write is durable. Raises KeyExists."""

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        """Replace the value; with expected_revision, only if it is the key's mod_revision.
        Returns once durable. Raises KeyNotFound, RevisionMismatch."""

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        """Remove the key; returns the last value with mod_revision = the deletion revision.
        Raises KeyNotFound, RevisionMismatch."""

    def watch(self, prefix: str, *, since_revision: int) -> AsyncIterator[Event]:
        """Events for keys under `prefix` with revision > since_revision, in order,
        then live ones until the iterator is closed or the store closes.
        Raises Compacted (on first iteration) when since_revision is too old."""

    def watch_batches(self, prefix: str, *, since_revision: int) -> AsyncIterator[list[Event]]:
        """The events of `watch`, in lists of those at hand when the consumer asks:
        a consumer behind by many events gets them in one piece."""

    async def compact(self, revision: int) -> None:
        """Drop history at or below `revision` (the newest value of each key is kept)."""
