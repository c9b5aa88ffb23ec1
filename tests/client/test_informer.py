import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from kubelite.api import registry
from kubelite.client.api import Client
from kubelite.client.informer import (
    Cache,
    Informer,
    InformerFactory,
    index_by_node_name,
    object_key,
    split_key,
    strip_managed_fields,
)

from . import FakeAPIServer

POD = registry.lookup("", "v1", "pods")
CM = registry.lookup("", "v1", "configmaps")


@pytest.fixture
async def server() -> AsyncIterator[FakeAPIServer]:
    async with FakeAPIServer() as s:
        yield s


@pytest.fixture
async def client(server: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(server.config, read_retries=0) as c:
        yield c


class Recorder:
    def __init__(self, informer: Informer) -> None:
        self.events: list[tuple[str, str, str]] = []
        informer.add_handlers(
            on_add=lambda o: self._note("add", o),
            on_update=lambda old, new: self._note("update", new, old),
            on_delete=lambda o: self._note("delete", o),
        )

    def _note(self, kind: str, obj: dict, old: dict | None = None) -> None:
        detail = obj.get("spec", {}).get("v", "")
        if old is not None:
            detail = f"{old.get('spec', {}).get('v', '')}->{detail}"
        self.events.append((kind, object_key(obj), str(detail)))

    async def wait_for(self, count: int) -> list[tuple[str, str, str]]:
        async with asyncio.timeout(5):
            while len(self.events) < count:
                await asyncio.sleep(0.005)
        return self.events


def pod(name: str, v: str = "1", node: str | None = None, ns: str = "default") -> dict:
    spec: dict = {"v": v}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": ns, "labels": {"app": "x"}}, "spec": spec}


def make_informer(client: Client, **kw) -> Informer:
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("indexers", {"node": index_by_node_name})
    return Informer(client, POD, **kw)


async def running(informer: Informer) -> Informer:
    informer.start()
    async with asyncio.timeout(5):
        await informer.has_synced.wait()
    return informer


@pytest.mark.parametrize(
    ("key", "parts"), [("ns/a", ("ns", "a")), ("node-1", (None, "node-1"))], ids=["ns", "cluster"]
)
def test_split_key(key: str, parts: tuple) -> None:
    assert split_key(key) == parts


def test_cache_indexes_follow_updates_and_deletes() -> None:
    cache = Cache({"node": index_by_node_name})
    cache.put("default/a", pod("a", node="n1"))
    cache.put("other/b", pod("b", node="n1", ns="other"))
    assert {object_key(o) for o in cache.by_index("node", "n1")} == {"default/a", "other/b"}
    cache.put("default/a", pod("a", node="n2"))
    assert [object_key(o) for o in cache.by_index("node", "n1")] == ["other/b"]
    assert [object_key(o) for o in cache.by_index("namespace", "default")] == ["default/a"]
    cache.pop("other/b")
    assert cache.by_index("node", "n1") == []
    with pytest.raises(KeyError):
        cache.by_index("missing", "x")


def test_indexers_added_later_index_existing_objects() -> None:
    cache = Cache()
    cache.put("default/a", pod("a", node="n1"))
    cache.add_indexers({"node": index_by_node_name})
    assert [object_key(o) for o in cache.by_index("node", "n1")] == ["default/a"]


async def test_list_then_watch_fills_cache_and_calls_handlers(client, server) -> None:
    server.put(POD, pod("a", node="n1"))
    server.put(POD, pod("b"))
    list_rv = str(server.rv)
    informer = make_informer(client)
    rec = Recorder(informer)
    await running(informer)
    assert rec.events == [("add", "default/a", "1"), ("add", "default/b", "1")]
    assert informer.get("default/a")["kind"] == "Pod", "list items get apiVersion/kind back"

    await server.wait_for_watchers()
    server.put(POD, pod("a", "2", node="n2"))
    server.put(POD, pod("c"))
    server.remove(POD, "default", "b")
    await rec.wait_for(5)
    assert rec.events[2:] == [
        ("update", "default/a", "1->2"),
        ("add", "default/c", "1"),
        ("delete", "default/b", "1"),
    ]
    assert sorted(o["metadata"]["name"] for o in informer.list()) == ["a", "c"]
    assert [o["metadata"]["name"] for o in informer.by_index("node", "n2")] == ["a"]
    assert informer.by_index("node", "n1") == []
    watch = server.watch_requests()[0]
    assert watch["resourceVersion"] == list_rv and watch["allowWatchBookmarks"] == "true"
    await informer.stop()


async def test_resumes_from_last_seen_version_after_a_dropped_watch(client, server) -> None:
    server.put(POD, pod("a"))
    informer = make_informer(client)
    rec = Recorder(informer)
    await running(informer)
    await server.wait_for_watchers()
    server.put(POD, pod("a", "2"))
    await rec.wait_for(2)
    seen_rv = str(server.rv)

    server.drop_watches()
    await asyncio.sleep(0.02)
    server.put(POD, pod("b"))  # happens while no watch is open
    await rec.wait_for(3)
    assert rec.events[2] == ("add", "default/b", "1")
    watches = server.watch_requests()
    assert watches[1]["resourceVersion"] == seen_rv
    lists = [r for r in server.requests if r[0] == "GET" and "watch" not in r[2]]
    assert len(lists) == 1, "a dropped watch resumes without relisting"
    await informer.stop()


async def test_bookmarks_advance_the_resume_version(client, server) -> None:
    server.put(POD, pod("a"))
    informer = make_informer(client)
    await running(informer)
    await server.wait_for_watchers()
    server.put(CM, {"metadata": {"name": "unrelated"}})  # moves the global version on
    server.bookmark()
    async with asyncio.timeout(5):
        while informer.last_resource_version != str(server.rv):
            await asyncio.sleep(0.005)
    server.drop_watches()
    await server.wait_for_watch_requests(2)
    assert server.watch_requests()[1]["resourceVersion"] == str(server.rv)
    await informer.stop()


async def test_relists_on_410_and_synthesizes_deletes(client, server) -> None:
    server.put(POD, pod("stays"))
    server.put(POD, pod("goes", "last"))
    informer = make_informer(client)
    rec = Recorder(informer)
    await running(informer)
    await server.wait_for_watchers()

    server.drop_watches()
    server.remove_quietly(POD, "default", "goes")
    server.put(POD, pod("new"))
    server.put(POD, pod("stays", "2"))
    server.compact()
    await rec.wait_for(5)
    assert sorted(rec.events[2:]) == [
        ("add", "default/new", "1"),
        ("delete", "default/goes", "last"),
        ("update", "default/stays", "1->2"),
    ]
    assert sorted(informer.cache.keys()) == ["default/new", "default/stays"]
    lists = [r for r in server.requests if r[0] == "GET" and "watch" not in r[2]]
    assert len(lists) == 2
    await server.wait_for_watchers()
    assert informer.last_resource_version == str(server.rv)
    await informer.stop()


async def test_backs_off_and_recovers_from_server_errors(client, server) -> None:
    server.put(POD, pod("a"))
    server.fail_next("GET", 503, times=3)
    informer = await running(make_informer(client))
    assert informer.get("default/a") is not None
    assert len([r for r in server.requests if r[0] == "GET"]) == 4
    await informer.stop()


async def test_a_failing_handler_does_not_stop_the_informer(client, server) -> None:
    server.put(POD, pod("a"))
    informer = make_informer(client)

    def boom(obj: dict) -> None:
        raise RuntimeError("handler bug")

    informer.add_handlers(on_add=boom)
    rec = Recorder(informer)
    await running(informer)
    await server.wait_for_watchers()
    server.put(POD, pod("b"))
    assert await rec.wait_for(2) == [("add", "default/a", "1"), ("add", "default/b", "1")]
    await informer.stop()


async def test_late_handlers_get_the_cache_replayed(client, server) -> None:
    server.put(POD, pod("a"))
    informer = await running(make_informer(client))
    rec = Recorder(informer)
    assert rec.events == [("add", "default/a", "1")]
    await informer.stop()


async def test_resync_redelivers_cached_objects_as_updates(client, server) -> None:
    server.put(POD, pod("a"))
    informer = make_informer(client, resync=0.02)
    rec = Recorder(informer)
    await running(informer)
    events = await rec.wait_for(3)
    assert events[1:3] == [("update", "default/a", "1->1")] * 2
    await informer.stop()


async def test_selectors_and_namespace_are_passed_through(client, server) -> None:
    server.put(POD, pod("a", ns="one"))
    server.put(POD, pod("b", ns="two"))
    informer = await running(
        make_informer(
            client, namespace="two", label_selector="app=x", field_selector="metadata.name=b"
        )
    )
    assert informer.cache.keys() == ["two/b"]
    await server.wait_for_watchers()
    method, path, query, _ = server.requests[-1]
    assert path == "/api/v1/namespaces/two/pods"
    assert (query["labelSelector"], query["fieldSelector"]) == ("app=x", "metadata.name=b")
    await informer.stop()


async def test_stop_closes_the_watch(client, server) -> None:
    informer = await running(make_informer(client))
    await server.wait_for_watchers()
    await informer.stop()
    assert not informer.running
    async with asyncio.timeout(5):
        while server.watchers:
            await asyncio.sleep(0.005)


async def test_factory_shares_informers(client: Client, server: FakeAPIServer) -> None:
    factory = InformerFactory(client)
    first = factory.informer(POD)
    again: Callable = factory.informer
    assert again(POD) is first
    assert factory.informer(POD, namespace="x") is not first
    server.put(POD, pod("a", ns="x"))
    factory.start()
    async with asyncio.timeout(5):
        await factory.wait_for_sync()
    assert first.cache.keys() == ["x/a"]
    await factory.stop()


async def test_a_factory_transform_strips_managed_fields_from_listed_and_watched_objects(
        client, server) -> None:
    managed = [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {}}}]
    listed = pod("a")
    listed["metadata"]["managedFields"] = managed
    server.put(POD, listed)
    factory = InformerFactory(client, transform=strip_managed_fields)
    informer = factory.informer(POD)
    await running(informer)
    assert "managedFields" not in informer.get("default/a")["metadata"]
    await server.wait_for_watchers()
    watched = pod("b")
    watched["metadata"]["managedFields"] = managed
    server.put(POD, watched)
    async with asyncio.timeout(5):
        while informer.get("default/b") is None:
            await asyncio.sleep(0.01)
    assert "managedFields" not in informer.get("default/b")["metadata"]
    assert informer.get("default/b")["metadata"]["labels"] == {"app": "x"}
    await informer.stop()
