"""The objects a node's pods use, read on node credentials from a real API server
in this process: one watch per referenced object, within a watch budget."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.agent.apiclient import MAX_IN_FLIGHT, AgentClient
from kubelite.agent.envs import ContainerConfigError
from kubelite.agent.refs import CONFIGMAPS, SECRETS, InformerSource, pod_references
from kubelite.api import registry
from kubelite.client import Client, ClientConfig, Forbidden, load_kubeconfig
from kubelite.client.api import CORE_POD
from kubelite.server.app import APIServer, ServerConfig
from kubelite.store.sqlite import SqliteStore
from tests.agent.fakes import eventually
from tests.ports import free_port

Obj = dict[str, Any]
NODES = registry.lookup("", "v1", "nodes")


@dataclass
class RealServer:
    data: Path
    port: int
    admin: ClientConfig

    def credential(self, user: str, *groups: str) -> ClientConfig:
        """A client certificate for `user` in `groups`, signed by the cluster CA."""
        cert, key = client_certificate(self.data / "pki", user, *groups)
        return ClientConfig(server=self.admin.server, ca_data=self.admin.ca_data,
                            cert_data=cert, key_data=key)

    def node(self, name: str) -> ClientConfig:
        return self.credential(f"system:node:{name}", "system:nodes")


def client_certificate(pki: Path, user: str, *groups: str) -> tuple[bytes, bytes]:
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                         *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
async def real_server(tmp_path: Path) -> AsyncIterator[RealServer]:
    port = free_port()
    data = tmp_path / "server"
    async with APIServer(ServerConfig(data_dir=data, port=port),
                         SqliteStore(tmp_path / "state.db")):
        admin = load_kubeconfig(data / "kubeconfig")
        async with Client(admin) as client:
            for name in ("node-a", "node-b"):
                await client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                            "metadata": {"name": name}})
        yield RealServer(data, port, admin)


def pod(name: str, *, node: str = "node-a", **spec: Any) -> Obj:
    containers = spec.pop("containers", None) or [{"name": "app", "image": "busybox"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": containers, **spec}}


def secret(name: str, value: str = "v") -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"key": value}}


def configmap(name: str, value: str = "v") -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"key": value}}


def test_pod_references_name_every_configmap_and_secret_source() -> None:
    env = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s-env", "key": "k"}}},
           {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "c-env", "key": "k"}}},
           {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    spec = pod("p", containers=[{"name": "app", "env": env,
                                 "envFrom": [{"secretRef": {"name": "s-from"}}]}],
               initContainers=[{"name": "init", "envFrom": [{"configMapRef": {"name": "c-from"}}]}],
               ephemeralContainers=[{"name": "debug", "envFrom": [{"secretRef": {"name": "s-eph"}}]}],
               imagePullSecrets=[{"name": "s-pull"}],
               volumes=[{"name": "a", "secret": {"secretName": "s-vol"}},
                        {"name": "b", "configMap": {"name": "c-vol"}},
                        {"name": "c", "emptyDir": {}},
                        {"name": "d", "projected": {"sources": [
                            {"secret": {"name": "s-proj"}}, {"configMap": {"name": "c-proj"}},
                            {"serviceAccountToken": {"path": "token"}}]}}])
    assert pod_references(spec) == {
        ("secrets", "s-env"), ("configmaps", "c-env"), ("secrets", "s-from"),
        ("configmaps", "c-from"), ("secrets", "s-eph"), ("secrets", "s-pull"),
        ("secrets", "s-vol"), ("configmaps", "c-vol"), ("secrets", "s-proj"),
        ("configmaps", "c-proj")}


async def test_a_node_watches_each_object_its_pods_use_and_follows_changes(
        real_server: RealServer) -> None:
    changes: list[tuple[str, str, str]] = []
    async with Client(real_server.admin) as admin, \
            AgentClient(real_server.node("node-a")) as node:
        await admin.create(SECRETS, secret("creds", "one"), "default")
        await admin.create(CONFIGMAPS, configmap("page", "hello"), "default")
        await admin.create(CONFIGMAPS, configmap("elsewhere"), "default")
        web = await admin.create(CORE_POD, pod(
            "web", containers=[{"name": "app", "image": "busybox", "env": [
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}}]}],
            volumes=[{"name": "page", "configMap": {"name": "page"}},
                     {"name": "later", "configMap": {"name": "later", "optional": True}}]),
            "default")
        await admin.create(CORE_POD, pod("other", node="node-b", volumes=[
            {"name": "v", "configMap": {"name": "elsewhere"}}]), "default")
        # Why the agent cannot watch whole namespaces: the Node authorizer refuses it.
        with pytest.raises(Forbidden):
            await node.list(CONFIGMAPS, "default")

        source = InformerSource(node, on_change=lambda *ref: changes.append(ref))
        await source.start()
        try:
            source.acquire(web)
            assert source.watching == 3
            assert (await source.get("secrets", "default", "creds"))["data"]["key"] == "b25l"
            assert (await source.get("configmaps", "default", "page"))["data"] == {"key": "hello"}
            assert await source.get("configmaps", "default", "later") is None
            with pytest.raises(LookupError):
                await source.get("configmaps", "default", "elsewhere")

            changes.clear()
            await admin.patch(CONFIGMAPS, "page", {"data": {"key": "bye"}}, namespace="default")
            await admin.create(CONFIGMAPS, configmap("later", "now"), "default")
            await eventually(lambda: {("configmaps", "default", "page"),
                                      ("configmaps", "default", "later")} <= set(changes))
            assert (await source.get("configmaps", "default", "page"))["data"] == {"key": "bye"}
            assert (await source.get("configmaps", "default", "later"))["data"] == {"key": "now"}
            await admin.delete(SECRETS, "creds", "default")
            await eventually(lambda: ("secrets", "default", "creds") in changes)
            assert await source.get("secrets", "default", "creds") is None

            # A second pod shares the watches; they stop with the last pod.
            twin = {**web, "metadata": {**web["metadata"], "uid": "twin"}}
            source.acquire(twin)
            assert source.watching == 3
            await source.release(web["metadata"]["uid"])
            assert source.watching == 3
            await source.release("twin")
            assert source.watching == 0
            with pytest.raises(LookupError):
                await source.get("configmaps", "default", "page")
        finally:
            await source.stop()


async def test_objects_beyond_the_watch_budget_are_read_with_a_cached_get(
        real_server: RealServer) -> None:
    async with Client(real_server.admin) as admin, \
            AgentClient(real_server.node("node-a")) as node:
        names = [f"s{i}" for i in range(4)]
        for name in names:
            await admin.create(SECRETS, secret(name, "old"), "default")
        web = await admin.create(CORE_POD, pod("web", imagePullSecrets=[
            {"name": n} for n in [*names, "absent"]]), "default")
        source = InformerSource(node, on_change=lambda *_: None, max_watches=2, poll_ttl=0.3)
        await source.start()
        try:
            source.acquire(web)
            assert source.watching == 2
            for name in names:
                assert (await source.get("secrets", "default", name))["data"] == {"key": "b2xk"}
            assert await source.get("secrets", "default", "absent") is None
            for name in names:
                await admin.patch(SECRETS, name, {"stringData": {"key": "new"}},
                                  namespace="default")

            async def all_new() -> bool:
                found = [await source.get("secrets", "default", n) for n in names]
                return all(obj["data"] == {"key": "bmV3"} for obj in found)

            deadline = asyncio.get_running_loop().time() + 5
            while not await all_new():
                assert asyncio.get_running_loop().time() < deadline, "changes never read"
                await asyncio.sleep(0.1)
        finally:
            await source.stop()


async def test_an_object_the_node_may_not_read_fails_as_a_config_error(
        real_server: RealServer) -> None:
    async with Client(real_server.admin) as admin, \
            AgentClient(real_server.node("node-a")) as node:
        await admin.create(SECRETS, secret("theirs"), "default")
        # Bound to node-b: node-a is refused the watch and cannot sync.
        theirs = await admin.create(CORE_POD, pod("theirs", node="node-b", imagePullSecrets=[
            {"name": "theirs"}]), "default")
        source = InformerSource(node, on_change=lambda *_: None, sync_timeout=0.5)
        await source.start()
        try:
            source.acquire(theirs)
            with pytest.raises(ContainerConfigError, match="failed to sync secret cache"):
                await source.get("secrets", "default", "theirs")
        finally:
            await source.stop()


def _connections_to(port: int) -> int:
    """Established TCP connections from this process's network namespace to `port`."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count


