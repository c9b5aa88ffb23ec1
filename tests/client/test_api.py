import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from kubelite.api import registry
from kubelite.client import errors
from kubelite.client.api import Client, find_resource, resource_path
from kubelite.client.events import EventRecorder
from kubelite.client.kubeconfig import ClientConfig

from . import FakeAPIServer

DEPLOY = registry.lookup("apps", "v1", "deployments")
POD = registry.lookup("", "v1", "pods")
NODE = registry.lookup("", "v1", "nodes")
NS = registry.lookup("", "v1", "namespaces")
CM = registry.lookup("", "v1", "configmaps")


@pytest.fixture
async def server() -> AsyncIterator[FakeAPIServer]:
    async with FakeAPIServer() as s:
        yield s


@pytest.fixture
async def client(server: FakeAPIServer) -> AsyncIterator[Client]:
    async with Client(server.config, retry_backoff=0.001) as c:
        yield c


def deployment(name: str = "web", namespace: str | None = "default") -> dict:
    meta = {"name": name, "labels": {"app": name}}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {"replicas": 1},
    }


@pytest.mark.parametrize(
    ("res", "kw", "path"),
    [
        (POD, {"namespace": "ns"}, "/api/v1/namespaces/ns/pods"),
        (POD, {}, "/api/v1/pods"),
        (
            POD,
            {"namespace": "ns", "name": "p", "subresource": "binding"},
            "/api/v1/namespaces/ns/pods/p/binding",
        ),
        (DEPLOY, {"namespace": "ns", "name": "web"}, "/apis/apps/v1/namespaces/ns/deployments/web"),
        (NODE, {"namespace": "ignored", "name": "n1"}, "/api/v1/nodes/n1"),
        (
            NS,
            {"name": "kube-system", "subresource": "finalize"},
            "/api/v1/namespaces/kube-system/finalize",
        ),
    ],
    ids=[
        "namespaced list",
        "all namespaces",
        "subresource",
        "group resource",
        "cluster-scoped ignores namespace",
        "namespace subresource",
    ],
)
def test_resource_paths(res, kw, path) -> None:
    assert resource_path(res, **kw) == path


@pytest.mark.parametrize(
    "name", ["deployments", "deployment", "deploy", "Deployment", "deployments.apps"]
)
def test_find_resource_by_any_name(name: str) -> None:
    assert find_resource(name) is DEPLOY


def test_find_resource_unknown() -> None:
    with pytest.raises(LookupError, match="doesn't have a resource type"):
        find_resource("widgets")


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", errors.BadRequest),
        (401, "Unauthorized", errors.Unauthorized),
        (403, "Forbidden", errors.Forbidden),
        (404, "NotFound", errors.NotFound),
        (409, "AlreadyExists", errors.AlreadyExists),
        (409, "Conflict", errors.Conflict),
        (410, "Expired", errors.Gone),
        (422, "Invalid", errors.Invalid),
        (429, "TooManyRequests", errors.TooManyRequests),
        (500, "InternalError", errors.InternalError),
        (503, "ServiceUnavailable", errors.ServerUnavailable),
        (504, "Timeout", errors.ServerUnavailable),
    ],
    ids=lambda v: str(v) if not isinstance(v, type) else v.__name__,
)
def test_status_maps_to_error_class(code: int, reason: str, cls: type) -> None:
    err = errors.error_from_status(
        {"kind": "Status", "code": code, "reason": reason, "message": "m"}
    )
    assert type(err) is cls
    assert (err.code, err.reason, err.message) == (code, reason, "m")
    assert err.retryable == (code in (429, 503, 504))


def test_non_status_error_body_becomes_a_status() -> None:
    status = errors.status_for_body(502, b"bad gateway\n", "text/plain")
    err = errors.error_from_status(status, http_code=502)
    assert isinstance(err, errors.ServerUnavailable)
    assert err.message == "bad gateway"


