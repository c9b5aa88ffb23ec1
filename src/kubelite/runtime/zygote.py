"""The runtime's end of the shim zygote (shim.py): one long-lived small process per
runtime that forks a shim for each container, so that starting a container costs a
fork instead of a new Python interpreter.

Requests and answers are JSON lines over the zygote's stdin and stdout, matched by
container id; many creations are in flight at once. A zygote that died (killed,
or its agent restarted) is started again on the next request; the shims it made
live on, since each belongs to no one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SHIM = Path(__file__).with_name("shim.py")


class ShimZygote:
    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def _ensure(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", "-S", str(SHIM), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, cwd="/")
                self._reader = asyncio.create_task(self._read(self._proc),
                                                   name="shim zygote answers")
            return self._proc

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            try:
                answer = json.loads(line)
            except ValueError:
                log.warning("shim zygote said %r", line[:200])
                continue
            fut = self._waiting.pop(answer.get("id", ""), None)
            if fut is not None and not fut.done():
                fut.set_result(answer)
        await proc.wait()
        for cid, fut in list(self._waiting.items()):
            if not fut.done():
                fut.set_result({"ok": False, "error": "the shim zygote exited"})
            self._waiting.pop(cid, None)

    async def start(self, args: dict[str, Any]) -> dict[str, Any]:
        """Start the shim for container `args["id"]`; its report ({"ok", "pid", ...})."""
        proc = await self._ensure()
        assert proc.stdin is not None
        fut = self._waiting[args["id"]] = asyncio.get_running_loop().create_future()
        proc.stdin.write(json.dumps(args).encode() + b"\n")
        await proc.stdin.drain()
        return await fut

    async def close(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            await self._proc.wait()
        if self._reader is not None:
            await self._reader
