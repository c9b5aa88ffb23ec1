"""The agent's API client: kubelite's Client with at most a few requests in
flight. Every parallel request costs the pool one more TLS connection (about
200 KB with OpenSSL's buffers), and a burst of pod starts would otherwise open
dozens; watches, which hold their connection for minutes, are not counted.

It never takes the API server's local socket, which an admin kubeconfig names: an
agent reaches the API through its node's network, so that cutting a node off cuts
its agent off too, as on a machine of its own."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from kubelite.client import Client, ClientConfig

MAX_IN_FLIGHT = 4


class AgentClient(Client):
    def __init__(self, config: ClientConfig, *, max_in_flight: int = MAX_IN_FLIGHT,
                 **options: Any) -> None:
        super().__init__(dataclasses.replace(config, socket=None), **options)
        self._gate = asyncio.Semaphore(max_in_flight)

    async def request(self, method: str, path: str, **options: Any) -> Any:
        async with self._gate:
            return await super().request(method, path, **options)
