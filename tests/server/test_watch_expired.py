"""A watch from a compacted resourceVersion ends with a 410 Expired ERROR event,
and a continue token past compaction is refused with 410."""

from __future__ import annotations

import socket
import ssl

import aiohttp
import orjson
import yaml

from kubelite.server.app import APIServer, ServerConfig
from kubelite.store.sqlite import SqliteStore


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_watch_and_continue_past_compaction_get_410(tmp_path):
    store = SqliteStore(tmp_path / "state.db", compact_interval=0)
    port = _port()
    async with APIServer(ServerConfig(data_dir=tmp_path, port=port), store):
        cfg = yaml.safe_load((tmp_path / "kubeconfig").read_text())
        headers = {"Authorization": f"Bearer {cfg['users'][0]['user']['token']}"}
        context = ssl.create_default_context(cafile=str(tmp_path / "pki" / "ca.crt"))
        base = f"https://127.0.0.1:{port}/api/v1/namespaces/default/configmaps"
        async with aiohttp.ClientSession(headers=headers,
                                         connector=aiohttp.TCPConnector(ssl=context)) as s:
            versions = []
            for i in range(4):
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}}
                async with s.post(base, json=body) as r:
                    assert r.status == 201
                    versions.append((await r.json())["metadata"]["resourceVersion"])
            first = versions[0]
            async with s.get(base, params={"limit": "2"}) as r:
                token = (await r.json())["metadata"]["continue"]
            later = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}}
            async with s.post(base, json=later) as r:
                assert r.status == 201
            await store.compact(store.revision)
            async with s.get(base, params={"watch": "true", "resourceVersion": first,
                                           "timeoutSeconds": "5"}) as r:
                assert r.status == 200
                event = orjson.loads(await r.content.readline())
            assert event["type"] == "ERROR"
            assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
            async with s.get(base, params={"limit": "2", "continue": token}) as r:
                assert r.status == 410
                assert (await r.json())["reason"] == "Expired"
