"""The async API client: Kubernetes REST over HTTPS, or the server's Unix socket
on the same host, through one pool of keep-alive connections (client.transport).

    async with Client(config) as client:
        deploy = client.resource("deployments")
        obj = await client.get(deploy, "web", namespace="default")
        async for type_, obj in client.watch(deploy, resource_version=rv):
            ...

Resources are addressed by `kubelite.api.registry.Resource`; objects travel as
plain dicts in the wire shape. Namespaced calls that name one object use, in
order, the `namespace` argument, the object's metadata.namespace and the
config's namespace. List and watch without a namespace span all namespaces.
Non-2xx answers raise the `ApiError` subclasses of `client.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import ssl
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import orjson

from kubelite.api import registry
from kubelite.api.registry import Resource
from kubelite.client.errors import (
    ApiError,
    ClientError,
    Gone,
    TransportError,
    error_from_status,
    status_for_body,
)
from kubelite.client.events import make_event
from kubelite.client.kubeconfig import ClientConfig
from kubelite.client.transport import Endpoint, HttpPool

log = logging.getLogger(__name__)

PatchType = Literal["merge", "strategic", "json", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    # Kubernetes accepts JSON for apply: JSON is YAML.
    "apply": "application/apply-patch+yaml",
}

CORE_POD = registry.lookup("", "v1", "pods")
CORE_EVENT = registry.lookup("", "v1", "events")

# Extra seconds a watch read may stay silent beyond the server-side timeout
# before the connection is considered dead.
_WATCH_READ_SLACK = 30.0
# Characters left as they are in a request's path: a path's own (RFC 3986) and '%',
# as resource_path() has already quoted the names in it.
_PATH_SAFE = "/%:@!$&'()*+,;="
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9\-._~/%:@!$&'()*+,;=]")


def resource_path(
    res: Resource,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path: /api/v1/namespaces/ns/pods/name/status, /apis/apps/v1/deployments, ..."""
    path = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    if res.namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{res.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def find_resource(name: str) -> Resource:
    """A registry resource by plural, singular, short name or kind, optionally `plural.group`."""
    wanted = name.lower()
    for res in registry.RESOURCES:
        names = {res.plural, res.singular_name, res.kind.lower(), *res.short_names}
        if wanted in names or (res.group and wanted == f"{res.plural}.{res.group}"):
            return res
    raise LookupError(f'the server doesn\'t have a resource type "{name}"')


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


class Client:
    """One connection pool to one API server; open it with `async with` (or open()/close())."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        user_agent: str = "kubelite",
        timeout: float = 30.0,
        read_retries: int = 3,
        retry_backoff: float = 0.1,
        connection_limit: int = 100,
    ) -> None:
        self.config = config
        # Connections busy at once; every running watch holds one of them.
        self.connection_limit = connection_limit
        self.user_agent = user_agent
        self.timeout = timeout
        self.read_retries = read_retries
        self.retry_backoff = retry_backoff
        self._pool: HttpPool | None = None
        # A path the server's URL puts before every API path (a proxy's), kept as
        # given; the Unix socket is the server's own and has none.
        self._prefix = ""
        # Where requests go once open: the server's URL, or unix:PATH for its socket.
        self.endpoint = config.server.rstrip("/")

    @property
    def namespace(self) -> str:
        return self.config.namespace

    async def open(self) -> None:
        if self._pool is not None:
            return
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        if await asyncio.to_thread(self._local_socket):
            assert self.config.socket is not None
            # The socket's file mode keeps others out, and tokens authenticate as on the
            # HTTPS port; without TLS a request costs both ends about a quarter less CPU.
            endpoint = Endpoint(unix=self.config.socket)
            self.endpoint = f"unix:{self.config.socket}"
        else:
            # Building the context may read the system CA bundle: keep it off the loop.
            ctx = await asyncio.to_thread(self.config.ssl_context)
            endpoint = Endpoint.from_url(self.config.server, ctx)
            self.endpoint = self.config.server.rstrip("/")
            self._prefix = urlsplit(self.endpoint).path
        self._pool = HttpPool(endpoint, headers=headers, limit=self.connection_limit,
                              connect_timeout=self.timeout)

    def _local_socket(self) -> bool:
        """Whether to reach the server through its Unix socket: one is named, it exists
        here (a copied kubeconfig names another host's), and a token proves who we are,
        since a client certificate needs TLS."""
        path = self.config.socket
        return bool(path and self.config.token and os.path.exists(path))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> Client:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def resource(self, name: str) -> Resource:
        return find_resource(name)

    def _ns(self, res: Resource, namespace: str | None, obj: dict[str, Any] | None = None) -> str:
        if not res.namespaced:
            return ""
        return namespace or (obj and _meta(obj).get("namespace")) or self.config.namespace

    def _http(self) -> HttpPool:
        if self._pool is None:
            raise RuntimeError("Client is not open: use `async with Client(config)` or open()")
        return self._pool

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one request and decode the JSON answer (the bytes with `raw`); reads
        (GET) are retried on transport errors, 429 and 5xx-unavailable with a short
        exponential backoff. `accept` asks for another form, e.g. a Table."""
        attempts = 1 + (self.read_retries if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                return await self._request_once(method, path, params, body, content_type,
                                                accept, raw)
            except ClientError as e:
                if not e.retryable or attempt == attempts - 1:
                    raise
                delay = self.retry_backoff * 2**attempt * (1 + random.random())
                if isinstance(e, ApiError) and e.retry_after is not None:
                    delay = min(e.retry_after, 5.0)
                log.debug("retrying %s %s in %.2fs after %s", method, path, delay, e)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _request_once(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        content_type: str,
        accept: str | None = None,
        raw: bool = False,
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept:
            headers["Accept"] = accept
        try:
            async with asyncio.timeout(self.timeout):
                resp = await self._http().request(method, _target(self._prefix + path, params),
                                                  body=data, headers=headers)
            if resp.status >= 300:
                raise _error(resp.status, resp.headers, resp.body)
            if raw:
                return resp.body
            return orjson.loads(resp.body) if resp.body else {}
        except (OSError, ssl.SSLError, TimeoutError, orjson.JSONDecodeError) as e:
            raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from e

    async def get(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(
            res, namespace=self._ns(res, namespace), name=name, subresource=subresource
        )
        return await self.request("GET", path)

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_,
            "resourceVersion": resource_version,
        }
        return await self.request("GET", resource_path(res, namespace=namespace), params=params)

    async def list_all(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        chunk_size: int = 500,
    ) -> dict[str, Any]:
        """The whole list, fetched in pages of `chunk_size`; when a continue token
        expires midway (410) it falls back to one unpaged list, as client-go's pager."""
        kw: dict[str, Any] = {"label_selector": label_selector, "field_selector": field_selector}
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            try:
                page = await self.list(res, namespace, limit=chunk_size, continue_=token, **kw)
            except Gone:
                if token is None:
                    raise
                return await self.list(res, namespace, **kw)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                page["items"] = items
                return page

    async def create(
        self,
        res: Resource,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        path = resource_path(res, namespace=self._ns(res, namespace, obj))
        params = _write_params(dry_run, field_manager)
        return await self.request("POST", path, params=params, body=obj)

    async def update(
        self,
        res: Resource,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        dry_run: bool = False,
        field_manager: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT the object; its metadata.resourceVersion makes the write conditional (409 if stale)."""
        path = resource_path(
            res,
            namespace=self._ns(res, namespace, obj),
            name=_meta(obj)["name"],
            subresource=subresource,
        )
        params = _write_params(dry_run, field_manager)
        return await self.request("PUT", path, params=params, body=obj)

    async def update_status(
        self,
        res: Resource,
        obj: dict[str, Any],
        namespace: str | None = None,
        *,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        return await self.update(
            res, obj, namespace, field_manager=field_manager, subresource="status"
        )

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        *,
        patch_type: PatchType = "merge",
        namespace: str | None = None,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}")
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        path = resource_path(
            res, namespace=self._ns(res, namespace), name=name, subresource=subresource
        )
        params = _write_params(dry_run, field_manager)
        if patch_type == "apply":
            params["force"] = force
        return await self.request(
            "PATCH", path, params=params, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type]
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: Literal["Orphan", "Background", "Foreground"] | None = None,
        grace_period_seconds: int | None = None,
        preconditions: dict[str, str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE with DeleteOptions; returns the answer (the object, or a Success Status)."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = preconditions
        if dry_run:
            options["dryRun"] = ["All"]
        path = resource_path(res, namespace=self._ns(res, namespace), name=name)
        return await self.request("DELETE", path, body=options)

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Stream (type, object) events: ADDED, MODIFIED, DELETED, BOOKMARK.

        An ERROR event is raised as its ApiError (410 Gone: the resourceVersion is
        too old, relist). The iterator ends when the server closes the stream
        (timeoutSeconds); a broken connection raises TransportError. Close the
        iterator early with `contextlib.aclosing` to release the connection."""
        params = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": allow_bookmarks or None,
            "timeoutSeconds": timeout_seconds,
        }
        read = timeout_seconds + _WATCH_READ_SLACK if timeout_seconds else None
        path = resource_path(res, namespace=namespace)
        chunks = self.stream(path, params=params, read_timeout=read)
        async with contextlib.aclosing(chunks):
            async for line in _lines(chunks):
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise TransportError(f"watch {path}: {e}") from e
                type_, obj = event.get("type"), event.get("object") or {}
                if type_ == "ERROR":
                    raise error_from_status(obj)
                yield type_, obj

    async def stream(self, path: str, *, params: dict[str, Any] | None = None,
                     accept: str | None = None,
                     read_timeout: float | None = None) -> AsyncIterator[bytes]:
        """GET `path` and yield its body as it arrives (a watch, `logs -f`), waiting at
        most `read_timeout` for each piece. Close it early with `contextlib.aclosing`
        to release the connection."""
        headers = {"Accept": accept} if accept else None
        try:
            async with self._http().stream("GET", _target(self._prefix + path, params),
                                           headers=headers,
                                           read_timeout=read_timeout) as resp:
                if resp.status >= 300:
                    raise _error(resp.status, resp.headers, await resp.read())
                async for chunk in resp.chunks():
                    yield chunk
        except (OSError, ssl.SSLError, TimeoutError) as e:
            raise TransportError(f"GET {path}: {type(e).__name__}: {e}") from e

    async def bind(self, pod: dict[str, Any], node_name: str) -> None:
        """Assign a pod to a node as the scheduler does: POST pods/NAME/binding."""
        meta = _meta(pod)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        if meta.get("uid"):
            binding["metadata"]["uid"] = meta["uid"]
        path = resource_path(
            CORE_POD,
            namespace=self._ns(CORE_POD, None, pod),
            name=meta["name"],
            subresource="binding",
        )
        await self.request("POST", path, body=binding)

    async def create_event(
        self,
        involved: dict[str, Any],
        *,
        reason: str,
        message: str,
        type: Literal["Normal", "Warning"] = "Normal",
        component: str,
        host: str | None = None,
        field_path: str | None = None,
    ) -> dict[str, Any]:
        """Write a core/v1 Event about `involved` as client-go's event recorder does."""
        event = make_event(
            involved,
            reason=reason,
            message=message,
            type=type,
            component=component,
            host=host,
            field_path=field_path,
        )
        return await self.create(CORE_EVENT, event)


def _target(path: str, params: dict[str, Any] | None) -> str:
    """The request target: the path, quoted as a URL's, and the query."""
    target = quote(path, safe=_PATH_SAFE) if _PATH_UNSAFE.search(path) else path
    pairs = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((key, str(value)))
    return f"{target}?{urlencode(pairs, quote_via=quote)}" if pairs else target


def _write_params(dry_run: bool, field_manager: str | None) -> dict[str, Any]:
    return {"dryRun": "All" if dry_run else None, "fieldManager": field_manager}


def _error(code: int, headers: dict[str, str], body: bytes) -> ApiError:
    retry_after: float | None = None
    header = headers.get("retry-after")
    if header and header.isdigit():
        retry_after = float(header)
    status = status_for_body(code, body, headers.get("content-type", ""))
    return error_from_status(status, http_code=code, retry_after=retry_after)


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The non-blank lines of a stream. A chunk is split once: cutting each line
    off the front of a buffer moved the rest of it every time, quadratic in the
    events a watch delivers in one read."""
    rest = b""
    async for chunk in chunks:
        lines = (rest + chunk if rest else chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.strip():
                yield line
    if rest.strip():
        yield rest
