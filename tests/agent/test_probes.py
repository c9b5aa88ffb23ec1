"""Probe handlers against real sockets, on the host and inside a network namespace,
and the thresholds of ProbeWorker."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from kubelite.agent.probes import ProbeWorker, Target, run_handler
from kubelite.runtime.base import ContainerID
from tests.agent.fakes import FakeRuntime
from tests.ports import free_port


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def broken(_r: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


def host_target(**ports: int) -> Target:
    return Target(container_id=ContainerID("c1"), netns_path="", pod_ip="127.0.0.1", ports=ports)


@pytest.mark.parametrize(("handler", "ok", "message"), [
    ({"httpGet": {"path": "/healthz", "port": "PORT"}}, True, ""),
    ({"httpGet": {"path": "/healthz", "port": "web"}}, True, ""),
    ({"httpGet": {"path": "/broken", "port": "PORT"}}, False,
     "HTTP probe failed with statuscode: 500, body: boom"),
    ({"tcpSocket": {"port": "PORT"}}, True, ""),
    ({"tcpSocket": {"port": "CLOSED"}}, False, "dial tcp 127.0.0.1:CLOSED: connect: connection refused"),
], ids=["http-ok", "http-named-port", "http-500", "tcp-ok", "tcp-refused"])
async def test_network_handlers(http_port: int, handler: dict[str, Any], ok: bool,
                                message: str) -> None:
    closed = free_port()
    action = next(iter(handler.values()))
    action["port"] = {"PORT": http_port, "CLOSED": closed}.get(action["port"], action["port"])
    result = await run_handler(handler, runtime=FakeRuntime(), target=host_target(web=http_port),
                               timeout=2)
    assert result == (ok, message.replace("CLOSED", str(closed)))


async def test_exec_handler_and_timeout() -> None:
    rt = FakeRuntime()
    rt.exec_handler = lambda _cid, cmd: (0 if cmd == ["true"] else 1, b"out")
    assert await run_handler({"exec": {"command": ["true"]}}, runtime=rt, target=host_target(),
                             timeout=1) == (True, "out")
    assert await run_handler({"exec": {"command": ["false"]}}, runtime=rt, target=host_target(),
                             timeout=1) == (False, "out")


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace held by a sleeping process (only its loopback)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("network namespaces need root and unshare")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not enter a new namespace"
            time.sleep(0.01)
        yield path
    finally:
        proc.kill()
        proc.wait()


async def test_probes_connect_from_inside_the_pod_namespace(http_port: int, netns: str) -> None:
    # The host listens on the port; inside the pod's namespace nothing does.
    handler = {"tcpSocket": {"port": http_port}}
    target = Target(container_id=ContainerID("c1"), netns_path=netns, pod_ip="")
    ok, message = await run_handler(handler, runtime=FakeRuntime(), target=target, timeout=2)
    # Refused, or unreachable while that namespace's loopback is down: never the host's.
    assert not ok and message.startswith(f"dial tcp 127.0.0.1:{http_port}: connect: ")
    # An explicit host is reached from the host's namespace, as kubelet does.
    handler = {"tcpSocket": {"port": http_port, "host": "127.0.0.1"}}
    assert await run_handler(handler, runtime=FakeRuntime(), target=target, timeout=2) == (True, "")


async def test_worker_thresholds() -> None:
    outcomes = iter([False, False, True, True, False])
    results: list[tuple[str, bool]] = []
    failures: list[str] = []

    async def run(_timeout: float) -> tuple[bool, str]:
        return next(outcomes, False), "nope"

    worker = ProbeWorker("readiness", "app", {"periodSeconds": 0.01, "successThreshold": 2,
                                              "failureThreshold": 2}, run=run,
                         on_result=lambda k, c, ok, m: results.append((c, ok)),
                         on_failure=lambda k, c, m: failures.append(m))
    worker.start()
    # Periods are at least 0.1 s.
    await asyncio.sleep(0.6)
    await worker.stop()
    assert results[:2] == [("app", False), ("app", True)]
    assert failures[:2] == ["nope", "nope"]
