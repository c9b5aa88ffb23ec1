"""SqliteStore beyond the contract: durability, restart, group commit, watch fan-out."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from kubelite.store.base import KV, Event
from kubelite.store.errors import Compacted, RevisionMismatch, StoreError
from kubelite.store.sqlite import Database, SqliteStore
from kubelite.store.watchers import WatchTooSlow


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(events), 5) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[str, str, bytes, int, bytes | None]]:
    return [(e.type, e.key, e.value, e.revision, e.prev) for e in events]


# Creates keys from 50 concurrent callers, printing each key once acknowledged.
CHILD = """
import asyncio, os, sys
from kubelite.store.sqlite import SqliteStore

async def main():
    store = SqliteStore(sys.argv[1])
    await store.start()
    async def caller(c):
        for i in range(100_000):
            key = f"/k/{c}/{i}"
            await store.create(key, b"x" * 2048)
            os.write(1, key.encode() + b"\\n")
    await asyncio.gather(*(caller(c) for c in range(50)))

asyncio.run(main())
"""


async def test_every_acknowledged_write_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 2_000:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line, "the child exited early"
            acknowledged.append(line.decode().strip())
    finally:
        child.send_signal(signal.SIGKILL)
    rest = await child.stdout.read()
    acknowledged += rest.decode().split()
    assert await child.wait() == -signal.SIGKILL

    async with SqliteStore(path) as store:
        stored = {kv.key for kv in (await store.list("/k/")).items}
        assert set(acknowledged) <= stored
        # Nothing acknowledged was lost and revisions stayed dense.
        assert store.revision == len(stored)


async def test_restart_recovers_state_revision_and_history(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteStore(path, compact_interval=0) as store:
        a = await store.create("/a", b"a1")
        await store.create("/b", b"b1")
        await store.update("/a", b"a2")
        await store.delete("/b")
        revision = store.revision
    async with SqliteStore(path, compact_interval=0) as store:
        assert store.revision == revision
        assert (await store.get("/a")).value == b"a2"  # type: ignore[union-attr]
        assert await store.get("/b") is None
        assert (await store.create("/c", b"c1")).mod_revision == revision + 1
        assert (await store.update("/a", b"a3")).create_revision == a.create_revision
        assert summary(await take(store.watch("/", since_revision=a.mod_revision), 5)) == [
            ("ADDED", "/b", b"b1", 2, None),
            ("MODIFIED", "/a", b"a2", 3, b"a1"),
            ("DELETED", "/b", b"b1", 4, b"b1"),
            ("ADDED", "/c", b"c1", 5, None),
            ("MODIFIED", "/a", b"a3", 6, b"a2"),
        ]


async def test_revision_does_not_go_back_after_compacting_everything(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteStore(path, compact_interval=0) as store:
        await store.create("/a", b"v")
        await store.delete("/a")
        await store.compact(store.revision)
    async with SqliteStore(path, compact_interval=0) as store:
        assert (store.revision, store.compacted_revision) == (2, 2)
        assert (await store.create("/a", b"v")).mod_revision == 3
        with pytest.raises(Compacted):
            await take(store.watch("/", since_revision=1), 1)


@pytest.mark.parametrize("restart", [False, True], ids=["live store", "after restart"])
async def test_watch_backlog_older_than_the_window_comes_from_sqlite(
    tmp_path: Path, restart: bool
) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path, compact_interval=0, window=5)
    await store.start()
    for i in range(30):
        await store.create(f"/k/{i % 3}/{i}", b"%d" % i)
        await store.update(f"/k/{i % 3}/{i}", b"%d+" % i)
    if restart:
        await store.close()
        store = SqliteStore(path, compact_interval=0, window=5)
        await store.start()
    events = await take(store.watch("/k/1/", since_revision=2), 20)
    assert [e.revision for e in events] == [r for r in range(3, 61) if (r - 1) // 2 % 3 == 1]
    assert all(e.prev == e.value[:-1] for e in events if e.type == "MODIFIED")
    assert {e.type for e in events} == {"ADDED", "MODIFIED"}
    await store.close()


async def test_readers_never_see_an_uncommitted_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    original = Database.commit

    def slow_commit(self: Database, rows: list) -> None:
        entered.set()
        release.wait(5)
        original(self, rows)

    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        monkeypatch.setattr(Database, "commit", slow_commit)
        watch = store.watch("/", since_revision=0)
        pending_event = asyncio.create_task(take(watch, 1))
        create = asyncio.create_task(store.create("/a", b"v"))
        assert await asyncio.to_thread(entered.wait, 5)
        assert await store.get("/a") is None
        assert (await store.list("/")).items == []
        assert store.revision == 0
        assert not pending_event.done()
        release.set()
        assert (await create).mod_revision == 1
        assert [e.key for e in await pending_event] == ["/a"]


async def sealed() -> None:
    """Lets writes just begun be staged, in one loop iteration, and their batch be
    sealed for the committer, in the next."""
    for _ in range(2):
        await asyncio.sleep(0)


class GatedCommits:
    """Database.commit that holds each batch until the test lets it go, and fails
    the batches the test marks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.failing: set[int] = set()
        original = Database.commit

        def commit(db: Database, rows: list) -> None:
            self.batches.append([row[1] for row in rows])
            self.entered.release()
            assert self.release.acquire(timeout=5)
            if len(self.batches) in self.failing:
                raise sqlite3.OperationalError("disk I/O error")
            original(db, rows)

        monkeypatch.setattr(Database, "commit", commit)

    def wait_entered(self) -> bool:
        """Called on the loop itself: blocks it, as a busy event loop would."""
        return self.entered.acquire(timeout=5)

    async def held(self, write: Coroutine[Any, Any, KV]) -> asyncio.Task[KV]:
        """Starts `write` and returns once its commit is under way, held."""
        task = asyncio.create_task(write)
        assert await asyncio.to_thread(self.wait_entered)
        return task


