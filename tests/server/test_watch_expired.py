"""A watch from a compacted resourceVersion ends with a 410 Expired ERROR event,
and a continue token past compaction is refused with 410."""

from __future__ import annotations

import orjson

from kubelite.store.sqlite import SqliteStore
from tests.server.live import admin_session


async def test_watch_and_continue_past_compaction_get_410(tmp_path):
    store = SqliteStore(tmp_path / "state.db", compact_interval=0)
    async with admin_session(tmp_path, store) as (s, server):
        base = f"{server}/api/v1/namespaces/default/configmaps"
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