async def test_a_hundred_pods_with_a_hundred_secrets_stay_within_the_connection_budget(
        real_server: RealServer) -> None:
    count = 100
    async with Client(real_server.admin) as admin, \
            AgentClient(real_server.node("node-a")) as node:
        pods = []
        for i in range(count):
            await admin.create(SECRETS, secret(f"s{i}", str(i)), "default")
            pods.append(await admin.create(CORE_POD, pod(f"p{i}", volumes=[
                {"name": "s", "secret": {"secretName": f"s{i}"}}]), "default"))
        source = InformerSource(node, on_change=lambda *_: None)
        await source.start()
        try:
            for p in pods:
                source.acquire(p)
            found = await asyncio.wait_for(asyncio.gather(*(
                source.get("secrets", "default", f"s{i}") for i in range(count))), 60)
            assert [obj["metadata"]["name"] for obj in found] == [f"s{i}" for i in range(count)]
            assert source.watching == source.max_watches
            # The agent's own pool still answers at once.
            await asyncio.wait_for(node.get(NODES, "node-a"), 5)
            # One per watch, a few for reads, the admin's and the node's main pools.
            assert source.max_watches <= _connections_to(real_server.port) <= (
                source.max_watches + MAX_IN_FLIGHT + 10)
            for p in pods:
                await source.release(p["metadata"]["uid"])
            assert source.watching == 0
        finally:
            await source.stop()
