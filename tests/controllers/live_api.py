"""A real API server (controllers and scheduler off) for controller tests, and a
harness that runs one controller against it; nodes and pod status are faked
through the API by the test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, InformerFactory, NotFound, load_kubeconfig
from tests.ports import free_port

Obj = dict[str, Any]
PODS = lookup("", "v1", "pods")
NODES = lookup("", "v1", "nodes")
NAMESPACES = lookup("", "v1", "namespaces")


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The kubeconfig of a fresh API server for the module."""
    base = tmp_path_factory.mktemp("api")
    port = free_port()
    log = open(base / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubelite.cli.main", "server", "--data-dir", str(base / "data"),
         "--listen", f"127.0.0.1:{port}", "--disable-controllers", "--disable-scheduler"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    kubeconfig = base / "data" / "kubeconfig"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError((base / "server.log").read_text()[-2000:])
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                if kubeconfig.exists():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("API server did not start")
            time.sleep(0.05)
        yield kubeconfig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.asynccontextmanager
async def running(kubeconfig: Path, *controllers: type) -> AsyncIterator[Client]:
    """A client, with the given controllers running on their own informers."""
    async with Client(load_kubeconfig(kubeconfig)) as client:
        factory = InformerFactory(client)
        instances = [cls(client, factory) for cls in controllers]
        tasks = [asyncio.create_task(c.run()) for c in instances]
        try:
            yield client
        finally:
            for c in instances:
                c.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await factory.stop()


async def until(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy; its last error on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = await check()
        except (AssertionError, NotFound):
            if time.monotonic() > deadline:
                raise
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s")
        await asyncio.sleep(0.1)


def ns_for(test_name: str) -> str:
    """A valid, unique namespace name for a test id."""
    digest = hashlib.sha1(test_name.encode()).hexdigest()[:8]
    return f"{re.sub('[^a-z0-9]+', '-', test_name.lower())[:40].strip('-')}-{digest}"


@pytest.fixture
def ns_name(request: pytest.FixtureRequest) -> str:
    return ns_for(request.node.name)


async def namespace(client: Client, name: str) -> str:
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": name}})
    return name


async def make_node(client: Client, name: str, *, labels: dict[str, str] | None = None,
                    taints: list[Obj] | None = None) -> Obj:
    node: Obj = {"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                       **(labels or {})}},
                 "spec": {"taints": taints} if taints else {}}
    return await client.create(NODES, node)


async def delete_nodes(client: Client, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(NotFound):
            await client.delete(NODES, name)


async def set_pod_running(client: Client, pod: Obj, *, ready: bool = True,
                          node: str = "node-a") -> Obj:
    """Play the node agent: bind the pod if needed and report it Running."""
    if not pod["spec"].get("nodeName"):
        await client.bind(pod, node)
        pod = await client.get(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}
    return await client.update_status(PODS, {**pod, "status": status})


async def reap(client: Client, ns: str) -> None:
    """Play the node agent for pods being deleted: confirm their deletion."""
    for pod in (await client.list(PODS, ns))["items"]:
        if pod["metadata"].get("deletionTimestamp"):
            with contextlib.suppress(NotFound):
                await client.delete(PODS, pod["metadata"]["name"], ns, grace_period_seconds=0)
