"""The HTTP API server: routing of Kubernetes REST paths, authentication and
authorization, errors as `Status`, discovery and OpenAPI, and its lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api.registry import Resource, lookup
from kubelite.server import (
    codec,
    discovery,
    ipalloc,
    metrics,
    nodeauthz,
    nodecerts,
    openapi,
    reads,
    streaming,
)
from kubelite.server.admission import IMMORTAL_NAMESPACES
from kubelite.server.auth import Authenticator, TokenSigner
from kubelite.server.certs import Credentials, api_socket, ensure_credentials
from kubelite.server.context import CONTEXT, USER, ServerContext, Target, ctx, user_of
from kubelite.server.http1 import HttpServer
from kubelite.server.objects import Objects
from kubelite.server.subresources import SUBRESOURCE_HANDLERS, handle_binding, handle_review
from kubelite.server.tokens import BootstrapTokens
from kubelite.server.writes import Writer
from kubelite.store.base import Store

log = logging.getLogger("kubelite.server")

_PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz", nodecerts.CLUSTER_CA_PATH})
_NAMESPACES = lookup("", "v1", "namespaces")
_SHUTDOWN_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    extra_sans: tuple[str, ...] = field(default=())
    service_cidr: str = ipalloc.DEFAULT_SERVICE_CIDR
    service_node_port_range: tuple[int, int] = ipalloc.DEFAULT_NODE_PORTS


def _split(path: str) -> tuple[str, str, list[str]] | None:
    """`/api/v1/...` or `/apis/G/V/...` -> (group, version, rest segments)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        return "", parts[1], parts[2:]
    if len(parts) >= 3 and parts[0] == "apis":
        return parts[1], parts[2], parts[3:]
    return None


# Subresources whose answers stream, or that upgrade the connection.
_STREAMED = frozenset({"log", "exec", "attach", "portforward", "proxy"})


def is_unary(method: str, path: str, query: str, headers: Any) -> bool:
    """Whether a request has one whole answer, which the fast HTTP path serves;
    watches and the streamed subresources stay with aiohttp. Sending a request to
    aiohttp is never wrong, only slower: names that merely look like these go there."""
    split = _split(path)
    if split is None or not split[2] or split[2][0] == "watch":
        return False
    return split[2][-1] not in _STREAMED and "watch" not in query


async def handle(request: Any) -> web.StreamResponse:
    """An API request from the fast path, through the same middleware as aiohttp's."""
    return await api_middleware(request, resource_handler)


def parse_target(group: str, version: str, rest: list[str]) -> Target:
    def resource(plural: str) -> Resource:
        res = lookup(group, version, plural)
        if res is None:
            raise errors.resource_not_found()
        return res

    n = len(rest)
    if n >= 3 and rest[0] == "namespaces" and not (n == 3 and rest[2] in ("status", "finalize")):
        res = resource(rest[2])
        if not res.namespaced:
            raise errors.resource_not_found()
        if n == 3:
            return Target(res, rest[1], None)
        if n in (4, 5):
            return Target(res, rest[1], rest[3], rest[4] if n == 5 else "")
        raise errors.resource_not_found()
    if 1 <= n <= 3:
        res = resource(rest[0])
        name = rest[1] if n >= 2 else None
        sub = rest[2] if n == 3 else ""
        # A namespaced resource listed across all namespaces has no name form.
        if res.namespaced and name is not None:
            raise errors.resource_not_found()
        return Target(res, None, name, sub)
    raise errors.resource_not_found()


def _verb(method: str, t: Target, watch: bool) -> str:
    if method == "GET":
        if t.name is None:
            return "watch" if watch else "list"
        return "get"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection"}.get(method, "")


