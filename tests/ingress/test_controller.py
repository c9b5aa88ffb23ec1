"""The ingress controller against a real API server: objects in, routes and status out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from kubelite.client import Client, InformerFactory, Invalid, NotFound, load_kubeconfig
from kubelite.ingress.controller import (
    CLASS_NAME,
    CONTROLLER_NAME,
    DEFAULT_CLASS_ANNOTATION,
    INGRESS_CLASSES,
    INGRESSES,
    SECRETS,
    SERVICES,
    SLICES,
    IngressController,
    status_addresses,
)
from kubelite.ingress.proxy import IngressProxy
from kubelite.ingress.tls import self_signed
from tests.controllers.live_api import api_server, namespace, ns_name, until

__all__ = ["api_server", "ns_name"]


@contextlib.asynccontextmanager
async def controller(kubeconfig: Path) -> AsyncIterator[tuple[Client, IngressProxy]]:
    async with Client(load_kubeconfig(kubeconfig)) as client, \
            IngressProxy(http=[("127.0.0.1", 0)]) as proxy:
        factory = InformerFactory(client)
        ctl = IngressController(client, factory, proxy=proxy,
                                status_addresses=["10.0.0.1", "127.0.0.1"])
        task = asyncio.create_task(ctl.run())
        try:
            yield client, proxy
        finally:
            ctl.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await factory.stop()


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoint_slice(svc: str, *ips: tuple[str, bool], port: int = 8080) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-abc", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}
                          for ip, ready in ips]}


def ingress(name: str, svc: str, *, host: str, cls: str | None = None, **spec: object) -> dict:
    body = {"rules": [{"host": host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix",
         "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}], **spec}
    if cls:
        body["ingressClassName"] = cls
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name}, "spec": body}


async def test_default_class_routes_and_status(api_server: Path, ns_name: str) -> None:
    async with controller(api_server) as (client, proxy):
        cls = await until(lambda: client.get(INGRESS_CLASSES, CLASS_NAME))
        assert cls["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true"
        assert cls["spec"]["controller"] == CONTROLLER_NAME

        ns = await namespace(client, ns_name)
        await client.create(SERVICES, service("web"), ns)
        await client.create(SLICES, endpoint_slice("web", ("10.244.1.2", True),
                                                   ("10.244.1.3", False)), ns)
        await client.create(INGRESSES, ingress("site", "web", host="web.test"), ns)

        async def routed() -> bool:
            up = proxy.table.match("web.test", "/x")
            return up is not None and up.endpoints == (("10.244.1.2", 8080),)
        await until(routed)

        async def status() -> list:
            got = await client.get(INGRESSES, "site", ns)
            return (got.get("status") or {}).get("loadBalancer", {}).get("ingress")
        assert await until(status) == [{"ip": "10.0.0.1"}, {"ip": "127.0.0.1"}]

        # An endpoint turning ready is picked up; deleting the Ingress drops its route.
        sl = await client.get(SLICES, "web-abc", ns)
        sl["endpoints"][1]["conditions"]["ready"] = True
        await client.update(SLICES, sl)
        await until(lambda: holds(len(proxy.table.match("web.test", "/").endpoints) == 2))
        await client.delete(INGRESSES, "site", ns)
        await until(lambda: holds(proxy.table.match("web.test", "/") is None))


async def holds(value: bool) -> bool:
    """For `until`, which awaits its check: the condition evaluated at call time."""
    return value


async def test_other_classes_are_left_alone(api_server: Path, ns_name: str) -> None:
    async with controller(api_server) as (client, proxy):
        ns = await namespace(client, ns_name)
        other = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                 "metadata": {"name": f"other-{ns}"}, "spec": {"controller": "example.com/x"}}
        await client.create(INGRESS_CLASSES, other)
        try:
            await client.create(SERVICES, service("web"), ns)
            await client.create(INGRESSES, ingress("theirs", "web", host="theirs.test",
                                                   cls=f"other-{ns}"), ns)
            await client.create(INGRESSES, ingress("ours", "web", host="ours.test",
                                                   cls=CLASS_NAME), ns)
            await until(lambda: holds(proxy.table.match("ours.test", "/") is not None))
            await asyncio.sleep(0.3)
            assert proxy.table.match("theirs.test", "/") is None
            theirs = await client.get(INGRESSES, "theirs", ns)
            assert not (theirs.get("status") or {}).get("loadBalancer")
        finally:
            with contextlib.suppress(NotFound):
                await client.delete(INGRESS_CLASSES, f"other-{ns}")


async def test_requests_reach_a_backend_named_by_an_endpoint_slice(
        api_server: Path, ns_name: str) -> None:
    """The whole path: a loopback backend named in an EndpointSlice, a TLS Secret."""
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.host}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with controller(api_server) as (client, proxy):
            ns = await namespace(client, ns_name)
            pair = self_signed("tls.test")
            await client.create(SECRETS, {
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cert"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": base64.b64encode(pair.cert).decode(),
                         "tls.key": base64.b64encode(pair.key).decode()}}, ns)
            await client.create(SERVICES, service("web"), ns)
            await client.create(SLICES, endpoint_slice("web", ("127.0.0.2", True), port=port), ns)
            await client.create(INGRESSES, ingress(
                "site", "web", host="tls.test",
                tls=[{"hosts": ["tls.test"], "secretName": "cert"}]), ns)
            await until(lambda: holds(proxy.table.certificate("tls.test") == pair))
            url = f"http://127.0.0.1:{proxy.http_addresses[0][1]}/"
            async with aiohttp.ClientSession() as s, s.get(url, headers={"Host": "tls.test"}) as r:
                assert r.status == 200 and await r.text() == "hello tls.test"
    finally:
        await runner.cleanup()


async def test_invalid_ingresses_are_refused_with_422_and_the_field(
        api_server: Path, ns_name: str) -> None:
    async with Client(load_kubeconfig(api_server)) as client:
        ns = await namespace(client, ns_name)
        bad_type = ingress("bad-type", "web", host="a.test")
        bad_type["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Regex"
        no_backend = ingress("no-backend", "web", host="a.test")
        del no_backend["spec"]["rules"][0]["http"]["paths"][0]["backend"]
        bad_host = ingress("bad-host", "web", host="A_B.test")
        for body, field in ((bad_type, "spec.rules[0].http.paths[0].pathType"),
                            (no_backend, "spec.rules[0].http.paths[0].backend"),
                            (bad_host, "spec.rules[0].host")):
            try:
                await client.create(INGRESSES, body, ns)
            except Invalid as e:
                assert e.code == 422 and [c["field"] for c in e.causes] == [field]
            else:
                raise AssertionError(f"{body['metadata']['name']} was accepted")


def test_status_addresses_put_reachable_ones_first_and_drop_wildcards() -> None:
    listen = [("127.0.0.1", 80), ("10.1.0.1", 80), ("0.0.0.0", 8080), ("127.0.0.1", 443),
              ("localhost", 80)]
    assert status_addresses(listen) == ["10.1.0.1", "127.0.0.1"]
