"""The embedded default store: etcd's MVCC model on one SQLite file.

Every create, update and delete is one row of `revs` at the next global revision;
a delete row (a tombstone) keeps the last value so that its DELETED event can carry
it. The current state lives in memory as bytes, so gets, lists and watches at the
newest revision never touch SQLite; older lists and watch backlogs older than the
in-memory event window read SQLite from a reader thread.

Writes are group-committed by a committer thread that loops on its own. A write is
checked on the event loop against the committed state plus every write staged
before it, gets the next revision and joins the batch of the current loop iteration,
which is sealed once the iteration's callbacks have run. As soon as its previous
commit is done, the committer commits everything sealed meanwhile as one INSERT
statement (WAL, synchronous=FULL): the busier the store, the fuller the commits.
Commits thus follow each other without waiting for a busy event loop to come back
to the store, which capped writes at one commit per loop round trip (measured: 60
writes per 19 ms cycle, 6 ms of it the commit itself). The in-memory state, the
revision and the watchers see a batch only once the loop learns that its commit
returned, in commit order, and each caller is answered only then. A commit holds
at most `_MAX_BATCH` writes.

A check that fails against a staged write is answered with the filling batch, once
that write is visible: the caller's next read shows what it lost to. A failed commit
fails its writes and every write staged after them, since those were checked against
them; the revision then continues from the last commit.

Compaction deletes superseded rows and tombstones at or below the compaction point,
in slices of `_COMPACT_SLICE` revisions, each a job of the committer thread between
two commits. The file does not shrink: freed pages go to SQLite's freelist and are
reused by later writes, which bounds the file by the peak of retained history (no
VACUUM, no auto_vacuum).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from sortedcontainers import SortedDict

from kubelite.store.base import KV, Event, ListResult
from kubelite.store.errors import (
    Compacted,
    KeyExists,
    KeyNotFound,
    RevisionMismatch,
    StoreError,
)
from kubelite.store.watchers import EventWindow, Fanout, flatten, stream
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

_Op = Literal["create", "update", "delete"]

_COMPACT_SLICE = 5_000
# Bounds commit latency and how many events one publish puts in a watcher's buffer.
_MAX_BATCH = 1_000
_BACKLOG_CHUNK = 1_000


# --- SQLite access; every Database method runs in the thread that opened it.

Row = tuple[int, str, int, bytes, bool]  # rev, key, create_rev, value, deleted

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS revs (rev INTEGER PRIMARY KEY, key TEXT NOT NULL,"
    " create_rev INTEGER NOT NULL, value BLOB NOT NULL, deleted INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS revs_key_rev ON revs (key, rev)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
# For a MODIFIED row, the value of the key's previous row. It survives compaction:
# the previous row of a row above the compaction point is the newest at or below it.
_EVENTS = (
    "SELECT r.rev, r.key, r.create_rev, r.value, r.deleted,"
    " CASE WHEN r.deleted = 0 AND r.create_rev < r.rev THEN (SELECT p.value FROM revs p"
    " WHERE p.key = r.key AND p.rev < r.rev ORDER BY p.rev DESC LIMIT 1) END"
    " FROM revs r WHERE r.rev > ? AND r.rev <= ? AND {keys} ORDER BY r.rev LIMIT ?"
)
_LIST_AT = (
    "SELECT r.key, r.value, r.create_rev, r.rev FROM revs r"
    " WHERE {keys} AND r.rev <= ? AND r.deleted = 0 AND r.rev ="
    " (SELECT MAX(p.rev) FROM revs p WHERE p.key = r.key AND p.rev <= ?)"
    " ORDER BY r.key LIMIT ?"
)
# Compaction from `lo` to `hi`: after the previous one, each key has at most one row at
# or below `lo`, so only keys written in (lo, hi] can have rows to drop.
_COMPACT = (
    "DELETE FROM revs WHERE key IN (SELECT key FROM revs WHERE rev > ? AND rev <= ?)"
    " AND rev <= ? AND (deleted = 1 OR rev <"
    " (SELECT MAX(p.rev) FROM revs p WHERE p.key = revs.key AND p.rev <= ?))"
)


@dataclass(slots=True)
class Loaded:
    revision: int
    compacted: int
    state: list[KV]
    window: list[Event]


def _key_range(prefix: str, start_after: str | None = None) -> tuple[str, list[str]]:
    """SQL condition on r.key for keys under `prefix` (and after `start_after`).
    TEXT compares as UTF-8 bytes, which orders like Python's str comparison."""
    clauses: list[str] = []
    params: list[str] = []
    if prefix:
        clauses.append("r.key >= ?")
        params.append(prefix)
        end = _prefix_end(prefix)
        if end is not None:
            clauses.append("r.key < ?")
            params.append(end)
    if start_after is not None:
        clauses.append("r.key > ?")
        params.append(start_after)
    return (" AND ".join(clauses) or "1"), params


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            # Surrogates cannot be encoded in UTF-8; skip over them.
            return prefix[:-1] + chr(0xE000 if last == 0xD7FF else last + 1)
        prefix = prefix[:-1]
    return None


