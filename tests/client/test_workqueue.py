import asyncio

import pytest

from kubelite.client.workqueue import ItemExponentialFailureRateLimiter, ShutDown, WorkQueue


async def get_now(q: WorkQueue) -> str:
    async with asyncio.timeout(1):
        return await q.get()


async def assert_empty(q: WorkQueue, wait: float = 0.02) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(wait):
            await q.get()


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(0, 0.005), (1, 0.01), (2, 0.02), (10, 5.12), (17, 655.36), (18, 1000.0), (500, 1000.0)],
    ids=lambda v: str(v),
)
def test_item_limiter_doubles_from_5ms_and_caps_at_1000s(failures: int, delay: float) -> None:
    rl = ItemExponentialFailureRateLimiter()
    for _ in range(failures):
        rl.when("k")
    assert rl.when("k") == pytest.approx(delay)
    assert rl.num_requeues("k") == failures + 1


def test_item_limiter_is_per_key_and_forget_resets() -> None:
    rl = ItemExponentialFailureRateLimiter()
    rl.when("a")
    rl.when("a")
    assert rl.when("b") == pytest.approx(0.005)
    rl.forget("a")
    assert rl.num_requeues("a") == 0
    assert rl.when("a") == pytest.approx(0.005)


async def test_keys_are_deduplicated_and_fifo() -> None:
    q = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert [await get_now(q) for _ in range(3)] == ["a", "b", "c"]
    await assert_empty(q)


async def test_key_readded_while_processing_waits_for_done() -> None:
    q = WorkQueue()
    q.add("a")
    assert await get_now(q) == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "a held key is not handed to a second worker"
    await assert_empty(q)
    q.done("a")
    assert await get_now(q) == "a"
    q.done("a")
    await assert_empty(q)


async def test_done_without_readd_does_not_requeue() -> None:
    q = WorkQueue()
    q.add("a")
    await get_now(q)
    q.done("a")
    assert len(q) == 0


async def test_waiting_getters_are_woken_one_per_key() -> None:
    q = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.add("x")
    q.add("y")
    await asyncio.sleep(0.01)
    done = [t for t in getters if t.done()]
    assert sorted(t.result() for t in done) == ["x", "y"]
    q.shutdown()
    pending = [t for t in getters if not t.done()]
    with pytest.raises(ShutDown):
        await pending[0]


async def test_cancelled_getter_does_not_lose_a_key() -> None:
    q = WorkQueue()
    first = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await get_now(q) == "a"


async def test_add_after_delays_and_earliest_time_wins() -> None:
    q = WorkQueue()
    q.add_after("a", 0.2)
    q.add_after("a", 0.03)
    q.add_after("a", 0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await get_now(q) == "a"
    assert 0.025 <= loop.time() - start < 0.15
    q.done("a")
    await assert_empty(q, 0.3)


async def test_add_after_of_a_queued_key_adds_nothing_more() -> None:
    q = WorkQueue()
    q.add("a")
    q.add_after("a", 0.01)
    await asyncio.sleep(0.03)
    assert len(q) == 1


async def test_add_rate_limited_backs_off_per_key_until_forget() -> None:
    q = WorkQueue(rate_limiter=ItemExponentialFailureRateLimiter(base_delay=0.01))
    loop = asyncio.get_running_loop()
    delays = []
    for _ in range(3):
        start = loop.time()
        q.add_rate_limited("a")
        key = await get_now(q)
        delays.append(loop.time() - start)
        q.done(key)
    assert q.num_requeues("a") == 3
    assert delays[0] >= 0.009 and delays[1] >= 0.019 and delays[2] >= 0.039
    q.forget("a")
    assert q.num_requeues("a") == 0


async def test_shutdown_drains_queued_keys_then_raises_and_ignores_adds() -> None:
    q = WorkQueue()
    q.add("a")
    q.add_after("later", 0.01)
    q.shutdown()
    q.add("b")
    assert await get_now(q) == "a"
    with pytest.raises(ShutDown):
        await get_now(q)
    await asyncio.sleep(0.02)
    assert len(q) == 0, "delayed adds are cancelled by shutdown"


async def test_one_key_is_never_processed_by_two_workers() -> None:
    q = WorkQueue()
    active: set[str] = set()
    processed: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            assert key not in active
            active.add(key)
            await asyncio.sleep(0.001)
            processed.append(key)
            active.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for i in range(50):
        q.add(f"k{i % 3}")
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    q.shutdown()
    await asyncio.gather(*workers)
    assert set(processed) == {"k0", "k1", "k2"}
