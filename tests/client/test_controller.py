import asyncio
from collections.abc import Awaitable, Callable

import pytest

from kubelite.api import registry
from kubelite.api.registry import Resource
from kubelite.client.controller import Controller, Expectations, slow_start_batch
from kubelite.client.informer import Informer
from kubelite.client.workqueue import ItemExponentialFailureRateLimiter

RS = registry.lookup("apps", "v1", "replicasets")
POD = registry.lookup("", "v1", "pods")


class FakeInformer(Informer):
    """An informer fed by the test instead of a server."""

    def __init__(self, res: Resource) -> None:
        super().__init__(None, res)
        self.synced_on_start = True

    def start(self) -> None:
        if self.synced_on_start:
            self.has_synced.set()

    def emit(self, type_: str, obj: dict) -> None:
        self._apply(type_, obj)


def rs(name: str, uid: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid}}


def owned_pod(
    name: str,
    owner: str | None = None,
    uid: str = "u1",
    *,
    kind: str = "ReplicaSet",
    controller: bool = True,
    deleting: bool = False,
) -> dict:
    meta: dict = {"name": name, "namespace": "default"}
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": owner,
                "uid": uid,
                "controller": controller,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta}


class Recording(Controller):
    name = "test-controller"

    def __init__(self, *, fail: Callable[[str, int], bool] = lambda key, n: False, **kw) -> None:
        super().__init__(rate_limiter=ItemExponentialFailureRateLimiter(base_delay=0.001), **kw)
        self.fail = fail
        self.calls: list[str] = []
        self.expectations = Expectations()
        self.orphans: list[str] = []
        self.rs = self.watch(FakeInformer(RS))
        self.pods = self.watch_owned(
            FakeInformer(POD),
            owner=self.rs,
            owner_kind="ReplicaSet",
            expectations=self.expectations,
            on_orphan=self._orphan,
        )

    def _orphan(self, obj: dict) -> list[str]:
        self.orphans.append(obj["metadata"]["name"])
        return []

    async def sync(self, key: str) -> None:
        self.calls.append(key)
        if self.fail(key, self.calls.count(key)):
            raise RuntimeError(f"sync {key} failed")


async def drain(queue) -> list[str]:
    keys = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        keys.append(key)
    return keys