async def resource_handler(request: web.Request) -> web.StreamResponse:
    split = _split(request.path)
    if split is None:
        raise errors.resource_not_found()
    group, version, rest = split
    if not rest:
        if request.method != "GET":
            raise errors.method_not_allowed("discovery supports GET only")
        return await _discovery(request)
    t = parse_target(group, version, rest)
    method = request.method
    verb = _verb(method, t, reads.query_flag(request, "watch"))
    if not await nodeauthz.authorize(request, user_of(request), verb, t):
        raise errors.forbidden(
            f'{t.res.group_resource} is forbidden: User "{user_of(request).username}" cannot '
            f'{verb} resource "{t.res.plural}" in API group "{t.res.group}"')
    if t.res.group == "metrics.k8s.io":
        return await metrics.handle(request, t)
    if not t.res.stored:
        if method != "POST" or t.name is not None:
            raise errors.method_not_allowed(f"{t.res.plural} supports create only")
        return await handle_review(request, t.res)
    if t.subresource:
        sub = t.res.subresource(t.subresource)
        handler = SUBRESOURCE_HANDLERS.get(t.subresource)
        if sub is None or handler is None:
            raise errors.resource_not_found()
        return await handler(request, t)
    writer = Writer(ctx(request).objects)
    if t.name is None:
        if method == "GET":
            return await reads.handle_list(request, t)
        if method == "POST":
            if t.res.plural == "bindings":
                return await handle_binding(request, t)
            return await writer.handle_create(request, t)
        if method == "DELETE":
            return await writer.handle_delete_collection(request, t,
                                                         reads.selectors(request, t.res))
    else:
        if method == "GET":
            if reads.query_flag(request, "watch"):
                return await reads.handle_watch(request, t)
            return await reads.handle_get(request, t)
        if method == "PUT":
            return await writer.handle_replace(request, t)
        if method == "PATCH":
            return await writer.handle_patch(request, t)
        if method == "DELETE":
            return await writer.handle_delete(request, t)
    raise errors.method_not_allowed(f"the server does not allow this method on the requested "
                                    f"resource ({method})")


@web.middleware
async def api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        if request.path not in _PUBLIC_PATHS:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            user = await ctx(request).authenticator.authenticate(
                request.headers.get("Authorization"), peer_cert=peer)
            if user is None:
                raise errors.unauthorized()
            request[USER] = user
        return await handler(request)
    except errors.APIError as exc:
        return codec.error_response(exc)
    except web.HTTPException as exc:
        if exc.status == 404:
            return codec.error_response(errors.resource_not_found())
        if exc.status == 405:
            return codec.error_response(errors.method_not_allowed(exc.reason))
        raise
    except (ConnectionError, TimeoutError):
        raise
    except Exception as exc:  # a bug must not crash the server or leak a traceback
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return codec.error_response(errors.internal(type(exc).__name__))


async def _discovery(request: web.Request) -> web.Response:
    found = discovery.discovery_response(request.path,
                                         accept=request.headers.get("Accept", ""))
    if found is None:
        raise errors.resource_not_found()
    body, content_type = found
    return codec.raw_json(body, content_type=content_type, vary="Accept")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _openapi_v2(request: web.Request) -> web.Response:
    return web.Response(body=openapi.OPENAPI_V2_PROTO,
                        headers={"Content-Type": openapi.OPENAPI_V2_CONTENT_TYPE})


async def _openapi_v3_index(request: web.Request) -> web.Response:
    # The first call builds every document (~150 ms): off the event loop.
    return codec.raw_json(await asyncio.to_thread(openapi.openapi_v3_index_bytes))


async def _openapi_v3_doc(request: web.Request) -> web.Response:
    doc = await asyncio.to_thread(openapi.openapi_v3_document, request.match_info["path"])
    if doc is None:
        raise errors.resource_not_found()
    return codec.raw_json(doc)


async def bootstrap(objects: Objects) -> None:
    """The namespaces every cluster has from the start."""
    assert _NAMESPACES is not None
    writer = Writer(objects)
    for name in sorted(IMMORTAL_NAMESPACES):
        if await objects.get_or_none(_NAMESPACES, None, name) is None:
            await writer.create(_NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name}},
                                manager="kubelite", fv="Strict", dry=False)