class Database:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str, readonly: bool) -> Database:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if readonly:
                conn.execute("PRAGMA query_only = 1")
            else:
                # Values are a few KB: 16 KiB pages hold several rows each, where the
                # default 4 KiB pages would hold one and leave half of each page empty.
                # It only takes effect when the file is new.
                conn.execute("PRAGMA page_size = 16384")
                conn.execute("PRAGMA journal_mode = WAL")
                # FULL syncs the WAL on every commit: acknowledged means on disk.
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA journal_size_limit = 67108864")
                for statement in _SCHEMA:
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    def load(self, window: int) -> Loaded:
        conn = self._conn
        (newest,) = conn.execute("SELECT COALESCE(MAX(rev), 0) FROM revs").fetchone()
        row = conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        compacted = row[0] if row else 0
        # A compaction up to the newest revision can remove every row, tombstones included.
        revision = max(newest, compacted)
        events, _ = self.events("", max(compacted, revision - window), revision, None)
        newest_values = {event.revision: event.value for event in events}
        state = [
            KV(key, newest_values.get(rev, value), create_rev, rev)
            for key, create_rev, value, rev, deleted in conn.execute(
                "SELECT key, create_rev, value, MAX(rev), deleted FROM revs GROUP BY key"
            )
            if not deleted
        ]
        return Loaded(revision=revision, compacted=compacted, state=state, window=events)

    def commit(self, rows: list[Row]) -> None:
        # One statement is one transaction and gives the GIL up once: executemany
        # steps once per row, and each step has to win the GIL back from the event loop.
        self._conn.execute(
            "INSERT INTO revs VALUES " + ",".join(("(?, ?, ?, ?, ?)",) * len(rows)),
            [value for row in rows for value in row],
        )

    def compact(self, lo: int, hi: int) -> None:
        with self._transaction() as conn:
            conn.execute(_COMPACT, (lo, hi, hi, hi))
            conn.execute(
                "INSERT INTO meta VALUES ('compacted', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (hi,),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def list_at(
        self, prefix: str, revision: int, start_after: str | None, limit: int | None
    ) -> list[KV]:
        """Up to limit + 1 keys, so that the caller can tell whether there are more."""
        keys, params = _key_range(prefix, start_after)
        cursor = self._conn.execute(
            _LIST_AT.format(keys=keys), (*params, revision, revision, limit + 1 if limit else -1)
        )
        return [KV(*row) for row in cursor]

    def events(
        self, prefix: str, after: int, upto: int, limit: int | None
    ) -> tuple[list[Event], int]:
        """Events in (after, upto] under `prefix`, at most `limit`, and the revision
        up to which they are complete."""
        keys, params = _key_range(prefix)
        cursor = self._conn.execute(_EVENTS.format(keys=keys), (after, upto, *params, limit or -1))
        events: list[Event] = []
        # Share one bytes object between an event's value and the next event's prev.
        latest: dict[str, bytes] = {}
        for rev, key, create_rev, value, deleted, prev in cursor:
            if deleted:
                events.append(Event("DELETED", key, value, rev, value))
            elif create_rev == rev:
                events.append(Event("ADDED", key, value, rev))
            else:
                events.append(Event("MODIFIED", key, value, rev, latest.get(key, prev)))
            latest[key] = value
        complete = events[-1].revision if limit and len(events) == limit else upto
        return events, complete


# --- the store


@dataclass(slots=True)
class _Batch:
    """Writes staged for one commit, with what each becomes once it is committed."""

    rows: list[Row] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # each caller's answer: its write, or the error of a check against a staged write
    answers: list[tuple[asyncio.Future[KV], KV | StoreError]] = field(default_factory=list)
    # key -> (revision, new KV or None for a delete) of the batch's last write to it
    staged: dict[str, tuple[int, KV | None]] = field(default_factory=dict)


