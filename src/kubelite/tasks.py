"""Ending the asyncio tasks kubelite starts.

`contextlib.suppress(CancelledError)` around awaiting a task cancelled here also
swallows a cancellation meant for the one waiting: a stop cancelled halfway (a
fence, a shutdown) then carries on as if nothing had asked it to end, and can
wait forever. These helpers let the task's own CancelledError end here and pass
the caller's on.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def ended(task: asyncio.Future[Any]) -> None:
    """Wait for a task cancelled here; its result or error other than its
    cancellation is raised. A cancellation of the caller that arrives meanwhile is
    raised too; one it already had (cleanup in a cancelled task's `finally`) is not
    this wait's to end."""
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise


async def cancelled(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel the tasks (None are skipped) and wait until each has ended."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for task in live:
        await ended(task)