async def test_a_failed_commit_fails_its_batch_and_the_writes_staged_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        await store.create("/a", b"v")
        gate = GatedCommits(monkeypatch)
        gate.failing.add(1)
        first = await gate.held(store.update("/a", b"lost"))
        # checked against the failing write, so it cannot outlive it
        after = asyncio.create_task(store.update("/a", b"lost too", expected_revision=2))
        await asyncio.sleep(0)
        gate.release.release()
        for write in (first, after):
            with pytest.raises(StoreError, match="disk I/O error"):
                await write
        assert gate.batches == [["/a"]]  # the second was never committed
        monkeypatch.undo()
        assert (await store.get("/a")).value == b"v"  # type: ignore[union-attr]
        assert store.revision == 1
        assert (await store.update("/a", b"w")).mod_revision == 2
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as reopened:
        assert (await reopened.get("/a")).value == b"w"  # type: ignore[union-attr]


async def test_a_check_lost_to_a_staged_write_is_answered_once_that_write_is_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        await store.create("/a", b"v")
        gate = GatedCommits(monkeypatch)
        winner = await gate.held(store.update("/a", b"winner", expected_revision=1))
        # Read-modify-write retries (guaranteed updates) read again after a conflict:
        # answered at once, they would read the old value again and spin.
        loser = asyncio.create_task(store.update("/a", b"loser", expected_revision=1))
        await asyncio.sleep(0.05)
        assert not loser.done()
        gate.release.release()
        with pytest.raises(RevisionMismatch):
            await loser
        assert (await store.get("/a")).value == b"winner"  # type: ignore[union-attr]
        assert (await winner).mod_revision == 2
        # against the committed state, the answer comes at once
        with pytest.raises(RevisionMismatch):
            await store.update("/a", b"late", expected_revision=1)


