"""Ending tasks: a task's own cancellation ends where it was asked for, the
caller's goes on."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.tasks import cancelled, ended


async def slow_to_stop(release: asyncio.Event) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await release.wait()
        raise


async def test_a_stop_cancelled_halfway_ends_cancelled() -> None:
    # A fence cancelled while it stops the pod workers (a shutdown, a test's teardown)
    # must end there: swallowing the cancellation left the fencing task waiting for a
    # renewal forever.
    release = asyncio.Event()
    worker = asyncio.create_task(slow_to_stop(release))
    await asyncio.sleep(0)

    async def stop() -> str:
        await cancelled(worker)
        return "carried on"

    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0.01)
    stopping.cancel()
    await asyncio.sleep(0.01)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await stopping


async def test_tasks_cancelled_here_end_quietly() -> None:
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    await asyncio.sleep(0)
    await cancelled(tasks[0], None, *tasks[1:])
    assert all(task.cancelled() for task in tasks)
    alone = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    alone.cancel()
    await ended(alone)
    assert alone.cancelled()


async def test_a_task_failing_as_it_stops_raises_its_error() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancelled(task)


async def test_cleanup_of_a_cancelled_task_goes_on_past_its_stops() -> None:
    # In a cancelled task's `finally`, stopping a helper must not cut the rest of the
    # cleanup short: that cancellation was already being handled.
    cleaned = []

    async def owner() -> None:
        helper = asyncio.create_task(asyncio.sleep(3600))
        try:
            await asyncio.sleep(3600)
        finally:
            await cancelled(helper)
            cleaned.append(helper.cancelled())

    task = asyncio.create_task(owner())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
