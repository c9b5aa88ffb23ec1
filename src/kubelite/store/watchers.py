"""Watch plumbing shared by store backends: the window of recent events and the fan-out.

Fan-out cost per event is O(length of the key's distinct watched-prefix lengths +
matching watchers), never O(all watchers): watchers are indexed by their prefix,
and an event looks up only the prefixes of its own key. Events are shared, never
copied or decoded here; consumers decode what they deliver.

Each watcher has a bounded buffer. Writers never wait for watchers: when a
watcher's buffer is full it is terminated with `WatchTooSlow` (a `Compacted`),
so that its client does what it does after compaction: relist and watch again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable

from kubelite.store.base import Event
from kubelite.store.errors import Compacted

# Reads events in (after, upto] under a prefix from durable history.
Backlog = Callable[[str, int, int], AsyncIterator[Event]]


class WatchTooSlow(Compacted):
    """The watcher fell `buffer` events behind the writers and was dropped."""

    def __init__(self, position: int, revision: int) -> None:
        super().__init__(position, revision)
        self.args = (
            f"watch at revision {position} fell too far behind (store at {revision}); relist",
        )


class EventWindow:
    """The newest events, at dense revisions: `start`, `start + 1`, ..., `end`.

    Holds at least `size` events once that many exist (trimming is amortised, so up
    to twice as many are kept between trims)."""

    def __init__(self, *, size: int, end: int, events: list[Event]) -> None:
        self._size = max(size, 1)
        self._events = events
        self._start = end - len(events) + 1

    @property
    def start(self) -> int:
        """The oldest revision held (end + 1 when empty)."""
        return self._start

    def append(self, events: list[Event]) -> None:
        self._events.extend(events)
        excess = len(self._events) - self._size
        if excess >= self._size:
            del self._events[:excess]
            self._start += excess

    def since(self, revision: int, prefix: str) -> list[Event]:
        """Events after `revision` under `prefix` that the window holds."""
        first = max(revision + 1 - self._start, 0)
        return [ev for ev in self._events[first:] if ev.key.startswith(prefix)]


class Watcher:
    """One watch's live side: a bounded buffer filled by `Fanout.publish`."""

    __slots__ = ("prefix", "position", "_buffer", "_limit", "_waiter", "_closed", "_error")

    def __init__(self, prefix: str, *, position: int, limit: int) -> None:
        self.prefix = prefix
        # The revision of the last event handed to the consumer.
        self.position = position
        self._buffer: deque[Event] = deque()
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def push(self, event: Event) -> bool:
        """Buffer one event; False (and the watcher terminated) when the buffer is full."""
        if len(self._buffer) >= self._limit:
            self.close(WatchTooSlow(self.position, event.revision))
            return False
        self._buffer.append(event)
        self._wake()
        return True

    def close(self, error: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if error is not None:
            # A terminated watcher must not deliver what it buffered: its consumer
            # relists, and stale events after the error would only confuse it.
            self._buffer.clear()
            self._error = error
        self._wake()

    async def next_batch(self) -> list[Event]:
        """Every live event buffered, waiting for one if there is none; empty once
        closed normally; raises the termination error."""
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        batch = list(self._buffer)
        self._buffer.clear()
        return batch

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Fanout:
    """Watchers indexed by prefix; publishing visits only the watchers that match."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, dict[Watcher, None]] = {}
        # Distinct prefix lengths in use, ascending, with how many prefixes have each.
        self._lengths: list[int] = []
        self._length_count: dict[int, int] = {}

    def add(self, watcher: Watcher) -> None:
        group = self._by_prefix.get(watcher.prefix)
        if group is None:
            group = self._by_prefix[watcher.prefix] = {}
            n = len(watcher.prefix)
            count = self._length_count.get(n, 0)
            self._length_count[n] = count + 1
            if count == 0:
                self._lengths = sorted(self._length_count)
        group[watcher] = None

    def remove(self, watcher: Watcher) -> None:
        group = self._by_prefix.get(watcher.prefix)
        if group is None or watcher not in group:
            return
        del group[watcher]
        if group:
            return
        del self._by_prefix[watcher.prefix]
        n = len(watcher.prefix)
        self._length_count[n] -= 1
        if self._length_count[n] == 0:
            del self._length_count[n]
            self._lengths = sorted(self._length_count)

    def publish(self, events: list[Event]) -> None:
        by_prefix = self._by_prefix
        lengths = self._lengths
        dropped: list[Watcher] = []
        for event in events:
            key = event.key
            size = len(key)
            for n in lengths:
                if n > size:
                    break
                group = by_prefix.get(key[:n])
                if group:
                    for watcher in group:
                        if not watcher.closed and not watcher.push(event):
                            dropped.append(watcher)
        for watcher in dropped:
            self.remove(watcher)

    def close_all(self) -> None:
        for group in list(self._by_prefix.values()):
            for watcher in list(group):
                watcher.close()
                self.remove(watcher)


async def stream(
    prefix: str,
    since: int,
    *,
    fanout: Fanout,
    window: EventWindow,
    limit: int,
    revision: Callable[[], int],
    compacted: Callable[[], int],
    backlog: Backlog,
) -> AsyncIterator[list[Event]]:
    """One watch: events after `since` from `backlog`, then the window, then live
    ones, in batches of those at hand (a consumer writes each batch at once)."""
    if since < compacted():
        raise Compacted(since, compacted())
    watcher = Watcher(prefix, position=since, limit=limit)
    # Registering, reading the revision and copying the window happen without an
    # await in between, so the backlog ends exactly where live events begin.
    fanout.add(watcher)
    try:
        head = revision()
        start = window.start
        recent = window.since(since, prefix) if since < head else []
        if since < start - 1:
            async with contextlib.aclosing(backlog(prefix, since, start - 1)) as old:
                async for event in old:
                    watcher.position = event.revision
                    yield [event]
        if recent:
            watcher.position = recent[-1].revision
            yield recent
        while batch := await watcher.next_batch():
            # Only when watching from a revision the store has not reached yet.
            if batch[0].revision <= since:
                batch = [event for event in batch if event.revision > since]
                if not batch:
                    continue
            watcher.position = batch[-1].revision
            yield batch
    finally:
        watcher.close()
        fanout.remove(watcher)


async def flatten(batches: AsyncIterator[list[Event]]) -> AsyncIterator[Event]:
    """A batched watch as single events."""
    async with contextlib.aclosing(batches):  # type: ignore[type-var]
        async for batch in batches:
            for event in batch:
                yield event
