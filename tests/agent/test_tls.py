"""Who may call the agent's HTTPS endpoint: callers authenticated by client
certificate or token and authorized by a real API server (SubjectAccessReview /
SelfSubjectAccessReview), over real TLS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubelite.agent.apiclient import AgentClient
from kubelite.agent.config import AgentConfig
from kubelite.agent.podmanager import PodManager
from kubelite.agent.server import AgentServer
from kubelite.agent.tls import SAR, Authenticator, certificate_user, server_context, serving_files
from kubelite.client import Client, Forbidden, resource_path
from kubelite.client.api import CORE_POD
from tests.agent.fakes import eventually, harness, make_pod
from tests.agent.test_refs import RealServer, client_certificate, pod, real_server  # noqa: F401

LOGS = "/containerLogs/default/web/app"


def test_certificate_user_is_the_common_name_in_its_organizations() -> None:
    peer = {"subject": ((("commonName", "system:node:n1"),), (("organizationName", "system:nodes"),),
                        (("organizationName", "extra"),))}
    assert certificate_user(peer) == ("system:node:n1",
                                      ("system:nodes", "extra", "system:authenticated"))
    assert certificate_user({"subject": ((("organizationName", "x"),),)}) is None


@dataclass
class Endpoint:
    server: RealServer
    url: str
    pki: Path

    async def call(self, *, cert: tuple[str, ...] | None = None, token: str | None = None
                   ) -> tuple[int, str]:
        """GET the logs as a caller with a certificate of (user, *groups) or a token."""
        ctx = ssl.create_default_context(cadata=self.server.admin.ca_data.decode())
        if cert is not None:
            crt, key = client_certificate(self.server.data / "pki", *cert)
            base = self.pki / f"caller-{abs(hash(cert))}"
            base.with_suffix(".crt").write_bytes(crt)
            base.with_suffix(".key").write_bytes(key)
            ctx.load_cert_chain(base.with_suffix(".crt"), base.with_suffix(".key"))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession() as session, session.get(
                self.url + LOGS, ssl=ctx, headers=headers) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def endpoint(real_server: RealServer, tmp_path: Path) -> AsyncIterator[Endpoint]:  # noqa: F811
    pki = real_server.data / "pki"
    config = AgentConfig(node_name="node-a", client=real_server.node("node-a"),
                         root=tmp_path / "agent", ca_cert_file=pki / "ca.crt",
                         ca_key_file=pki / "ca.key")
    cert, key = await serving_files(config, "127.0.0.1")
    hs = harness(tmp_path / "pods")
    pods = PodManager(hs.ctx)
    await pods.start()
    async with AgentClient(config.client) as client:
        server = AgentServer(pods=pods, runtime=hs.runtime, host="127.0.0.1", port=0,
                             ssl_context=server_context(cert, key, config.client.ca_data),
                             authenticator=Authenticator(client, node_name="node-a"))
        await server.start()
        try:
            hs.client.add_pod(make_pod("web"))
            await eventually(lambda: (hs.client.pod("default", "web").get("status") or {}).get(
                "phase") == "Running")
            log = hs.ctx.log_dir(hs.client.pod("default", "web")) / "app" / "0.log"
            log.write_bytes(b"2024-05-01T12:00:00Z stdout F one\n")
            yield Endpoint(real_server, f"https://127.0.0.1:{server.port}", tmp_path)
        finally:
            await server.stop()
            await pods.stop()


async def test_the_api_servers_admin_token_is_allowed(endpoint: Endpoint) -> None:
    assert await endpoint.call(token=endpoint.server.admin.token) == (200, "one\n")
    # Again from the cache.
    assert await endpoint.call(token=endpoint.server.admin.token) == (200, "one\n")


@pytest.mark.parametrize(("cert", "token", "status"), [
    (("system:node:node-b", "system:nodes"), None, 403),
    (("system:node:node-a", "system:nodes"), None, 403),
    (("jane",), None, 403),
    (("ops", "system:masters"), None, 200),
    (None, "not-a-token", 401),
    (None, None, 401),
], ids=["another-node", "the-node-itself", "plain-user", "masters-certificate", "bad-token",
        "anonymous"])
async def test_callers_are_authorized_by_the_api_server(
        endpoint: Endpoint, cert: tuple[str, ...] | None, token: str | None, status: int) -> None:
    assert (await endpoint.call(cert=cert, token=token))[0] == status


async def _review(client: Client, user: str, groups: list[str], **attributes: str) -> Any:
    assert SAR is not None
    answer = await client.request("POST", resource_path(SAR), body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups, "resourceAttributes": attributes}})
    assert answer["kind"] == "SubjectAccessReview"
    return answer["status"]["allowed"]


async def test_subject_access_reviews_answer_for_the_user_in_the_spec(
        real_server: RealServer) -> None:  # noqa: F811
    node = ["system:nodes", "system:authenticated"]
    async with Client(real_server.admin) as admin, \
            Client(real_server.node("node-a")) as node_a, \
            Client(real_server.credential("jane")) as jane:
        await admin.create(CORE_POD, pod("web", imagePullSecrets=[{"name": "pull"}]), "default")
        proxy = {"verb": "get", "resource": "nodes", "subresource": "proxy", "name": "node-a"}
        assert await _review(admin, "system:node:node-a", node, **proxy) is False
        assert await _review(admin, "ops", ["system:masters"], **proxy) is True
        # Nodes are asked about with the Node authorizer's rules.
        assert await _review(node_a, "system:node:node-a", node, verb="get", resource="secrets",
                             namespace="default", name="pull") is True
        assert await _review(node_a, "system:node:node-b", node, verb="get", resource="secrets",
                             namespace="default", name="pull") is False
        with pytest.raises(Forbidden):
            await _review(jane, "jane", [], **proxy)