class SqliteStore:
    """`Store` on SQLite. `window` events are kept in memory for watches; a watcher
    more than `watch_buffer` events behind is terminated with `WatchTooSlow`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_interval: float = 300.0,
        compact_keep: int = 10_000,
        window: int = 10_000,
        watch_buffer: int = 10_000,
    ) -> None:
        self._path = os.fspath(path)
        self._compact_interval = compact_interval
        self._compact_keep = compact_keep
        self._window_size = window
        self._watch_buffer = watch_buffer
        self._state: SortedDict = SortedDict()
        self._rev = 0
        self._compacted = 0
        self._window = EventWindow(size=window, end=0, events=[])
        self._fanout = Fanout()
        # Writes staged on the loop: the batch this loop iteration fills (the loop's
        # own), the sealed batches the committer has not taken yet, and for every key
        # a batch not yet applied writes, the newest (revision, KV or None) staged for it.
        self._filling: _Batch | None = None
        self._sealed: deque[_Batch] = deque()
        self._staged: dict[str, tuple[int, KV | None]] = {}
        self._next_rev = 0  # the last revision handed to a staged write
        self._jobs: deque[tuple[Callable[[], object], Future[object]]] = deque()
        # Guards _sealed, _jobs, _idle, _halted and _stopping, shared with the committer.
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._idle = False  # the committer waits for work
        self._halted = False  # a commit failed and the loop has not yet failed what followed
        self._stopping = False
        self._committer: asyncio.Future[None] | None = None
        self._compactor_task: asyncio.Task[None] | None = None
        self._compact_lock = asyncio.Lock()
        # One thread per connection: SQLite connections stay in the thread that made them.
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_thread: ThreadPoolExecutor | None = None
        self._writer_db: Database | None = None
        self._reader_db: Database | None = None
        self._phase: Literal["new", "open", "closing", "closed"] = "new"

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # lifecycle

    async def start(self) -> None:
        if self._phase == "open":
            return
        if self._phase != "new":
            raise StoreError("a closed SqliteStore cannot be restarted; make a new one")
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store-writer")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store-reader")
        loop = asyncio.get_running_loop()
        try:
            self._writer_db = await loop.run_in_executor(
                self._write_thread, Database.open, self._path, False
            )
            loaded = await loop.run_in_executor(
                self._write_thread, self._writer_db.load, self._window_size
            )
            self._reader_db = await loop.run_in_executor(
                self._read_thread, Database.open, self._path, True
            )
        except BaseException:
            await self._release()
            self._phase = "closed"
            raise
        self._rev = loaded.revision
        self._compacted = loaded.compacted
        self._state = SortedDict((kv.key, kv) for kv in loaded.state)
        self._window = EventWindow(size=self._window_size, end=self._rev, events=loaded.window)
        self._next_rev = self._rev
        self._phase = "open"
        self._committer = loop.run_in_executor(
            self._write_thread, self._commit_loop, self._writer_db, loop
        )
        if self._compact_interval > 0:
            self._compactor_task = asyncio.create_task(
                self._compactor(), name="sqlite-store-compactor"
            )

    async def close(self) -> None:
        if self._phase != "open":
            self._phase = "closed" if self._phase == "new" else self._phase
            return
        self._phase = "closing"
        if self._compactor_task is not None:
            await cancelled(self._compactor_task)
        self._seal()
        with self._work:
            self._stopping = True
            self._work.notify()
        if self._committer is not None:
            # Its last answers were handed to the loop before it returned: they ran first.
            await self._committer
        self._fanout.close_all()
        await self._release()
        self._phase = "closed"

    async def _release(self) -> None:
        loop = asyncio.get_running_loop()
        for db, thread in (
            (self._reader_db, self._read_thread),
            (self._writer_db, self._write_thread),
        ):
            if db is not None and thread is not None:
                await loop.run_in_executor(thread, db.close)
        for thread in (self._read_thread, self._write_thread):
            if thread is not None:
                await asyncio.to_thread(thread.shutdown, True)
        self._reader_db = self._writer_db = None
        self._read_thread = self._write_thread = None

    def _check_open(self) -> None:
        if self._phase != "open":
            raise StoreError(f"store is {self._phase}")

    # reads

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compacted_revision(self) -> int:
        return self._compacted

    async def get(self, key: str) -> KV | None:
        self._check_open()
        return self._state.get(key)

    async def list(
        self,
        prefix: str,
        *,
        revision: int | None = None,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> ListResult:
        """A `limit` of None or 0 means no limit. A revision newer than the store's is
        served at the store's revision (ListResult.revision says which). As the contract
        says, the compaction point itself is not listable, though a watch from it is."""
        self._check_open()
        if revision is None or revision >= self._rev:
            return self._list_memory(prefix, start_after, limit)
        self._check_listable(revision)
        assert self._reader_db is not None
        rows = await asyncio.get_running_loop().run_in_executor(
            self._read_thread, self._reader_db.list_at, prefix, revision, start_after, limit
        )
        # A compaction that began while we read may have removed rows we needed.
        self._check_listable(revision)
        more = bool(limit) and len(rows) > limit
        if more:
            rows = rows[:limit]
        return ListResult(items=rows, revision=revision, more=more)

    def _check_listable(self, revision: int) -> None:
        if revision < self._compacted or (revision == self._compacted != 0):
            raise Compacted(revision, self._compacted)

    def _list_memory(self, prefix: str, start_after: str | None, limit: int | None) -> ListResult:
        if start_after is not None and start_after >= prefix:
            keys = self._state.irange(minimum=start_after, inclusive=(False, True))
        else:
            keys = self._state.irange(minimum=prefix)
        items: list[KV] = []
        more = False
        for key in keys:
            if not key.startswith(prefix):
                break
            if limit and len(items) == limit:
                more = True
                break
            items.append(self._state[key])
        return ListResult(items=items, revision=self._rev, more=more)

    # writes

    async def create(self, key: str, value: bytes) -> KV:
        return await self._submit("create", key, value, None)

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        return await self._submit("update", key, value, expected_revision)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        return await self._submit("delete", key, b"", expected_revision)

    async def _submit(self, op: _Op, key: str, value: bytes, expected: int | None) -> KV:
        """Checks the write against the committed state and every write staged before
        it, and stages it in the filling batch; returns once it is committed."""
        self._check_open()
        staged = self._staged.get(key)
        current = staged[1] if staged is not None else self._state.get(key)
        error: StoreError | None = None
        if op == "create":
            if current is not None:
                error = KeyExists(key)
        elif current is None:
            error = KeyNotFound(key)
        elif expected is not None and expected != current.mod_revision:
            error = RevisionMismatch(key, expected, current.mod_revision)
        future: asyncio.Future[KV]
        if error is not None:
            if staged is None:
                raise error
            # Failed against a write not yet committed: answered once that write is
            # visible, so that a caller who reads again and retries sees what it lost
            # to, rather than retrying against the same old state at once.
            future = asyncio.get_running_loop().create_future()
            self._filling_batch().answers.append((future, error))
            return await future
        self._next_rev = rev = self._next_rev + 1
        after: KV | None
        if op == "delete":
            assert current is not None
            kv = KV(key, current.value, current.create_revision, rev)
            event = Event("DELETED", key, kv.value, rev, kv.value)
            after = None
        else:
            # An update has a current value and keeps its create revision; a create has neither.
            kv = after = KV(key, value, current.create_revision if current else rev, rev)
            event = Event("MODIFIED" if current else "ADDED", key, value, rev,
                          current.value if current else None)
        future = asyncio.get_running_loop().create_future()
        self._staged[key] = (rev, after)
        batch = self._filling_batch()
        batch.rows.append((rev, key, kv.create_revision, kv.value, after is None))
        batch.events.append(event)
        batch.answers.append((future, kv))
        batch.staged[key] = (rev, after)
        if len(batch.rows) >= _MAX_BATCH:
            self._seal()
        return await future

    def _filling_batch(self) -> _Batch:
        """The batch this loop iteration's writes join; sealed once the iteration's
        callbacks have run, so that a batch holds every write they made."""
        if self._filling is None:
            self._filling = _Batch()
            asyncio.get_running_loop().call_soon(self._seal)
        return self._filling

    def _seal(self) -> None:
        """Hands the filling batch to the committer."""
        batch, self._filling = self._filling, None
        if batch is None:
            return
        with self._lock:
            self._sealed.append(batch)
            if self._idle:
                self._work.notify()

    def _commit_loop(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        """The committer thread: commits what was sealed while it was busy as one
        transaction, in order, runs jobs between commits, and hands each outcome to
        the loop; returns once stopping with nothing left."""
        work = self._work
        while True:
            batches: list[_Batch] = []
            with work:
                while not (self._jobs or (self._sealed and not self._halted) or self._stopping):
                    self._idle = True
                    work.wait()
                    self._idle = False
                if self._jobs:
                    job, done = self._jobs.popleft()
                elif self._sealed and not self._halted:
                    size = 0
                    while self._sealed and (
                        not batches or size + len(self._sealed[0].rows) <= _MAX_BATCH
                    ):
                        batches.append(self._sealed.popleft())
                        size += len(batches[-1].rows)
                else:
                    return
            if not batches:
                if done.set_running_or_notify_cancel():
                    try:
                        done.set_result(job())
                    except BaseException as exc:
                        done.set_exception(exc)
                continue
            error: Exception | None = None
            rows = batches[0].rows if len(batches) == 1 else [
                row for batch in batches for row in batch.rows]
            try:
                if rows:  # none when the batches only answer failed checks
                    db.commit(rows)
            except Exception as exc:
                error = exc
                with work:
                    self._halted = True
            loop.call_soon_threadsafe(self._committed, batches, error)

    def _committed(self, batches: list[_Batch], error: Exception | None) -> None:
        """On the loop, in commit order: make committed batches visible and answer them."""
        if error is not None:
            self._fail(batches, error)
            return
        state, staged = self._state, self._staged
        for batch in batches:
            for key, (rev, kv) in batch.staged.items():
                if kv is None:
                    state.pop(key, None)  # None too when the batch created it first
                else:
                    state[key] = kv
                if staged[key][0] == rev:
                    del staged[key]
            if batch.rows:
                self._rev = batch.rows[-1][0]
                self._window.append(batch.events)
                self._fanout.publish(batch.events)
        for batch in batches:
            for future, answer in batch.answers:
                if future.done():
                    continue
                if isinstance(answer, StoreError):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def _fail(self, batches: list[_Batch], error: Exception) -> None:
        """Fails batches whose commit failed and every write staged after them: those
        were checked against their writes. Batches committed before were applied
        already, since their outcomes reached the loop first."""
        log.error("store commit failed", exc_info=error)
        with self._work:
            doomed = [*batches, *self._sealed]
            self._sealed.clear()
            self._halted = False
            self._work.notify()
        if self._filling is not None:
            doomed.append(self._filling)
            self._filling = None
        self._staged.clear()
        self._next_rev = self._rev
        failure = StoreError(f"commit failed: {error}")
        for each in doomed:
            for future, _ in each.answers:
                if not future.done():
                    future.set_exception(failure)

    def _job(self, fn: Callable[..., object], *args: object) -> asyncio.Future[object]:
        """Runs fn(*args) on the committer thread, between two commits."""
        done: Future[object] = Future()
        with self._work:
            if self._stopping:
                raise StoreError("store is closing")
            self._jobs.append((functools.partial(fn, *args), done))
            self._work.notify()
        return asyncio.wrap_future(done)

    # watch

    def watch(self, prefix: str, *, since_revision: int) -> AsyncIterator[Event]:
        """See Store.watch. Ends when the store closes; a watcher that falls more than
        `watch_buffer` events behind raises `WatchTooSlow` (a Compacted): relist."""
        return flatten(self.watch_batches(prefix, since_revision=since_revision))

    def watch_batches(self, prefix: str, *, since_revision: int) -> AsyncIterator[list[Event]]:
        """See Store.watch_batches."""
        self._check_open()
        return stream(
            prefix,
            since_revision,
            fanout=self._fanout,
            window=self._window,
            limit=self._watch_buffer,
            revision=lambda: self._rev,
            compacted=lambda: self._compacted,
            backlog=self._backlog,
        )

    async def _backlog(self, prefix: str, after: int, upto: int) -> AsyncIterator[Event]:
        """Events in (after, upto] under prefix, read from SQLite in chunks."""
        loop = asyncio.get_running_loop()
        position = after
        while position < upto:
            if self._phase != "open":
                return
            assert self._reader_db is not None
            before = position
            events, position = await loop.run_in_executor(
                self._read_thread, self._reader_db.events, prefix, position, upto, _BACKLOG_CHUNK
            )
            # A compaction that began while we read may have removed rows we needed.
            if self._compacted > before:
                raise Compacted(before, self._compacted)
            for event in events:
                yield event

    # compaction

    async def compact(self, revision: int) -> None:
        self._check_open()
        async with self._compact_lock:
            target = min(revision, self._rev)
            while self._compacted < target:
                lower = self._compacted
                upper = min(lower + _COMPACT_SLICE, target)
                # Raised before the rows go, so that readers racing the delete notice.
                self._compacted = upper
                assert self._writer_db is not None
                await self._job(self._writer_db.compact, lower, upper)

    async def _compactor(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            target = self._rev - self._compact_keep
            if target > self._compacted:
                try:
                    await self.compact(target)
                except StoreError:
                    return
                except Exception:
                    log.exception("background compaction to %d failed", target)