async def test_the_writes_of_one_loop_iteration_commit_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = Database.commit

    def commit(db: Database, rows: list) -> None:
        sizes.append(len(rows))
        original(db, rows)

    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        monkeypatch.setattr(Database, "commit", commit)
        written = await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(50)))
        assert sizes == [50]
        assert sorted(kv.mod_revision for kv in written) == list(range(1, 51))


async def test_commits_go_on_while_the_event_loop_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        gate = GatedCommits(monkeypatch)
        first = asyncio.create_task(store.create("/first", b"v"))
        await sealed()
        assert gate.wait_entered()
        second = asyncio.create_task(store.create("/second", b"v"))
        await sealed()  # from here on the loop does not come back
        gate.release.release()
        # The next commit begins with the loop still blocked: it does not wait for
        # the loop to learn that the one before it returned.
        assert gate.wait_entered()
        assert gate.batches == [["/first"], ["/second"]]
        gate.release.release()
        assert (await first).mod_revision == 1
        assert (await second).mod_revision == 2


async def test_a_key_created_and_deleted_in_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        watch = store.watch("/", since_revision=0)
        gate = GatedCommits(monkeypatch)
        held = await gate.held(store.create("/held", b"v"))
        created = asyncio.create_task(store.create("/x", b"v"))
        deleted = asyncio.create_task(store.delete("/x"))
        await asyncio.sleep(0)
        for _ in range(2):
            gate.release.release()
        await asyncio.gather(held, created, deleted)
        assert gate.batches == [["/held"], ["/x", "/x"]]
        assert await store.get("/x") is None
        assert [(e.type, e.key) for e in await take(watch, 3)] == [
            ("ADDED", "/held"), ("ADDED", "/x"), ("DELETED", "/x")]


