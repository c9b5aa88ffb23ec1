"""A child process kept running: started, restarted with back-off when it dies,
stopped with SIGTERM (then SIGKILL) when its parent shuts down.

`kubelite server` runs its controllers this way: an API client in a process of
its own uses the second core and keeps its caches out of the API server's memory,
as kube-controller-manager beside kube-apiserver.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys

from kubelite.tasks import cancelled

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """In the child: SIGTERM when the parent dies, even by SIGKILL (prctl
    PR_SET_PDEATHSIG), so that no controller outlives its server."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class Supervised:
    def __init__(self, name: str, argv: list[str], *, max_backoff: float = 10.0) -> None:
        self.name = name
        self.argv = argv
        self.max_backoff = max_backoff
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def kubelite(cls, name: str, *args: str) -> Supervised:
        return cls(name, [sys.executable, "-m", "kubelite.cli.main", *args])

    async def _loop(self) -> None:
        backoff = 0.5
        while True:
            loop = asyncio.get_running_loop()
            started = loop.time()
            self._proc = await asyncio.create_subprocess_exec(*self.argv,
                                                              preexec_fn=_die_with_parent)
            code = await self._proc.wait()
            log.warning("%s exited with %s; restarting", self.name, code)
            backoff = 0.5 if loop.time() - started > 30 else min(backoff * 2, self.max_backoff)
            await asyncio.sleep(backoff)

    async def __aenter__(self) -> Supervised:
        self._task = asyncio.create_task(self._loop(), name=f"supervise {self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            await cancelled(self._task)
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
