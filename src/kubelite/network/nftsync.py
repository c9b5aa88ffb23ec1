"""`nft` itself, and the loop the service proxy and the NetworkPolicy enforcer share: informers mark
the table dirty, a debounced sync writes it in one nft transaction, a failed sync
is retried, and `synced` is set after each success."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Self

from kubelite.client import Informer
from kubelite.tasks import cancelled

log = logging.getLogger(__name__)


class NftError(Exception):
    pass


async def run_nft(script: str, *, netns: str | None = None, args: tuple[str, ...] = ("-f", "-"),
                  ) -> str:
    """`nft` with `script` on stdin, in the named network namespace (the current one
    when None)."""
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}"] if netns else []
    proc = await asyncio.create_subprocess_exec(
        *prefix, "nft", *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        raise NftError(err.decode(errors="replace").strip() or f"nft exited {proc.returncode}")
    return out.decode()


class NftSyncer:
    """Subclasses set `informers` (before calling `watch`) and implement `sync()`."""

    what = "nftables sync"

    def __init__(self, *, netns: str | None, debounce: float, retry: float) -> None:
        self.netns = netns
        self.debounce = debounce
        self.retry = retry
        self.informers: tuple[Informer, ...] = ()
        self.syncs = 0
        # Set after each successful sync; tests and benchmarks wait on it.
        self.synced = asyncio.Event()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def watch(self, *informers: Informer) -> None:
        self.informers = informers
        for informer in informers:
            informer.add_handlers(on_add=self._changed, on_update=self._changed,
                                  on_delete=self._changed)

    def _changed(self, *_objs: Any) -> None:
        self._dirty.set()

    async def sync(self) -> None:
        raise NotImplementedError

    def failed(self) -> None:
        """Called after a failed sync, before the retry."""

    async def start(self) -> None:
        for informer in self.informers:
            informer.start()
        self._task = asyncio.create_task(self._loop(), name=self.what)

    async def stop(self) -> None:
        if self._task is not None:
            await cancelled(self._task)
            self._task = None
        for informer in self.informers:
            await informer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        await asyncio.gather(*(i.has_synced.wait() for i in self.informers))
        self._dirty.set()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.debounce)
            self._dirty.clear()
            try:
                await self.sync()
            except (NftError, OSError) as exc:
                log.warning("%s failed (retry in %.1f s): %s", self.what, self.retry, exc)
                self.failed()
                await asyncio.sleep(self.retry)
                self._dirty.set()