async def test_crud_round_trip(client: Client, server: FakeAPIServer) -> None:
    created = await client.create(DEPLOY, deployment(namespace="prod"))
    assert server.requests[-1][:2] == ("POST", "/apis/apps/v1/namespaces/prod/deployments")
    assert created["metadata"]["uid"]
    got = await client.get(DEPLOY, "web", "prod")
    assert got == created

    got["spec"]["replicas"] = 3
    updated = await client.update(DEPLOY, got)
    assert updated["spec"]["replicas"] == 3
    with pytest.raises(errors.Conflict) as exc:
        await client.update(DEPLOY, got)  # stale resourceVersion
    assert exc.value.code == 409 and "has been modified" in exc.value.message

    listed = await client.list(DEPLOY, "prod", label_selector="app=web")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
    assert listed["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]

    await client.delete(
        DEPLOY, "web", "prod", propagation_policy="Foreground", grace_period_seconds=0
    )
    with pytest.raises(errors.NotFound) as nf:
        await client.get(DEPLOY, "web", "prod")
    assert nf.value.reason == "NotFound"
    assert nf.value.message == 'deployments.apps "web" not found'
    assert nf.value.status["kind"] == "Status"


async def test_namespace_defaults_to_the_config_namespace(server: FakeAPIServer) -> None:
    config = dataclasses.replace(server.config, namespace="team")
    async with Client(config) as client:
        await client.create(CM, {"metadata": {"name": "c"}, "data": {}})
        await client.get(CM, "c")
    assert [r[1] for r in server.requests] == [
        "/api/v1/namespaces/team/configmaps",
        "/api/v1/namespaces/team/configmaps/c",
    ]


async def test_create_existing_raises_already_exists(client: Client) -> None:
    await client.create(DEPLOY, deployment())
    with pytest.raises(errors.AlreadyExists) as exc:
        await client.create(DEPLOY, deployment())
    assert isinstance(exc.value, errors.Conflict)


async def test_dry_run_and_field_manager_are_sent(client: Client, server: FakeAPIServer) -> None:
    await client.create(DEPLOY, deployment(), dry_run=True, field_manager="me")
    assert server.requests[-1][2] == {"dryRun": "All", "fieldManager": "me"}
    assert server.objects.get(DEPLOY, {}) == {}


@pytest.mark.parametrize(
    ("patch_type", "patch", "content_type", "query"),
    [
        ("merge", {"spec": {"replicas": 5}}, "application/merge-patch+json", {}),
        ("strategic", {"spec": {"replicas": 5}}, "application/strategic-merge-patch+json", {}),
        (
            "json",
            [{"op": "replace", "path": "/spec/replicas", "value": 5}],
            "application/json-patch+json",
            {},
        ),
        (
            "apply",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 5},
            },
            "application/apply-patch+yaml",
            {"fieldManager": "mgr", "force": "true"},
        ),
    ],
    ids=["merge", "strategic", "json", "apply"],
)
async def test_patch_types(client, server, patch_type, patch, content_type, query) -> None:
    await client.create(DEPLOY, deployment())
    kw = {"field_manager": "mgr", "force": True} if patch_type == "apply" else {}
    out = await client.patch(DEPLOY, "web", patch, patch_type=patch_type, **kw)
    assert out["spec"]["replicas"] == 5
    method, path, sent_query, headers = server.requests[-1]
    assert (method, path) == ("PATCH", "/apis/apps/v1/namespaces/default/deployments/web")
    assert headers["Content-Type"] == content_type
    assert sent_query == query


async def test_apply_needs_a_field_manager(client: Client) -> None:
    with pytest.raises(ValueError, match="field_manager"):
        await client.patch(DEPLOY, "web", {}, patch_type="apply")


async def test_wrong_token_is_unauthorized(server: FakeAPIServer) -> None:
    config = dataclasses.replace(server.config, token="wrong")
    async with Client(config) as client:
        with pytest.raises(errors.Unauthorized):
            await client.list(POD)


async def test_reads_are_retried_on_unavailable(client: Client, server: FakeAPIServer) -> None:
    server.fail_next("GET", 503, times=2)
    assert (await client.list(POD))["items"] == []
    assert [r[0] for r in server.requests] == ["GET", "GET", "GET"]


