"""get, list (with selectors and paging) and watch, as JSON or as kubectl's Tables."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from kubelite.api import errors
from kubelite.api.conversion import from_stored
from kubelite.api.registry import Resource
from kubelite.api.selectors import FieldSelector, LabelSelector
from kubelite.api.tables import to_table
from kubelite.server import codec
from kubelite.server.context import Target, ctx, query_flag, query_int
from kubelite.server.objects import decode, parse_rv, with_rv
from kubelite.store import errors as store_errors
from kubelite.store.base import KV, Event

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]

# How often an idle watch with allowWatchBookmarks gets a BOOKMARK (the apiserver
# sends them about once a minute; a shorter interval lets clients resume closer).
BOOKMARK_INTERVAL = 10.0
# The apiserver's --min-request-timeout: a watch without timeoutSeconds lasts a
# random time between this and twice this.
MIN_REQUEST_TIMEOUT = 1800


def selectors(request: web.Request, res: Resource) -> Matcher | None:
    label_text = request.query.get("labelSelector", "")
    field_text = request.query.get("fieldSelector", "")
    label = LabelSelector.parse(label_text) if label_text else None
    field = FieldSelector.parse(field_text, resource_plural=res.plural) if field_text else None
    if label is None and field is None:
        return None

    def match(obj: Obj) -> bool:
        if label is not None and not label.matches(obj["metadata"].get("labels")):
            return False
        return field is None or field.matches(obj)

    return match


def _include_object(request: web.Request) -> str:
    return request.query.get("includeObject", "Metadata")


async def handle_get(request: web.Request, t: Target) -> web.Response:
    assert t.name is not None
    objects = ctx(request).objects
    if codec.wants_table(request):
        obj = await objects.get(t.res, t.namespace, t.name)
        return codec.json_response(to_table(t.res.plural, [obj],
                                            include_object=_include_object(request)))
    if t.res.stored_as:
        return codec.json_response(await objects.get(t.res, t.namespace, t.name))
    kv = await objects.store.get(t.res.key(t.namespace, t.name))
    if kv is None:
        raise errors.not_found(t.res.group, t.res.plural, t.name)
    return codec.raw_json(with_rv(kv))


def _encode_continue(revision: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": revision, "start": key})).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start "
                                 "resourceVersion (version meta.k8s.io/v1)") from None


async def handle_list(request: web.Request, t: Target) -> web.StreamResponse:
    if query_flag(request, "watch"):
        return await handle_watch(request, t)
    match = selectors(request, t.res)
    limit = query_int(request, "limit")
    if limit is not None and limit <= 0:
        limit = None
    revision: int | None = None
    start_after: str | None = None
    token = request.query.get("continue")
    if token:
        revision, start_after = _decode_continue(token)
    objects = ctx(request).objects
    table = codec.wants_table(request)
    if match is None and not table and not t.res.stored_as:
        kvs, rev, last_key = await objects.list_kvs(
            t.res, t.namespace, revision=revision, start_after=start_after, limit=limit)
        raw: list[bytes] | None = [with_rv(kv) for kv in kvs]
        items: list[Obj] = []
    else:
        raw = None
        items, rev, last_key = await objects.list(
            t.res, t.namespace, revision=revision, start_after=start_after, limit=limit,
            keep=match)
    meta: dict[str, Any] = {"resourceVersion": str(rev)}
    if last_key is not None:
        meta["continue"] = _encode_continue(rev, last_key)
    if table:
        return codec.json_response(to_table(t.res.plural, items,
                                            include_object=_include_object(request),
                                            list_meta=meta))
    head = orjson.dumps({"kind": f"{t.res.kind}List", "apiVersion": t.res.api_version,
                         "metadata": meta})
    body = b",".join(raw) if raw is not None else b",".join(orjson.dumps(o) for o in items)
    # The list is assembled from stored bytes: objects are never decoded to be listed.
    return codec.raw_json(head[:-1] + b',"items":[' + body + b"]}")


class _PerEvent:
    """Forms derived from recent events (decoded objects, encoded watch lines),
    built once for all the watchers that receive an event. Bounded: the store keeps
    its event window as bytes, and derived copies must not pile up beside it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[tuple, Any] = {}

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        value = self._items.get(key)
        if value is None:
            value = make()
            if len(self._items) >= self._size:
                # dicts keep insertion order: drop the oldest entry.
                del self._items[next(iter(self._items))]
            self._items[key] = value
        return value


