"""A small fake Kubernetes API server for the client tests.

HTTPS with a self-signed certificate, bearer token auth, Kubernetes REST paths,
list with limit/continue, chunked newline-delimited watch with bookmarks, 410
for compacted history, and switches to break things: drop every open watch
mid-stream, expire continue tokens, fail the next requests with a code.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import ipaddress
import ssl
import tempfile
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.api import registry
from kubelite.api.registry import Resource
from kubelite.client.kubeconfig import ClientConfig

TOKEN = "test-token"


@lru_cache(maxsize=1)
def self_signed() -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelite-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _json(body: Any, code: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=code, content_type="application/json")


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def _labels_match(obj: dict[str, Any], selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        k, eq, v = term.partition("=")
        if (eq and labels.get(k) != v) or (not eq and k not in labels):
            return False
    return True


def _fields_match(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        path, _, want = term.partition("=")
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (value or "") != want:
            return False
    return True


@dataclass
class _Watcher:
    res: Resource
    namespace: str | None
    labels: str | None
    fields: str | None
    bookmarks: bool
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)

    def wants(self, res: Resource, obj: dict[str, Any]) -> bool:
        ns = (obj.get("metadata") or {}).get("namespace")
        return (
            res == self.res
            and (self.namespace is None or ns == self.namespace)
            and _labels_match(obj, self.labels)
            and _fields_match(obj, self.fields)
        )


_DROP = object()


class FakeAPIServer:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[Resource, dict[tuple[str, str], dict[str, Any]]] = {}
        self.history: list[tuple[int, Resource, str, dict[str, Any]]] = []
        self.compacted = 0
        self.expire_continue = False
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = []
        self.faults: list[tuple[str, int]] = []
        self.watchers: list[_Watcher] = []
        self._runner: web.AppRunner | None = None
        self.config: ClientConfig

    # -- test controls ----------------------------------------------------------

    def _bump(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _emit(self, res: Resource, type_: str, obj: dict[str, Any]) -> None:
        self.history.append((self.rv, res, type_, copy.deepcopy(obj)))
        for w in self.watchers:
            if w.wants(res, obj):
                w.queue.put_nowait({"type": type_, "object": copy.deepcopy(obj)})

    def put(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Store (create or replace) an object and notify watchers."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        if res.namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace") or "", meta["name"])
        store = self.objects.setdefault(res, {})
        existed = key in store
        if existed:
            meta["uid"] = store[key]["metadata"]["uid"]
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        meta["resourceVersion"] = self._bump()
        store[key] = obj
        self._emit(res, "MODIFIED" if existed else "ADDED", obj)
        return obj

    def remove(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects[res].pop((namespace or "", name))
        obj["metadata"]["resourceVersion"] = self._bump()
        self._emit(res, "DELETED", obj)
        return obj

    def remove_quietly(self, res: Resource, namespace: str | None, name: str) -> None:
        """Delete without telling current watchers, as if their events were compacted away."""
        self.objects[res].pop((namespace or "", name))
        self._bump()

    def compact(self) -> None:
        """Forget the history: watches from an older resourceVersion get 410 Gone."""
        self.compacted = self.rv
        self.history.clear()

    def drop_watches(self) -> None:
        """Break every open watch connection mid-stream."""
        for w in self.watchers:
            w.queue.put_nowait(_DROP)

    def bookmark(self) -> None:
        for w in self.watchers:
            if w.bookmarks:
                w.queue.put_nowait(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": w.res.kind,
                            "apiVersion": w.res.api_version,
                            "metadata": {"resourceVersion": str(self.rv)},
                        },
                    }
                )

    def fail_next(self, method: str, code: int, times: int = 1) -> None:
        self.faults.extend([(method, code)] * times)

    def watch_requests(self) -> list[dict[str, str]]:
        return [q for m, _, q, _ in self.requests if m == "GET" and q.get("watch") == "true"]

    async def wait_for_watch_requests(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.watch_requests()) < count:
                await asyncio.sleep(0.01)

    async def wait_for_watchers(self, count: int = 1) -> None:
        async with asyncio.timeout(5):
            while len(self.watchers) < count:
                await asyncio.sleep(0.01)

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> FakeAPIServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        cert, key = self_signed()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "c").write_bytes(cert)
            (Path(tmp) / "k").write_bytes(key)
            ctx.load_cert_chain(str(Path(tmp) / "c"), str(Path(tmp) / "k"))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.config = ClientConfig(server=f"https://127.0.0.1:{port}", ca_data=cert, token=TOKEN)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.drop_watches()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- HTTP -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.method, request.path, query, dict(request.headers)))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _json(status(401, "Unauthorized", "Unauthorized"), 401)
        for i, (method, code) in enumerate(self.faults):
            if method == request.method:
                del self.faults[i]
                return _json(status(code, "ServiceUnavailable", "injected"), code)
        parts = request.path.strip("/").split("/")
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        res = registry.lookup(group, version, rest[0])
        if res is None:
            return _json(
                status(404, "NotFound", "the server could not find the requested resource"), 404
            )
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        store = self.objects.setdefault(res, {})
        if name is None:
            if request.method == "GET" and query.get("watch") == "true":
                return await self._watch(request, res, ns, query)
            if request.method == "GET":
                return self._list(res, ns, query)
            body = orjson.loads(await request.read())
            body.setdefault("metadata", {})
            if ns:
                body["metadata"]["namespace"] = ns
            if (body["metadata"].get("namespace") or "", body["metadata"]["name"]) in store:
                msg = f'{res.group_resource} "{body["metadata"]["name"]}" already exists'
                return _json(status(409, "AlreadyExists", msg), 409)
            if query.get("dryRun") == "All":
                return _json(body, 201)
            return _json(self.put(res, body), 201)
        current = store.get((ns or "", name))
        if current is None:
            msg = f'{res.group_resource} "{name}" not found'
            return _json(status(404, "NotFound", msg), 404)
        if request.method == "GET":
            return _json(current)
        if request.method == "DELETE":
            return _json(self.remove(res, ns, name))
        body = orjson.loads(await request.read())
        if sub == "binding":
            pod = copy.deepcopy(current)
            pod.setdefault("spec", {})["nodeName"] = body["target"]["name"]
            self.put(res, pod)
            return _json({"kind": "Status", "apiVersion": "v1", "status": "Success"}, 201)
        if request.method == "PUT":
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                msg = (
                    f'Operation cannot be fulfilled on {res.group_resource} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try again"
                )
                return _json(status(409, "Conflict", msg), 409)
            return _json(self.put(res, body))
        if request.method == "PATCH":
            if request.content_type == "application/json-patch+json":
                patched = jsonpatch.apply_patch(current, body)
            else:
                patched = _merge(current, body)
            return _json(self.put(res, patched))
        return _json(status(405, "MethodNotAllowed", "method not allowed"), 405)

    def _matching(
        self, res: Resource, ns: str | None, query: dict[str, str]
    ) -> list[dict[str, Any]]:
        return [
            o
            for (ons, _), o in sorted(self.objects.get(res, {}).items())
            if (ns is None or ons == ns)
            and _labels_match(o, query.get("labelSelector"))
            and _fields_match(o, query.get("fieldSelector"))
        ]

    def _list(self, res: Resource, ns: str | None, query: dict[str, str]) -> web.Response:
        items = self._matching(res, ns, query)
        start = 0
        if query.get("continue"):
            if self.expire_continue:
                msg = "The provided continue parameter is too old to display a consistent list result."
                return _json(status(410, "Expired", msg), 410)
            start = int(query["continue"])
        limit = int(query.get("limit") or 0) or len(items)
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        # As Kubernetes: list items carry no apiVersion/kind.
        stripped = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in page]
        return _json(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": meta,
                "items": stripped,
            }
        )

    async def _watch(
        self, request: web.Request, res: Resource, ns: str | None, query: dict[str, str]
    ) -> web.StreamResponse:
        since = int(query.get("resourceVersion") or 0)
        if since and since < self.compacted:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            gone = status(410, "Expired", f"too old resource version: {since} ({self.compacted})")
            await resp.write(orjson.dumps({"type": "ERROR", "object": gone}) + b"\n")
            await resp.write_eof()
            return resp
        w = _Watcher(
            res,
            ns,
            query.get("labelSelector"),
            query.get("fieldSelector"),
            query.get("allowWatchBookmarks") == "true",
        )
        for rv, r, type_, obj in self.history:
            if rv > since and w.wants(r, obj):
                w.queue.put_nowait({"type": type_, "object": obj})
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.watchers.append(w)
        try:
            async with asyncio.timeout(float(query.get("timeoutSeconds") or 3600)):
                while True:
                    event = await w.queue.get()
                    if event is _DROP:
                        if request.transport is not None:
                            request.transport.abort()
                        return resp
                    await resp.write(orjson.dumps(event) + b"\n")
        except TimeoutError:
            await resp.write_eof()
            return resp
        finally:
            self.watchers.remove(w)
