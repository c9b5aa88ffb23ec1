"""Joining with a bootstrap token and rotating node certificates, against a real
API server in this process."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubelite.agent import join as joining
from kubelite.agent.rotation import (
    CertificateRotation,
    RotatingClientConfig,
    client_context,
    renewal_time,
)
from kubelite.cli.token import create_token
from kubelite.client import Client, ClientConfig, Forbidden, load_kubeconfig
from kubelite.server.app import APIServer, ServerConfig
from kubelite.server.certs import ca_hash
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@dataclass
class Cluster:
    data: Path
    server: str
    admin: ClientConfig
    token: str
    ca_hash: str


@pytest.fixture
async def cluster(tmp_path) -> AsyncIterator[Cluster]:
    port = free_port()
    data = tmp_path / "server"
    async with APIServer(ServerConfig(data_dir=data, port=port),
                         SqliteStore(tmp_path / "state.db")):
        admin = load_kubeconfig(data / "kubeconfig")
        async with Client(admin) as client:
            token = await create_token(client, ttl=dt.timedelta(hours=1))
        yield Cluster(data, f"https://127.0.0.1:{port}", admin, str(token),
                      ca_hash(data / "pki" / "ca.crt"))


async def _join(cluster: Cluster, root: Path, **changes: str) -> joining.NodeCredentials:
    options = {"server": cluster.server, "token": cluster.token, "ca_cert_hash": cluster.ca_hash,
               "node_name": "node-a", "root": root, "addresses": ("127.0.0.1",), **changes}
    return await joining.join(**options)  # type: ignore[arg-type]


async def _whoami(config: ClientConfig) -> dict:
    async with Client(config, read_retries=0) as client:
        review = await client.request("POST", REVIEW, body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    return review["status"]["userInfo"]


async def test_join_writes_node_credentials_that_authenticate_as_the_node(cluster, tmp_path):
    root = tmp_path / "agent"
    creds = await _join(cluster, root)
    for path in (creds.client_key, creds.serving_key, creds.kubeconfig):
        assert path.stat().st_mode & 0o777 == 0o600
    assert not (root / "pki" / "joining").exists()
    user = await _whoami(load_kubeconfig(creds.kubeconfig))
    assert user["username"] == "system:node:node-a"
    assert "system:nodes" in user["groups"]
    lifetime = creds.not_after - creds.not_before
    assert dt.timedelta(days=364) < lifetime <= dt.timedelta(days=366)
    assert joining.load_credentials(root, node_name="node-a") == creds
    assert joining.load_credentials(root, node_name="node-b") is None
    later = creds.not_after + dt.timedelta(seconds=1)
    assert joining.load_credentials(root, node_name="node-a", now=later) is None


async def test_the_serving_certificate_names_the_node_and_its_address(cluster, tmp_path):
    creds = await _join(cluster, tmp_path / "agent")
    cert = x509.load_pem_x509_certificate(creds.serving_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node-a"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert cert.subject.rfc4514_string() == "CN=system:node:node-a,O=system:nodes"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


async def test_a_wrong_ca_hash_is_refused_before_the_token_is_sent(cluster, tmp_path):
    with pytest.raises(joining.JoinError) as info:
        await _join(cluster, tmp_path / "agent", ca_cert_hash="sha256:" + "0" * 64)
    assert "refusing to join" in str(info.value)
    assert not (tmp_path / "agent" / "kubeconfig").exists()


async def test_a_wrong_token_is_refused(cluster, tmp_path):
    wrong = cluster.token[:-16] + "0" * 16
    with pytest.raises(joining.JoinError) as info:
        await _join(cluster, tmp_path / "agent", token=wrong)
    assert "refused the bootstrap token" in str(info.value)
    assert "0" * 16 not in str(info.value)


async def test_an_expired_token_is_refused(cluster, tmp_path):
    async with Client(cluster.admin) as client:
        expired = await create_token(client, ttl=dt.timedelta(seconds=-1))
    with pytest.raises(joining.JoinError) as info:
        await _join(cluster, tmp_path / "agent", token=str(expired))
    assert "unknown, wrong or expired" in str(info.value)


@pytest.mark.parametrize("changes,message", [
    ({"token": "nope"}, "invalid --token"),
    ({"ca_cert_hash": "md5:abc"}, "invalid --ca-cert-hash"),
    ({"server": "http://127.0.0.1:1"}, "invalid --server"),
])
async def test_malformed_options_are_refused(cluster, tmp_path, changes, message):
    with pytest.raises(joining.JoinError) as info:
        await _join(cluster, tmp_path / "agent", **changes)
    assert message in str(info.value)


async def test_ensure_credentials_reuses_a_valid_join_without_a_token(cluster, tmp_path):
    root = tmp_path / "agent"
    first = await _join(cluster, root)
    again = await joining.ensure_credentials(server=cluster.server, token=None, ca_cert_hash=None,
                                             node_name="node-a", root=root,
                                             addresses=("127.0.0.1",))
    assert again == first
    with pytest.raises(joining.JoinError, match="give --token"):
        await joining.ensure_credentials(server=cluster.server, token=None, ca_cert_hash=None,
                                         node_name="node-b", root=root, addresses=())


def test_renewal_falls_between_70_and_90_percent_of_the_lifetime(tmp_path):
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    creds = joining.NodeCredentials(root=tmp_path, node_name="n", server="https://x",
                                    addresses=(), not_before=start,
                                    not_after=start + dt.timedelta(days=100))
    rng = random.Random(7)
    for _ in range(100):
        at = renewal_time(creds, rng=rng)
        assert start + dt.timedelta(days=70) <= at <= start + dt.timedelta(days=90)


async def test_rotation_renews_with_the_node_identity_and_reloads_in_place(cluster, tmp_path):
    creds = await _join(cluster, tmp_path / "agent")
    old_cert = creds.client_cert.read_bytes()
    tls = client_context(creds)
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(str(creds.serving_cert), str(creds.serving_key))
    rotation = CertificateRotation(creds, client_tls=tls, serving_tls=serving)
    renewed = await rotation.rotate()
    assert renewed.client_cert.read_bytes() != old_cert
    assert renewed.not_after >= creds.not_after
    assert not (creds.pki / "rotating").exists()
    config = RotatingClientConfig(server=cluster.server, ca_data=creds.ca_cert.read_bytes(),
                                  cert_data=b"in the shared context", key_data=b"x", shared=tls)
    assert config.ssl_context() is tls
    assert (await _whoami(config))["username"] == "system:node:node-a"
    without_cert = dataclasses.replace(config, cert_data=None, key_data=None, token="t")
    assert without_cert.ssl_context() is not tls
    assert json.loads((creds.pki / "node-credentials.json").read_text())["nodeName"] == "node-a"


async def test_a_node_may_not_obtain_another_nodes_certificates(cluster, tmp_path):
    creds = await _join(cluster, tmp_path / "agent")
    workdir = tmp_path / "requests"
    await joining.make_requests(workdir)
    with pytest.raises(Forbidden):
        await joining.request_certificates(creds.client_config(), node_name="node-b",
                                           addresses=(), workdir=workdir, seconds=3600)
