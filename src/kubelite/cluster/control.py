"""The client side of the supervisor's unix socket, for `kubelite node`, `status`
and `down`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp


class NotRunning(Exception):
    pass


async def call(socket_path: Path, method: str, path: str) -> tuple[int, dict[str, Any]]:
    if not socket_path.exists():
        raise NotRunning(str(socket_path))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket_path)),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.request(method, f"http://kubelite{path}") as resp:
                return resp.status, await resp.json()
    except (aiohttp.ClientConnectionError, FileNotFoundError) as e:
        raise NotRunning(str(e)) from e
