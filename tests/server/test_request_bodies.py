"""Request bodies with and without a Content-Length: read whole, refused past the
apiserver's 3 MiB with 413."""

from __future__ import annotations

import orjson

from kubelite.store.sqlite import SqliteStore
from tests.server.live import admin_session

CM_PATH = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, size: int) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                         "data": {"x": "a" * size}})


async def chunked(body: bytes):
    for i in range(0, len(body), 50_000):
        yield body[i:i + 50_000]


async def test_bodies_with_and_without_a_length(tmp_path) -> None:
    async with admin_session(tmp_path, SqliteStore(tmp_path / "state.db")) as (s, base):
        headers = {"Content-Type": "application/json"}
        async with s.post(base + CM_PATH, data=configmap("sized", 200_000),
                          headers=headers) as r:
            assert r.status == 201
        async with s.post(base + CM_PATH, data=chunked(configmap("chunked", 200_000)),
                          headers=headers) as r:
            assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert r.status == 201
            assert len((await r.json())["data"]["x"]) == 200_000
        async with s.post(base + CM_PATH, data=chunked(configmap("huge", 4 << 20)),
                          headers=headers) as r:
            assert r.status == 413
            assert (await r.json())["kind"] == "Status"
        async with s.get(base + CM_PATH) as r:
            names = {item["metadata"]["name"] for item in (await r.json())["items"]}
        assert names == {"sized", "chunked"}
