"""The Store contract, run against every backend in BACKENDS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelite.store.base import KV, Event, Store
from kubelite.store.errors import (
    Compacted,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    StoreError,
)
from kubelite.store.sqlite import SqliteStore

# Each backend: a factory given a fresh directory. Background compaction is off so
# that tests decide what history exists.
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp: SqliteStore(tmp / "store.db", compact_interval=0),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = BACKENDS[request.param](tmp_path)
    await backend.start()
    yield backend
    await backend.close()


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(events), 5) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[str, str, bytes, int, bytes | None]]:
    return [(e.type, e.key, e.value, e.revision, e.prev) for e in events]


async def test_empty_store(store: Store) -> None:
    assert store.revision == 0
    assert await store.get("/a") is None
    result = await store.list("/")
    assert (result.items, result.revision, result.more) == ([], 0, False)


async def test_create_get_update_delete(store: Store) -> None:
    created = await store.create("/pods/default/web", b"v1")
    assert created == KV("/pods/default/web", b"v1", created.mod_revision, created.mod_revision)
    assert store.revision == created.mod_revision
    assert await store.get("/pods/default/web") == created

    updated = await store.update("/pods/default/web", b"v2")
    assert updated == KV(
        "/pods/default/web", b"v2", created.create_revision, created.mod_revision + 1
    )
    assert await store.get("/pods/default/web") == updated

    deleted = await store.delete("/pods/default/web")
    assert deleted == KV(
        "/pods/default/web", b"v2", created.create_revision, updated.mod_revision + 1
    )
    assert await store.get("/pods/default/web") is None
    assert store.revision == deleted.mod_revision

    again = await store.create("/pods/default/web", b"v3")
    assert again.create_revision == again.mod_revision == deleted.mod_revision + 1


@dataclass(frozen=True)
class ErrorCase:
    id: str
    op: str
    key: str
    expected_revision: int | None
    error: type[StoreError]


ERROR_CASES = [
    ErrorCase("create of an existing key", "create", "/k", None, KeyExists),
    ErrorCase("update of a missing key", "update", "/missing", None, KeyNotFound),
    ErrorCase("delete of a missing key", "delete", "/missing", None, KeyNotFound),
    ErrorCase("update with a stale revision", "update", "/k", 99, RevisionMismatch),
    ErrorCase("delete with a stale revision", "delete", "/k", 99, RevisionMismatch),
    ErrorCase("update of a missing key with a revision", "update", "/missing", 1, KeyNotFound),
]


async def _apply(store: Store, op: str, key: str, expected_revision: int | None) -> KV:
    if op == "create":
        return await store.create(key, b"new")
    if op == "update":
        return await store.update(key, b"new", expected_revision=expected_revision)
    return await store.delete(key, expected_revision=expected_revision)


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.id)
async def test_precondition_errors_leave_the_store_unchanged(store: Store, case: ErrorCase) -> None:
    existing = await store.create("/k", b"old")
    with pytest.raises(case.error) as raised:
        await _apply(store, case.op, case.key, case.expected_revision)
    if isinstance(raised.value, RevisionMismatch):
        assert (raised.value.expected, raised.value.actual) == (99, existing.mod_revision)
    assert await store.get("/k") == existing
    assert store.revision == existing.mod_revision


@pytest.mark.parametrize("op", ["update", "delete"])
async def test_matching_expected_revision_succeeds(store: Store, op: str) -> None:
    existing = await store.create("/k", b"old")
    result = await _apply(store, op, "/k", existing.mod_revision)
    assert result.mod_revision == existing.mod_revision + 1


async def _fill(store: Store, keys: list[str]) -> dict[str, KV]:
    return {key: await store.create(key, key.encode()) for key in keys}


async def test_list_by_prefix_in_key_order(store: Store) -> None:
    await _fill(store, ["/b/2", "/a/1", "/b/10", "/ab/1", "/b/1", "/c"])
    result = await store.list("/b/")
    assert [kv.key for kv in result.items] == ["/b/1", "/b/10", "/b/2"]
    assert (result.revision, result.more) == (store.revision, False)
    assert [kv.key for kv in (await store.list("/a")).items] == ["/a/1", "/ab/1"]
    assert [kv.key for kv in (await store.list("")).items] == [
        "/a/1",
        "/ab/1",
        "/b/1",
        "/b/10",
        "/b/2",
        "/c",
    ]


async def _pages(store: Store, prefix: str, limit: int, revision: int | None) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = await store.list(prefix, revision=revision, start_after=after, limit=limit)
        pages.append([kv.key for kv in page.items])
        if not page.more:
            return pages
        after = page.items[-1].key


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (2, [["/p/0", "/p/1"], ["/p/2", "/p/3"], ["/p/4"]]),
        (5, [["/p/0", "/p/1", "/p/2", "/p/3", "/p/4"]]),
        (6, [["/p/0", "/p/1", "/p/2", "/p/3", "/p/4"]]),
    ],
    ids=["uneven pages", "exact fit", "larger than the list"],
)
async def test_list_paging(store: Store, limit: int, expected: list[list[str]]) -> None:
    await _fill(store, [f"/p/{i}" for i in range(5)] + ["/q/0", "/o/9"])
    assert await _pages(store, "/p/", limit, None) == expected
    # The same pages at the revision of the fill, after later changes.
    at = store.revision
    await store.delete("/p/0")
    await store.create("/p/00", b"late")
    assert await _pages(store, "/p/", limit, at) == expected


async def test_list_at_an_older_revision(store: Store) -> None:
    first = await store.create("/x/a", b"a1")
    await store.create("/x/b", b"b1")
    at = store.revision
    await store.update("/x/a", b"a2")
    await store.delete("/x/b")
    await store.create("/x/c", b"c1")

    old = await store.list("/x/", revision=at)
    assert old.revision == at
    assert [(kv.key, kv.value, kv.mod_revision) for kv in old.items] == [
        ("/x/a", b"a1", first.mod_revision),
        ("/x/b", b"b1", at),
    ]
    newest = await store.list("/x/")
    assert [(kv.key, kv.value) for kv in newest.items] == [("/x/a", b"a2"), ("/x/c", b"c1")]


async def test_compaction_keeps_newest_values_and_drops_history(store: Store) -> None:
    await store.create("/k/a", b"a1")
    await store.create("/k/b", b"b1")
    await store.create("/k/gone", b"g")
    await store.update("/k/a", b"a2")
    await store.delete("/k/gone")
    middle = store.revision
    await store.update("/k/b", b"b2")
    await store.compact(middle)
    assert store.compacted_revision == middle

    assert [(kv.key, kv.value) for kv in (await store.list("/k/")).items] == [
        ("/k/a", b"a2"),
        ("/k/b", b"b2"),
    ]
    assert (await store.get("/k/a")).value == b"a2"  # type: ignore[union-attr]
    # History above the compaction point survives.
    above = await store.list("/k/", revision=middle + 1)
    assert [(kv.key, kv.value) for kv in above.items] == [("/k/a", b"a2"), ("/k/b", b"b2")]
    events = await take(store.watch("/k/", since_revision=middle), 1)
    assert summary(events) == [("MODIFIED", "/k/b", b"b2", middle + 1, b"b1")]


@pytest.mark.parametrize("distance", [0, 1, 3], ids=["at the point", "one below", "far below"])
async def test_list_too_old_raises_compacted(store: Store, distance: int) -> None:
    for i in range(5):
        await store.create(f"/k/{i}", b"v")
    await store.compact(4)
    with pytest.raises(Compacted) as raised:
        await store.list("/k/", revision=4 - distance)
    assert (raised.value.requested, raised.value.compacted) == (4 - distance, 4)


@pytest.mark.parametrize("since", [0, 3], ids=["from the start", "one below"])
async def test_watch_too_old_raises_compacted(store: Store, since: int) -> None:
    for i in range(5):
        await store.create(f"/k/{i}", b"v")
    await store.compact(4)
    with pytest.raises(Compacted):
        await take(store.watch("/k/", since_revision=since), 1)


async def test_watch_replays_then_streams_live(store: Store) -> None:
    await store.create("/w/a", b"a1")
    since = store.revision
    await store.update("/w/a", b"a2")
    await store.create("/w/b", b"b1")
    events = store.watch("/w/", since_revision=since)
    backlog = await take(events, 2)
    assert summary(backlog) == [
        ("MODIFIED", "/w/a", b"a2", since + 1, b"a1"),
        ("ADDED", "/w/b", b"b1", since + 2, None),
    ]
    live = asyncio.create_task(take(events, 2))
    await asyncio.sleep(0.01)
    await store.update("/w/b", b"b2")
    await store.delete("/w/a")
    assert summary(await live) == [
        ("MODIFIED", "/w/b", b"b2", since + 3, b"b1"),
        ("DELETED", "/w/a", b"a2", since + 4, b"a2"),
    ]
    await events.aclose()  # type: ignore[attr-defined]


async def test_watch_sees_only_its_prefix(store: Store) -> None:
    start = store.revision
    ours = store.watch("/ns/a/", since_revision=start)
    first = asyncio.create_task(take(ours, 2))
    await asyncio.sleep(0.01)
    for key in ["/ns/b/x", "/ns/a/x", "/ns/ab/x", "/ns/", "/ns/a/y", "/ns/b/y"]:
        await store.create(key, b"v")
    assert [e.key for e in await first] == ["/ns/a/x", "/ns/a/y"]
    # Replayed from the start, the same two and nothing else.
    replay = store.watch("/ns/a/", since_revision=start)
    assert [e.key for e in await take(replay, 2)] == ["/ns/a/x", "/ns/a/y"]
    nothing = asyncio.create_task(take(replay, 1))
    await store.create("/ns/c/z", b"v")
    await asyncio.sleep(0.05)
    assert not nothing.done()
    nothing.cancel()


async def test_watch_from_a_future_revision_skips_until_then(store: Store) -> None:
    await store.create("/f/0", b"v")
    events = store.watch("/f/", since_revision=store.revision + 2)
    pending = asyncio.create_task(take(events, 1))
    for i in range(1, 4):
        await store.create(f"/f/{i}", b"v")
    assert [(e.key, e.revision) for e in await pending] == [("/f/3", 4)]


async def test_delete_events_carry_the_last_value(store: Store) -> None:
    since = store.revision
    await store.create("/d/a", b"a1")
    await store.update("/d/a", b"a2")
    deleted = await store.delete("/d/a")
    events = await take(store.watch("/d/", since_revision=since), 3)
    assert events[-1].type == "DELETED"
    assert (events[-1].value, events[-1].revision) == (b"a2", deleted.mod_revision)


async def test_watch_ends_when_the_store_closes(store: Store) -> None:
    async def drain() -> list[Event]:
        return [event async for event in store.watch("/", since_revision=0)]

    task = asyncio.create_task(drain())
    await store.create("/a", b"v")
    await asyncio.sleep(0.01)
    await store.close()
    assert [e.key for e in await asyncio.wait_for(task, 5)] == ["/a"]


async def test_concurrent_creates_get_distinct_increasing_revisions(store: Store) -> None:
    base = store.revision
    results = await asyncio.gather(*(store.create(f"/c/{i}", b"v%d" % i) for i in range(100)))
    assert sorted(kv.mod_revision for kv in results) == list(range(base + 1, base + 101))
    assert store.revision == base + 100
    for i, kv in enumerate(results):
        assert await store.get(f"/c/{i}") == kv


async def test_concurrent_conflicting_writes_have_one_winner(store: Store) -> None:
    creates = await asyncio.gather(
        *(store.create("/one", b"%d" % i) for i in range(10)), return_exceptions=True
    )
    winners = [r for r in creates if isinstance(r, KV)]
    assert len(winners) == 1
    assert all(isinstance(r, KeyExists) for r in creates if not isinstance(r, KV))
    current = winners[0].mod_revision
    updates = await asyncio.gather(
        *(store.update("/one", b"u%d" % i, expected_revision=current) for i in range(10)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, KV) for r in updates) == 1
    assert all(isinstance(r, RevisionMismatch) for r in updates if not isinstance(r, KV))