async def test_reads_give_up_after_the_retries(client: Client, server: FakeAPIServer) -> None:
    server.fail_next("GET", 503, times=10)
    with pytest.raises(errors.ServerUnavailable):
        await client.list(POD)
    assert len(server.requests) == 1 + client.read_retries


async def test_writes_are_never_retried(client: Client, server: FakeAPIServer) -> None:
    server.fail_next("POST", 503)
    with pytest.raises(errors.ServerUnavailable):
        await client.create(DEPLOY, deployment())
    assert len(server.requests) == 1


async def test_unreachable_server_is_a_transport_error() -> None:
    async with FakeAPIServer() as s:
        config = s.config
    async with Client(config, retry_backoff=0.001) as client:
        with pytest.raises(errors.TransportError) as exc:
            await client.get(POD, "p")
    assert exc.value.retryable


async def test_list_all_follows_continue_tokens(client: Client, server: FakeAPIServer) -> None:
    for i in range(7):
        server.put(CM, {"metadata": {"name": f"c{i}", "namespace": "default"}})
    listed = await client.list_all(CM, "default", chunk_size=3)
    assert [i["metadata"]["name"] for i in listed["items"]] == [f"c{i}" for i in range(7)]
    assert [r[2].get("continue") for r in server.requests] == [None, "3", "6"]


async def test_list_all_falls_back_when_continue_expires(client, server) -> None:
    for i in range(4):
        server.put(CM, {"metadata": {"name": f"c{i}", "namespace": "default"}})
    server.expire_continue = True
    listed = await client.list_all(CM, chunk_size=2)
    assert len(listed["items"]) == 4
    assert server.requests[-1][2] == {}


async def test_watch_streams_events_and_bookmarks(client: Client, server: FakeAPIServer) -> None:
    server.put(POD, {"metadata": {"name": "old"}})
    rv = str(server.rv)
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        stream = client.watch(POD, "default", resource_version=rv, timeout_seconds=30)
        async with contextlib.aclosing(stream):
            async for type_, obj in stream:
                seen.append(
                    (type_, obj["metadata"].get("name", obj["metadata"]["resourceVersion"]))
                )
                if len(seen) == 4:
                    return

    task = asyncio.create_task(consume())
    await server.wait_for_watchers()
    server.put(POD, {"metadata": {"name": "a"}})
    server.put(POD, {"metadata": {"name": "a"}, "spec": {"x": 1}})
    server.bookmark()
    server.remove(POD, "default", "a")
    await asyncio.wait_for(task, 5)
    assert seen == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("BOOKMARK", str(server.rv - 1)),
        ("DELETED", "a"),
    ]
    assert server.watch_requests()[0] == {
        "watch": "true",
        "resourceVersion": rv,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": "30",
    }


async def test_watch_ends_cleanly_at_the_server_timeout(client: Client, server) -> None:
    stream = client.watch(POD, timeout_seconds=1)
    assert [e async for e in stream] == []


async def test_watch_error_event_raises_gone(client: Client, server: FakeAPIServer) -> None:
    server.put(POD, {"metadata": {"name": "a"}})
    server.put(POD, {"metadata": {"name": "b"}})
    server.compact()
    with pytest.raises(errors.Gone) as exc:
        async for _ in client.watch(POD, resource_version="101"):
            pass
    assert exc.value.code == 410 and exc.value.reason == "Expired"


async def test_dropped_watch_raises_transport_error(client: Client, server) -> None:
    async def consume() -> None:
        async for _ in client.watch(POD, timeout_seconds=30):
            pass

    task = asyncio.create_task(consume())
    await server.wait_for_watchers()
    server.drop_watches()
    with pytest.raises(errors.TransportError):
        await asyncio.wait_for(task, 5)


async def test_watch_carries_objects_larger_than_a_stream_line(client, server) -> None:
    big = "x" * 300_000
    stream = client.watch(CM, timeout_seconds=30)
    task = asyncio.create_task(anext(stream))
    await server.wait_for_watchers()
    server.put(CM, {"metadata": {"name": "big"}, "data": {"v": big}})
    type_, obj = await asyncio.wait_for(task, 5)
    await stream.aclose()
    assert type_ == "ADDED" and obj["data"]["v"] == big