def build_app(context: ServerContext) -> web.Application:
    app = web.Application(middlewares=[api_middleware], client_max_size=codec.MAX_BODY + 1)
    app[CONTEXT] = context
    r = app.router
    for path in ("/healthz", "/livez", "/readyz"):
        r.add_get(path, _healthz)
    for path in ("/version", "/api", "/apis", "/apis/{group}"):
        r.add_get(path, _discovery)
    r.add_get("/openapi/v2", _openapi_v2)
    r.add_get("/openapi/v3", _openapi_v3_index)
    r.add_get("/openapi/v3/{path:.+}", _openapi_v3_doc)
    r.add_route("*", "/api/{tail:.*}", resource_handler)
    r.add_route("*", "/apis/{group}/{version}", resource_handler)
    r.add_route("*", "/apis/{group}/{version}/{tail:.*}", resource_handler)
    return app


def ssl_context(creds: Credentials) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(creds.serving_cert, creds.serving_key)
    # Client certificates are optional (tokens are the other way in) and, when
    # given, must be signed by the cluster CA: nodes authenticate with theirs.
    context.load_verify_locations(cafile=creds.ca_cert)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


class APIServer:
    """Start and stop the API server on a store: `async with APIServer(cfg, store):`."""

    def __init__(self, config: ServerConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.credentials: Credentials | None = None
        self.socket: Path | None = None
        self._runner: web.AppRunner | None = None
        self._http: HttpServer | None = None

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket = api_socket(cfg.data_dir)
        self.credentials = creds = ensure_credentials(
            cfg.data_dir, host=cfg.host, port=cfg.port, extra_sans=list(cfg.extra_sans),
            socket=self.socket)
        await self.store.start()
        objects = Objects(self.store)
        objects.service_allocator = await ipalloc.ServiceAllocator.recover(
            objects, service_cidr=cfg.service_cidr, node_ports=cfg.service_node_port_range)
        await bootstrap(objects)
        signer = TokenSigner(creds.signing_key)
        context = ServerContext(
            store=self.store, objects=objects, signer=signer,
            authenticator=Authenticator(admin_token=creds.admin_token, signer=signer,
                                        bootstrap=BootstrapTokens(objects)))
        app = build_app(context)
        nodecerts.install(app, ca_cert=creds.ca_cert, ca_key=creds.ca_key)
        # pods/log, exec, attach and portforward are proxied to node agents, which
        # are verified against the cluster CA and shown the admin token.
        streaming.install(app, ca_file=creds.ca_cert, token=creds.admin_token)
        self._runner = web.AppRunner(app, access_log=None,
                                     handler_cancellation=True,
                                     shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await self._runner.setup()
        self._http = HttpServer(self._runner, handle, is_unary, max_body=codec.MAX_BODY)
        await self._http.listen_tcp(cfg.host, cfg.port, ssl=ssl_context(creds), backlog=1024)
        log.info("API server listening on https://%s:%d", cfg.host, cfg.port)
        if self.socket is not None:
            await self._listen_locally(self.socket)

    async def _listen_locally(self, path: Path) -> None:
        """The same API, plain HTTP on a Unix socket only root can open: kubelite's
        own clients on this host (the controller manager, the scheduler) skip TLS,
        which costs each request about as much CPU as the rest of its HTTP."""
        assert self._http is not None
        # A socket left by a server that was killed would make bind fail.
        await asyncio.to_thread(path.unlink, missing_ok=True)
        await self._http.listen_unix(str(path), backlog=1024)
        await asyncio.to_thread(os.chmod, path, 0o600)
        log.info("API server listening on unix:%s", path)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close(_SHUTDOWN_TIMEOUT)
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            if self.socket is not None:
                await asyncio.to_thread(self.socket.unlink, missing_ok=True)
        await self.store.close()

    async def __aenter__(self) -> APIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