async def until(cond: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not cond():
            await asyncio.sleep(0.002)


@pytest.mark.parametrize(
    ("pod", "queued"),
    [
        (owned_pod("p", "web", "u1"), ["default/web"]),
        (owned_pod("p", "web", "stale-uid"), []),
        (owned_pod("p", "web", "u1", kind="Deployment"), []),
        (owned_pod("p", "missing", "u9"), []),
        (owned_pod("p", "web", "u1", controller=False), []),
        (owned_pod("p"), []),
    ],
    ids=[
        "controlled by a known owner",
        "owner recreated with a new uid",
        "another kind",
        "owner not in cache",
        "not the controller ref",
        "orphan",
    ],
)
async def test_owned_objects_map_to_their_controller(pod: dict, queued: list[str]) -> None:
    c = Recording()
    c.rs.emit("ADDED", rs("web", "u1"))
    await drain(c.queue)
    c.pods.emit("ADDED", pod)
    assert await drain(c.queue) == queued


async def test_orphans_go_to_the_adoption_hook() -> None:
    c = Recording()
    c.pods.emit("ADDED", owned_pod("p", "web", controller=False))
    assert c.orphans == ["p"]


async def test_changed_controller_ref_enqueues_old_and_new_owner() -> None:
    c = Recording()
    c.rs.emit("ADDED", rs("a", "ua"))
    c.rs.emit("ADDED", rs("b", "ub"))
    c.pods.emit("ADDED", owned_pod("p", "a", "ua"))
    await drain(c.queue)
    c.pods.emit("MODIFIED", owned_pod("p", "b", "ub"))
    assert await drain(c.queue) == ["default/a", "default/b"]
    c.pods.emit("DELETED", owned_pod("p", "b", "ub"))
    assert await drain(c.queue) == ["default/b"]


async def test_informer_events_confirm_expectations() -> None:
    c = Recording()
    c.rs.emit("ADDED", rs("web", "u1"))
    c.expectations.expect_creations("default/web", 2)
    c.pods.emit("ADDED", owned_pod("p1", "web"))
    assert not c.expectations.satisfied("default/web")
    c.pods.emit("ADDED", owned_pod("p2", "web"))
    assert c.expectations.satisfied("default/web")

    c.expectations.expect_deletions("default/web", ["default/p1", "default/p2"])
    c.pods.emit("MODIFIED", owned_pod("p1", "web", deleting=True))
    c.pods.emit("DELETED", owned_pod("p1", "web", deleting=True))
    assert c.expectations.pending("default/web") == (0, 1), "one deletion counted once"
    c.pods.emit("DELETED", owned_pod("p2", "web"))
    assert c.expectations.satisfied("default/web")


def test_expectations_expire_after_the_ttl() -> None:
    now = [0.0]
    exp = Expectations(ttl=300, clock=lambda: now[0])
    assert exp.satisfied("k"), "no record: nothing to wait for"
    exp.expect_creations("k", 3)
    exp.creation_observed("k")
    exp.lower_creations("k", 1)
    assert exp.pending("k") == (1, 0) and not exp.satisfied("k")
    now[0] = 299.9
    assert not exp.satisfied("k")
    now[0] = 300.0
    assert exp.satisfied("k")
    exp.delete("k")
    assert exp.pending("k") == (0, 0)


def test_unexpected_deletions_are_ignored() -> None:
    exp = Expectations()
    exp.expect_deletions("k", ["ns/a"])
    exp.deletion_observed("k", "ns/other")
    exp.creation_observed("k")
    assert exp.pending("k") == (0, 1)


async def run_until(c: Controller, cond: Callable[[], bool]) -> None:
    task = asyncio.create_task(c.run())
    try:
        await until(cond)
    finally:
        c.stop()
        async with asyncio.timeout(5):
            await task


async def test_run_waits_for_sync_then_processes_keys() -> None:
    c = Recording()
    c.rs.synced_on_start = False
    c.rs.emit("ADDED", rs("web", "u1"))
    task = asyncio.create_task(c.run())
    await asyncio.sleep(0.02)
    assert c.calls == [], "no worker before the caches are synced"
    c.rs.has_synced.set()
    await until(lambda: c.calls == ["default/web"])
    c.stop()
    async with asyncio.timeout(5):
        await task


async def test_failed_sync_is_retried_with_backoff_then_forgotten() -> None:
    c = Recording(fail=lambda key, n: n <= 3)
    c.rs.emit("ADDED", rs("web", "u1"))
    await run_until(c, lambda: len(c.calls) == 4)
    assert c.calls == ["default/web"] * 4
    assert c.queue.num_requeues("default/web") == 0


async def test_max_retries_drops_a_key() -> None:
    c = Recording(fail=lambda key, n: True, max_retries=2)
    c.rs.emit("ADDED", rs("web", "u1"))
    await run_until(c, lambda: len(c.calls) == 3)
    await asyncio.sleep(0.05)
    assert len(c.calls) == 3


async def test_workers_run_different_keys_concurrently() -> None:
    active: set[str] = set()
    peak = [0]

    class Slow(Recording):
        async def sync(self, key: str) -> None:
            active.add(key)
            peak[0] = max(peak[0], len(active))
            await asyncio.sleep(0.02)
            active.discard(key)
            self.calls.append(key)

    c = Slow(workers=3)
    for name in "abc":
        c.rs.emit("ADDED", rs(name, name))
    await run_until(c, lambda: len(c.calls) == 3)
    assert peak[0] == 3


async def test_cancelling_run_stops_the_workers() -> None:
    c = Recording()
    task = asyncio.create_task(c.run())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def calls_failing_at(fail_at: set[int]) -> tuple[list[int], Callable[[], Awaitable[None]]]:
    log: list[int] = []

    async def fn() -> None:
        n = len(log)
        log.append(n)
        await asyncio.sleep(0)
        if n in fail_at:
            raise ValueError(f"call {n}")

    return log, fn


@pytest.mark.parametrize(
    ("count", "initial", "fail_at", "calls", "successes"),
    [
        (10, 1, set(), 10, 10),
        (0, 1, set(), 0, 0),
        (10, 1, {4}, 7, 6),
        (10, 1, {0}, 1, 0),
        (5, 2, {3}, 5, 4),
    ],
    ids=[
        "all succeed in 1+2+4+3",
        "nothing to do",
        "stops after the batch of 4",
        "first call fails",
        "initial batch of 2",
    ],
)
async def test_slow_start_batch(count, initial, fail_at, calls, successes) -> None:
    log, fn = calls_failing_at(fail_at)
    done, err = await slow_start_batch(count, initial, fn)
    assert (len(log), done) == (calls, successes)
    assert (err is None) == (not fail_at)