async def test_close_flushes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    await store.start()
    writes = [asyncio.create_task(store.create(f"/q/{i}", b"v")) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert len({(await w).mod_revision for w in writes}) == 50
    with pytest.raises(StoreError):
        await store.create("/late", b"v")
    await store.close()
    async with SqliteStore(path) as reopened:
        assert len((await reopened.list("/q/")).items) == 50


async def test_a_slow_watcher_blocks_neither_writers_nor_other_watchers(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0, watch_buffer=50) as store:
        slow = store.watch("/", since_revision=0)
        fast = store.watch("/", since_revision=0)
        await store.create("/first", b"v")
        await take(slow, 1)  # registered, then never read again while writes go on

        async def drain() -> list[Event]:
            # Reads everything buffered without yielding to the loop in between.
            events = []
            async for event in fast:
                events.append(event)
                if len(events) == 201:
                    return events
            return events

        received = asyncio.create_task(drain())
        # Batches of 20 concurrent writers: each group commit publishes at most 20
        # events at once, well within the fast watcher's buffer.
        for batch in range(10):
            await asyncio.wait_for(
                asyncio.gather(*(store.create(f"/k/{batch}/{i}", b"v") for i in range(20))), 5
            )
        assert [e.revision for e in await received] == list(range(1, 202))
        with pytest.raises(WatchTooSlow) as raised:
            await take(slow, 1)
        assert isinstance(raised.value, Compacted)
        assert raised.value.requested == 1


async def test_many_watchers_each_get_only_their_prefix(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        watches = [store.watch(f"/pods/ns-{w}/", since_revision=0) for w in range(300)]
        # Variable-length prefixes too, including the empty one.
        everything = store.watch("", since_revision=0)
        tasks = [asyncio.create_task(take(w, 2)) for w in watches]
        all_task = asyncio.create_task(take(everything, 600))
        await asyncio.sleep(0.01)
        await asyncio.gather(*(store.create(f"/pods/ns-{i % 300}/p{i}", b"v") for i in range(600)))
        for w, task in enumerate(tasks):
            assert [e.key for e in await task] == [f"/pods/ns-{w}/p{w}", f"/pods/ns-{w}/p{w + 300}"]
        assert len(await all_task) == 600


async def test_background_compaction_keeps_the_newest_revisions(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0.02, compact_keep=10) as store:
        await store.create("/a", b"0")
        for i in range(1, 50):
            await store.update("/a", b"%d" % i)
        for _ in range(100):
            if store.compacted_revision == 40:
                break
            await asyncio.sleep(0.02)
        assert store.compacted_revision == 40
        assert len(await take(store.watch("/", since_revision=40), 10)) == 10


async def test_file_stays_bounded_under_update_churn(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    sizes = []
    for _ in range(3):
        async with SqliteStore(path, compact_interval=0) as store:
            if store.revision == 0:
                await asyncio.gather(*(store.create(f"/k/{i}", b"v") for i in range(20)))
            for _round in range(100):
                await asyncio.gather(
                    *(store.update(f"/k/{i}", os.urandom(2048)) for i in range(20))
                )
            await store.compact(store.revision)
        sizes.append(path.stat().st_size)
    assert sizes[2] <= sizes[0] * 1.1


async def test_lifecycle_is_idempotent(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.start()
    await store.start()
    await store.create("/a", b"v")
    await store.close()
    await store.close()
    with pytest.raises(StoreError):
        await store.get("/a")
    with pytest.raises(StoreError):
        await store.start()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_history_matches_a_model_across_compactions_and_restarts(
    tmp_path: Path, seed: int
) -> None:
    """Random writes, compactions and restarts; every revision still listable and the
    watch replay must equal what a plain dict model says."""
    rng = random.Random(seed)
    path = tmp_path / "store.db"
    model: dict[str, bytes] = {}
    states: dict[int, dict[str, bytes]] = {0: {}}
    store = SqliteStore(path, compact_interval=0, window=7)
    await store.start()
    for step in range(300):
        key = f"/k/{rng.randrange(8)}"
        if key not in model:
            await store.create(key, b"%d" % step)
            model[key] = b"%d" % step
        elif rng.random() < 0.3:
            await store.delete(key)
            del model[key]
        else:
            await store.update(key, b"%d" % step)
            model[key] = b"%d" % step
        states[store.revision] = dict(model)
        if rng.random() < 0.03:
            await store.compact(store.revision - rng.randrange(20))
        if rng.random() < 0.02:
            await store.close()
            store = SqliteStore(path, compact_interval=0, window=7)
            await store.start()
    compacted = store.compacted_revision
    for revision in range(compacted + 1, store.revision + 1):
        listed = await store.list("/k/", revision=revision, limit=3 if revision % 2 else None)
        expected = sorted(states[revision].items())[: 3 if revision % 2 else None]
        assert [(kv.key, kv.value) for kv in listed.items] == expected, revision
    replay = await take(store.watch("/k/", since_revision=compacted), store.revision - compacted)
    for event in replay:
        before, after = states[event.revision - 1], states[event.revision]
        assert event.value == after.get(event.key, before.get(event.key))
        assert event.prev == before.get(event.key)
    await store.close()


async def test_a_watcher_behind_gets_what_was_buffered_in_one_batch(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "store.db", compact_interval=0) as store:
        await store.create("/pods/old", b"v")
        batches = store.watch_batches("/pods/", since_revision=0)
        # the history first, as it stands when the watch begins
        assert [e.key for e in await anext(batches)] == ["/pods/old"]
        live = asyncio.create_task(anext(batches))
        await asyncio.sleep(0.05)
        await store.create("/pods/a", b"v")
        assert [e.key for e in await asyncio.wait_for(live, 5)] == ["/pods/a"]
        # not read while three writes land: all three come as one batch, in order
        await asyncio.gather(*(store.create(f"/pods/{n}", b"v") for n in "bcd"))
        await store.create("/other/x", b"v")
        batch = await asyncio.wait_for(anext(batches), 5)
        assert sorted(e.key for e in batch) == ["/pods/b", "/pods/c", "/pods/d"]
        assert [e.revision for e in batch] == sorted(e.revision for e in batch)
        await batches.aclose()  # type: ignore[attr-defined]
