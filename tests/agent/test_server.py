"""The agent's HTTP endpoint: container logs, authentication verdicts, extra routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubelite.agent.podmanager import PodManager
from kubelite.agent.server import PODS, AgentServer
from tests.agent.fakes import Harness, eventually, harness, make_pod


class StubAuth:
    """Tokens: "good" may do everything, "weak" is known but forbidden."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def check(self, *, peer_cert: Any, authorization: str | None, verb: str,
                    subresource: str) -> str:
        self.asked.append((verb, subresource))
        return {"Bearer good": "allowed", "Bearer weak": "forbidden"}.get(
            authorization or "", "unauthenticated")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Harness, AgentServer, StubAuth]]:
    hs = harness(tmp_path)
    pods = PodManager(hs.ctx)
    await pods.start()
    auth = StubAuth()
    server = AgentServer(pods=pods, runtime=hs.runtime, host="127.0.0.1", port=0,
                         ssl_context=None, authenticator=auth)  # type: ignore[arg-type]

    async def hello(request: web.Request) -> web.Response:
        pod = request.app[PODS].find_pod("default", request.match_info["pod"])
        return web.Response(text=f"exec into {pod['metadata']['name']}")

    server.add_route("POST", "/exec/{namespace}/{pod}/{container}", hello)
    await server.start()
    try:
        hs.client.add_pod(make_pod("web"))
        await eventually(lambda: (hs.client.pod("default", "web").get("status") or {}).get(
            "phase") == "Running")
        log = hs.ctx.log_dir(hs.client.pod("default", "web")) / "app" / "0.log"
        log.write_bytes(b"2024-05-01T12:00:00Z stdout F one\n2024-05-01T12:00:01Z stdout F two\n")
        yield hs, server, auth
    finally:
        await server.stop()
        await pods.stop()


async def get(server: AgentServer, path: str, token: str = "good",
              method: str = "GET") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://127.0.0.1:{server.port}{path}",
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.text()


async def test_container_logs(served: tuple[Harness, AgentServer, StubAuth]) -> None:
    _, server, auth = served
    assert await get(server, "/containerLogs/default/web/app") == (200, "one\ntwo\n")
    assert await get(server, "/containerLogs/default/web/app?tailLines=1&timestamps=true") == (
        200, "2024-05-01T12:00:01Z two\n")
    assert auth.asked[0] == ("get", "proxy")


@pytest.mark.parametrize(("path", "token", "status", "text"), [
    ("/containerLogs/default/web/app", "nobody", 401, "Unauthorized"),
    ("/containerLogs/default/web/app", "weak", 403, "Forbidden (user may not get nodes/proxy)"),
    ("/containerLogs/default/nope/app", "good", 404, 'pod "nope" not found in namespace "default"'),
    ("/containerLogs/default/web/other", "good", 400, "container other is not valid for pod web"),
    ("/containerLogs/default/web/app?previous=true", "good", 400,
     'previous terminated container "app" in pod "web" not found'),
    ("/containerLogs/default/web/app?tailLines=x", "good", 400, "invalid tailLines: 'x'"),
    ("/healthz", "nobody", 200, "ok"),
], ids=["no-token", "forbidden", "no-pod", "bad-container", "no-previous", "bad-param",
        "healthz-open"])
async def test_errors(served: tuple[Harness, AgentServer, StubAuth], path: str, token: str,
                      status: int, text: str) -> None:
    _, server, _ = served
    assert await get(server, path, token) == (status, text)


async def test_added_routes_are_guarded(served: tuple[Harness, AgentServer, StubAuth]) -> None:
    _, server, auth = served
    assert await get(server, "/exec/default/web/app", method="POST") == (200, "exec into web")
    assert auth.asked[-1] == ("create", "proxy")
    assert (await get(server, "/exec/default/web/app", "weak", "POST"))[0] == 403
    with pytest.raises(RuntimeError):
        server.add_route("GET", "/late", lambda r: None)  # type: ignore[arg-type,return-value]
