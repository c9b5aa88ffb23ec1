"""Events sent in the background, as client-go's broadcaster does: recording
only queues the event, so that a pod's start never waits on the API server for
a note meant for humans. One sender keeps them in order; when the queue is
full, new events are dropped (client-go drops too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from kubelite.client import EventRecorder
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000


class Recorder(Protocol):
    """What the agent's parts record events with (EventRecorder's signature)."""

    async def record(self, involved: dict[str, Any], type: str, reason: str, message: str, *,
                     field_path: str | None = None) -> None: ...


class QueuedRecorder:
    def __init__(self, recorder: EventRecorder, *, size: int = QUEUE_SIZE) -> None:
        self.recorder = recorder
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue(size)
        self._task: asyncio.Task[None] | None = None

    async def record(self, involved: dict[str, Any], type: str, reason: str, message: str, *,
                     field_path: str | None = None) -> None:
        try:
            self._queue.put_nowait((involved, type, reason, message, field_path))
        except asyncio.QueueFull:
            log.warning("event queue full, dropping %s %s: %s", type, reason, message)

    def start(self) -> None:
        self._task = asyncio.create_task(self._send(), name="events")

    async def _send(self) -> None:
        while True:
            involved, type_, reason, message, field_path = await self._queue.get()
            try:
                await self.recorder.record(involved, type_, reason, message,
                                           field_path=field_path)
            finally:
                self._queue.task_done()

    async def stop(self, *, flush_timeout: float = 2.0) -> None:
        """Send what is queued (for a while), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                await self._queue.join()
        await cancelled(self._task)
        self._task = None
