"""client-go's flowcontrol.Backoff as kubelet uses it for crash loops and image
pulls: 10 s doubling to 5 min per key, forgotten after 10 min without trouble."""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    def __init__(self, *, initial: float = 10.0, cap: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.initial = initial
        self.cap = cap
        self.clock = clock
        # key -> (current delay, time of the event that last set it)
        self._entries: dict[str, tuple[float, float]] = {}

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * self.cap

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else 0.0

    def remaining(self, key: str, event_time: float) -> float:
        """Seconds still to wait after a failure at `event_time` (0: go ahead)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry[1]):
            return 0.0
        return max(0.0, entry[0] - (self.clock() - event_time))

    def next(self, key: str, event_time: float) -> None:
        """Record a failure at `event_time`: the first waits `initial`, each next twice as long."""
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry[1]):
            self._entries[key] = (self.initial, event_time)
        else:
            self._entries[key] = (min(entry[0] * 2, self.cap), event_time)

    def forget(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