async def test_bind_posts_a_binding(client: Client, server: FakeAPIServer) -> None:
    pod = server.put(POD, {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}})
    await client.bind(pod, "node-1")
    method, path, _, _ = server.requests[-1]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/pods/p/binding")
    assert server.objects[POD][("ns", "p")]["spec"]["nodeName"] == "node-1"


async def test_create_event_has_the_recorder_shape(client: Client, server) -> None:
    pod = server.put(POD, {"metadata": {"name": "p", "namespace": "ns"}})
    ev = await client.create_event(
        pod, reason="Scheduled", message="assigned ns/p to n1", component="default-scheduler"
    )
    assert ev["metadata"]["namespace"] == "ns"
    assert ev["metadata"]["name"].startswith("p.")
    assert ev["involvedObject"] == {
        "kind": "Pod",
        "namespace": "ns",
        "name": "p",
        "uid": pod["metadata"]["uid"],
        "apiVersion": "v1",
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }
    assert ev["source"] == {"component": "default-scheduler"}
    assert ev["reportingComponent"] == "default-scheduler"
    assert (ev["type"], ev["count"]) == ("Normal", 1)
    assert ev["firstTimestamp"] == ev["lastTimestamp"]
    assert ev["firstTimestamp"].endswith("Z")


async def test_event_recorder_counts_repeats(client: Client, server: FakeAPIServer) -> None:
    node = server.put(NODE, {"metadata": {"name": "n1"}})
    recorder = EventRecorder(client, component="kubelet", host="n1")
    for _ in range(3):
        await recorder.record(node, "Warning", "Rebooted", "node rebooted")
    await recorder.record(node, "Normal", "Ready", "node is ready")
    events = sorted(
        server.objects[registry.lookup("", "v1", "events")].values(), key=lambda e: e["reason"]
    )
    assert [(e["reason"], e["count"]) for e in events] == [("Ready", 1), ("Rebooted", 3)]
    assert events[1]["metadata"]["namespace"] == "default"  # cluster-scoped object
    assert events[1]["source"] == {"component": "kubelet", "host": "n1"}


async def test_event_recorder_swallows_api_errors(client: Client, server) -> None:
    server.fail_next("POST", 503)
    node = server.put(NODE, {"metadata": {"name": "n1"}})
    await EventRecorder(client, component="c").record(node, "Normal", "R", "m")


async def test_client_must_be_opened(server: FakeAPIServer) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await Client(server.config).list(POD)


async def test_a_server_url_with_a_path_keeps_it_before_every_request() -> None:
    # Some kubeconfigs reach the API through a proxy under a path
    # (https://proxy/k8s/clusters/c-1): every request goes below it.
    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n')
            return resp
        return web.json_response({"kind": "Namespace", "metadata": {"name": "default"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with Client(ClientConfig(server=f"http://127.0.0.1:{port}/k8s/clusters/c-1/"),
                          read_retries=0) as client:
            await client.get(NS, "default")
            async with contextlib.aclosing(client.watch(POD, "ns")) as events:
                async for _ in events:
                    break
        assert seen == ["/k8s/clusters/c-1/api/v1/namespaces/default",
                        "/k8s/clusters/c-1/api/v1/namespaces/ns/pods?watch=true"
                        "&allowWatchBookmarks=true"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("cuts", [[], [1], [5, 6, 7], list(range(1, 60))],
                         ids=["whole", "first-byte", "mid-line", "byte-by-byte"])
async def test_watch_lines_survive_any_chunking(cuts: list[int]) -> None:
    from kubelite.client.api import _lines

    data = b'{"a":1}\n\n{"b":2}\n  \n{"c":3}\n{"d":"no newline at the end"}'
    bounds = [0, *cuts, len(data)]

    async def chunks():
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            if hi > lo:
                yield data[lo:hi]
    got = [line async for line in _lines(chunks())]
    assert got == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":"no newline at the end"}']
