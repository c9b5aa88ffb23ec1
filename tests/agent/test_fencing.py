"""Self-fencing against the fake runtime: a silent lease kills the pods and keeps them
dead; a renewal brings back only the pods still bound here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubelite.agent.fencing import SelfFencing, kill_all_containers, resume_pods
from kubelite.agent.podmanager import PodManager
from kubelite.tasks import cancelled
from tests.agent.fakes import FakeRuntime, Harness, eventually, harness, make_pod


@pytest.fixture
async def fenced_node(tmp_path: Path) -> AsyncIterator[tuple[Harness, PodManager, SelfFencing,
                                                             list[str]]]:
    hs = harness(tmp_path)
    pods = PodManager(hs.ctx)
    await pods.start()
    order: list[str] = []

    async def on_fence() -> None:
        order.append("fence")
        await pods.stop()

    async def on_recover() -> None:
        order.append("recover")
        await resume_pods(pods)
        order.append("ready")

    fencing = SelfFencing(runtime=hs.runtime, timeout=0.3, settle=0.2,
                          on_fence=on_fence, on_recover=on_recover)
    task = asyncio.create_task(fencing.run())
    try:
        yield hs, pods, fencing, order
    finally:
        await cancelled(task)
        await pods.stop()


def running(hs: Harness, name: str) -> bool:
    """Whether a container of pod `name` runs."""
    sandboxes = {sid for sid, sb in hs.runtime.sandboxes.items() if sb.config.name == name}
    return any(c.status.state == "running" and c.status.sandbox_id in sandboxes
               for c in hs.runtime.containers.values())


async def test_renewals_keep_the_node_unfenced(fenced_node) -> None:
    hs, _, fencing, order = fenced_node
    hs.client.add_pod(make_pod("web"))
    await eventually(lambda: running(hs, "web"))
    for _ in range(8):
        fencing.renewed()
        await asyncio.sleep(0.1)
    assert order == [] and fencing.fences == 0 and running(hs, "web")


async def test_silence_kills_every_container_and_nothing_restarts_it(fenced_node) -> None:
    hs, _, fencing, order = fenced_node
    hs.client.add_pod(make_pod("web"))
    hs.client.add_pod(make_pod("db"))
    await eventually(lambda: running(hs, "web") and running(hs, "db"))
    await eventually(lambda: fencing.fenced, timeout=2)
    await eventually(lambda: not running(hs, "web") and not running(hs, "db"))
    kills = [c for c in hs.runtime.calls if c[0] == "stop"]
    assert {c[1] for c in kills} == {"app"} and all(c[2] == 0 for c in kills)
    await asyncio.sleep(0.5)
    assert not running(hs, "web") and not running(hs, "db")
    assert order == ["fence"]


async def test_on_reconnect_pods_gone_are_swept_before_ready_and_the_rest_restart(
        fenced_node) -> None:
    hs, pods, fencing, order = fenced_node
    hs.client.add_pod(make_pod("web"))
    hs.client.add_pod(make_pod("db"))
    await eventually(lambda: running(hs, "web") and running(hs, "db"))
    await eventually(lambda: fencing.fenced, timeout=2)
    await eventually(lambda: not running(hs, "db"))
    # While the node was away the controller deleted db; web is still bound here.
    hs.client.remove_pod("default", "db")
    hs.client.add_pod(make_pod("cache"))

    async def heartbeat() -> None:
        while True:
            fencing.renewed()
            await asyncio.sleep(0.05)

    beating = asyncio.create_task(heartbeat())
    try:
        await eventually(lambda: order[-1:] == ["ready"], timeout=3)
        names = {sb.config.name for sb in hs.runtime.sandboxes.values()}
        assert "db" not in names
        await eventually(lambda: running(hs, "cache") and running(hs, "web"))
        assert not fencing.fenced and fencing.fences == 1
    finally:
        beating.cancel()


async def test_a_renewal_during_settle_that_fails_again_keeps_the_node_fenced(
        fenced_node) -> None:
    hs, _, fencing, order = fenced_node
    await eventually(lambda: fencing.fenced, timeout=2)
    fencing.renewed()
    fencing._last -= 1.0  # the renewal is already older than the timeout: silent again
    await asyncio.sleep(0.4)
    assert fencing.fenced and order == ["fence"]


async def test_kill_all_containers_counts_only_running_ones() -> None:
    runtime = FakeRuntime()
    assert await kill_all_containers(runtime) == 0


def test_a_fencing_timeout_must_be_positive() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(ValueError):
        SelfFencing(runtime=FakeRuntime(), timeout=0, on_fence=nothing, on_recover=nothing)
