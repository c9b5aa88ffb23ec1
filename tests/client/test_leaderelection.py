import asyncio
from collections.abc import AsyncIterator

import pytest

from kubelite.client.api import Client
from kubelite.client.leaderelection import LEASE, LeaderElector

from . import FakeAPIServer

FAST = {"lease_duration": 1.0, "renew_deadline": 0.5, "retry_period": 0.05}


@pytest.fixture
async def server() -> AsyncIterator[FakeAPIServer]:
    async with FakeAPIServer() as s:
        yield s


@pytest.fixture
async def client(server: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(server.config, read_retries=0) as c:
        yield c


def lease_spec(server: FakeAPIServer) -> dict:
    return server.objects[LEASE][("kube-system", "kubelite-controllers")]["spec"]


class Candidate:
    def __init__(self, client: Client, identity: str, **kw) -> None:
        self.leading = asyncio.Event()
        self.stopped = asyncio.Event()
        self.leaders: list[str] = []
        self.work_cancelled = False
        self.elector = LeaderElector(
            client,
            name="kubelite-controllers",
            namespace="kube-system",
            identity=identity,
            on_started_leading=self._lead,
            on_stopped_leading=self.stopped.set,
            on_new_leader=self.leaders.append,
            **{**FAST, **kw},
        )
        self.task = asyncio.create_task(self.elector.run())

    async def _lead(self) -> None:
        self.leading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.work_cancelled = True
            raise

    async def cancel(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


async def within(event: asyncio.Event, seconds: float = 5) -> None:
    async with asyncio.timeout(seconds):
        await event.wait()


async def test_acquires_renews_and_releases(client, server) -> None:
    a = Candidate(client, "a")
    await within(a.leading)
    spec = lease_spec(server)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"].endswith("Z") and len(spec["acquireTime"]) == 27  # MicroTime
    first_renew = spec["renewTime"]
    async with asyncio.timeout(5):
        while lease_spec(server)["renewTime"] == first_renew:
            await asyncio.sleep(0.02)
    assert lease_spec(server)["acquireTime"] == spec["acquireTime"], "renewal keeps acquireTime"

    await a.cancel()
    assert a.stopped.is_set() and a.work_cancelled
    released = lease_spec(server)
    assert (released["holderIdentity"], released["leaseDurationSeconds"]) == ("", 1)
    assert a.leaders == ["a"]


async def test_second_candidate_waits_then_takes_over_after_release(client, server) -> None:
    a = Candidate(client, "a")
    await within(a.leading)
    b = Candidate(client, "b")
    await asyncio.sleep(0.3)
    assert not b.leading.is_set(), "a valid lease held by another is respected"
    assert b.leaders == ["a"]

    await a.cancel()
    await within(b.leading, 2)
    spec = lease_spec(server)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert b.leaders == ["a", "b"]
    await b.cancel()


async def test_an_expired_lease_is_taken_over(client, server) -> None:
    server.put(
        LEASE,
        {
            "metadata": {"name": "kubelite-controllers", "namespace": "kube-system"},
            "spec": {
                "holderIdentity": "dead",
                "leaseDurationSeconds": 1,
                "acquireTime": "2025-01-01T00:00:00.000000Z",
                "renewTime": "2025-01-01T00:00:00.000000Z",
                "leaseTransitions": 4,
            },
        },
    )
    b = Candidate(client, "b")
    await asyncio.sleep(0.5)
    assert not b.leading.is_set(), "expiry is measured from when b first saw the record"
    await within(b.leading, 3)
    spec = lease_spec(server)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 5)
    await b.cancel()


async def test_leader_steps_down_when_it_cannot_renew(client, server) -> None:
    a = Candidate(client, "a")
    await within(a.leading)
    server.fail_next("GET", 503, times=1000)
    async with asyncio.timeout(3):
        await a.task  # run() returns once leadership is lost
    assert a.stopped.is_set() and a.work_cancelled
    assert lease_spec(server)["holderIdentity"] == "a", "a lost lease is not released"


async def test_leading_work_errors_end_the_term(client, server) -> None:
    async def crash() -> None:
        raise RuntimeError("controller crashed")

    elector = LeaderElector(
        client,
        name="kubelite-controllers",
        namespace="kube-system",
        identity="a",
        on_started_leading=crash,
        **FAST,
    )
    with pytest.raises(RuntimeError, match="controller crashed"):
        await elector.run()
    assert lease_spec(server)["holderIdentity"] == ""


def test_timings_are_validated(client) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(
            client,
            name="x",
            namespace="y",
            identity="z",
            on_started_leading=asyncio.sleep,
            lease_duration=5,
            renew_deadline=10,
        )