_DECODED = _PerEvent(256)
_LINES = _PerEvent(1024)


def _decoded(event: Event, *, prev: bool = False) -> Obj:
    if prev:
        return _DECODED.get((event.revision, event.key, True),
                            lambda: orjson.loads(event.prev))  # type: ignore[arg-type]
    return _DECODED.get((event.revision, event.key, False),
                        lambda: decode(KV(event.key, event.value, 0, event.revision)))


def _line(event: Event) -> bytes:
    def make() -> bytes:
        obj = with_rv(KV(event.key, event.value, 0, event.revision))
        return b'{"type":"%s","object":%s}\n' % (event.type.encode(), obj)

    return _LINES.get((event.revision, event.key), make)


def _filter(event: Event, match: Matcher | None, name: str | None) -> tuple[str, Obj] | None:
    """The event as this watcher sees it: selector transitions become ADDED/DELETED,
    as the apiserver's watch cache filters."""
    obj = _decoded(event)
    if name is not None and obj["metadata"].get("name") != name:
        return None
    if match is None:
        return event.type, obj
    now = match(obj)
    if event.type != "MODIFIED":
        return (event.type, obj) if now else None
    before = True if event.prev is None else match(_decoded(event, prev=True))
    if now and before:
        return "MODIFIED", obj
    if now:
        return "ADDED", obj
    if before:
        return "DELETED", obj
    return None


def _exact_name(request: web.Request) -> str | None:
    """A fieldSelector of metadata.name=X (kubectl wait, rollout, delete) narrows the watch."""
    for part in request.query.get("fieldSelector", "").split(","):
        if part.startswith("metadata.name=") and "!" not in part:
            return part.split("=", 1)[1].lstrip("=")
    return None


async def handle_watch(request: web.Request, t: Target) -> web.StreamResponse:
    objects = ctx(request).objects
    match = selectors(request, t.res)
    name = t.name or _exact_name(request)
    since = parse_rv(request.query.get("resourceVersion"))
    bookmarks = query_flag(request, "allowWatchBookmarks")
    timeout = query_int(request, "timeoutSeconds")
    if timeout is None or timeout <= 0:
        timeout = random.randint(MIN_REQUEST_TIMEOUT, 2 * MIN_REQUEST_TIMEOUT)
    table = codec.wants_table(request)
    include = _include_object(request)
    initial: list[Obj] = []
    if not since:
        initial, since, _ = await objects.list(t.res, t.namespace, keep=match)
        if name is not None:
            initial = [o for o in initial if o["metadata"].get("name") == name]
    stream = objects.watch(t.res, t.namespace, since)

    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Cache-Control": "no-cache"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    columns_sent = False

    async def send(kind: str, obj: Obj) -> None:
        nonlocal columns_sent
        if table and kind != "BOOKMARK" and kind != "ERROR":
            body = to_table(t.res.plural, [obj], include_object=include,
                            with_columns=not columns_sent)
            columns_sent = True
        else:
            body = obj
        await response.write(orjson.dumps({"type": kind, "object": body}) + b"\n")

    last_rv = since

    async def pump() -> None:
        nonlocal last_rv
        async for batch in stream:
            last_rv = batch[-1].revision
            if match is None and not table and not t.res.stored_as:
                # A watcher behind by several events gets them in one write.
                lines = [_line(event) for event in batch
                         if name is None or event.key.rsplit("/", 1)[-1] == name]
                if lines:
                    await response.write(b"".join(lines))
                continue
            for event in batch:
                seen = _filter(event, match, name)
                if seen is not None:
                    await send(seen[0], from_stored(t.res, seen[1]))

    # One task reads the stream for the watch's life, while this one only wakes for
    # bookmarks and the timeout: no task or timer per event, and a bookmark never
    # interrupts the stream.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reader: asyncio.Task[None] | None = None
    try:
        for obj in initial:
            await send("ADDED", obj)
        reader = asyncio.create_task(pump())
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
            done, _ = await asyncio.wait((reader,), timeout=wait)
            if done:
                reader.result()
                break
            if bookmarks and loop.time() < deadline:
                await send("BOOKMARK", {"kind": t.res.kind, "apiVersion": t.res.api_version,
                                        "metadata": {"resourceVersion": str(last_rv)}})
    except store_errors.Compacted as exc:
        gone = errors.gone(f"too old resource version: {exc.requested} ({exc.compacted})")
        with contextlib.suppress(ConnectionError):
            await send("ERROR", gone.status())
    except ConnectionError:
        pass
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
