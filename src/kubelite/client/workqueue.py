"""A keyed async work queue with the semantics of client-go's workqueue.

- A key waiting in the queue is there once, however often it is added.
- A key is handed to at most one worker at a time: re-added while a worker
  holds it, it is queued again only when that worker calls `done(key)`.
- `add_after` delays an add (the earliest pending time wins);
  `add_rate_limited` delays it by the rate limiter's per-key backoff, which
  `forget` resets after a success.
- After `shutdown()` adds are ignored, keys already queued are still handed
  out, and then `get()` raises `ShutDown`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class ShutDown(Exception):
    """The queue is shut down and empty."""


class RateLimiter(Protocol):
    def when(self, key: str) -> float:
        """Seconds to wait before the key's next retry; counts one more failure."""
        ...

    def forget(self, key: str) -> None: ...

    def num_requeues(self, key: str) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base * 2**failures per key, capped at max_delay: client-go's default item
    limiter uses 5 ms and 1000 s, so retries go 5 ms, 10 ms, 20 ms, ... ~17 min."""

    def __init__(self, *, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Past 2**64 the float would overflow for no purpose: the cap is reached long before.
        if failures > 62:
            return self.max_delay
        return min(self.base_delay * 2**failures, self.max_delay)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)


class WorkQueue:
    def __init__(self, *, rate_limiter: RateLimiter | None = None) -> None:
        self.rate_limiter: RateLimiter = rate_limiter or ItemExponentialFailureRateLimiter()
        self._queue: deque[str] = deque()
        # Keys that need processing: queued ones, and held ones re-added meanwhile.
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        # Futures of get() calls waiting for a key, woken in arrival order.
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: str) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        handle = loop.call_at(ready_at, self._fire, key)
        self._waiting[key] = (ready_at, handle)

    def _fire(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: str) -> None:
        self.rate_limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return self.rate_limiter.num_requeues(key)

    async def get(self) -> str:
        """The next key; the caller owns it until `done(key)`. Raises ShutDown at the end."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown()
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on: this getter will not take the key
                elif waiter in self._getters:
                    self._getters.remove(waiter)
                raise
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()

    def shutdown(self) -> None:
        self._shutting_down = True
        for _, handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        self._wake(everyone=True)

    def _wake(self, *, everyone: bool = False) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return
