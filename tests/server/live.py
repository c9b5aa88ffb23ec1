"""An API server on a temporary data dir and an HTTPS session to it as the admin."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yaml

from kubelite.server.app import APIServer, ServerConfig
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port


@contextlib.asynccontextmanager
async def admin_session(data_dir: Path, store: SqliteStore
                        ) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """(session, https://127.0.0.1:PORT) with the server running on `store`."""
    port = free_port()
    async with APIServer(ServerConfig(data_dir=data_dir, port=port), store):
        cfg = yaml.safe_load((data_dir / "kubeconfig").read_text())
        headers = {"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"}
        context = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
        async with aiohttp.ClientSession(headers=headers,
                                         connector=aiohttp.TCPConnector(ssl=context)) as s:
            yield s, f"https://127.0.0.1:{port}"
