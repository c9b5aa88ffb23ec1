"""An idle watch with allowWatchBookmarks gets BOOKMARKs and stays open: events
written after a bookmark arrive on the same stream, and the stream ends at
timeoutSeconds."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from kubelite.server import reads
from kubelite.store.sqlite import SqliteStore
from tests.server.live import admin_session


async def test_bookmarks_keep_an_idle_watch_open(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(reads, "BOOKMARK_INTERVAL", 0.3)
    async with admin_session(tmp_path, SqliteStore(tmp_path / "state.db")) as (s, server):
        base = f"{server}/api/v1/namespaces/default/configmaps"
        async with s.get(base) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        started = time.monotonic()
        async with s.get(base, params={"watch": "true", "resourceVersion": rv,
                                       "allowWatchBookmarks": "true",
                                       "timeoutSeconds": "3"}) as w:
            first = orjson.loads(await asyncio.wait_for(w.content.readline(), 2))
            second = orjson.loads(await asyncio.wait_for(w.content.readline(), 2))
            assert [first["type"], second["type"]] == ["BOOKMARK", "BOOKMARK"]
            assert second["object"]["metadata"]["resourceVersion"] == rv
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}
            async with s.post(base, json=body) as r:
                assert r.status == 201
                created = (await r.json())["metadata"]["resourceVersion"]
            seen = []
            while (line := await asyncio.wait_for(w.content.readline(), 5)):
                seen.append(orjson.loads(line))
        assert 2.5 < time.monotonic() - started < 4.5
        added = [e for e in seen if e["type"] == "ADDED"]
        assert [e["object"]["metadata"]["name"] for e in added] == ["late"]
        # bookmarks after the event carry its resourceVersion
        later = [e for e in seen[seen.index(added[0]):] if e["type"] == "BOOKMARK"]
        assert later and later[-1]["object"]["metadata"]["resourceVersion"] == created
