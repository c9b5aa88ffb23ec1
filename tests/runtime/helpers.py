"""Helpers for runtime tests: waiting, reading CRI logs, running execs to completion."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kubelite.runtime.base import ContainerID, ContainerStatus, ExecProcess
from kubelite.runtime.runc import RuncRuntime

CRI_LINE = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr) ([FP]) (.*)$")


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def wait_exited(rt: RuncRuntime, cid: ContainerID, timeout: float = 10.0
                      ) -> ContainerStatus:
    async def exited() -> bool:
        return (await rt.container_status(cid)).state == "exited"
    await wait_for(exited, timeout)
    return await rt.container_status(cid)


def log_lines(path: Path) -> list[tuple[str, str, str]]:
    """(stream, tag, content) of each CRI log line; every line must be well formed."""
    out = []
    for raw in path.read_bytes().splitlines():
        m = CRI_LINE.match(raw)
        assert m, f"not a CRI log line: {raw!r}"
        out.append((m[2].decode(), m[3].decode(), m[4].decode()))
    return out


async def run_exec(p: ExecProcess, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    async def collect(stream: object) -> bytes:
        return b"".join([chunk async for chunk in stream])  # type: ignore[attr-defined]
    out = asyncio.create_task(collect(p.stdout()))
    err = asyncio.create_task(collect(p.stderr()))
    if stdin is not None:
        await p.write_stdin(stdin)
        await p.close_stdin()
    code = await asyncio.wait_for(p.wait(), 10)
    return code, await asyncio.wait_for(out, 5), await asyncio.wait_for(err, 5)
