"""Bootstrap tokens: their shape, their Secret, and authentication against a real
store and a real API server."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from dataclasses import dataclass

import orjson
import pytest

from kubelite.api.registry import lookup
from kubelite.client import Client, ClientConfig, Unauthorized, load_kubeconfig
from kubelite.server import tokens
from kubelite.server.app import APIServer, ServerConfig
from kubelite.server.auth import Authenticator, TokenSigner
from kubelite.server.objects import Objects
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TOKEN = tokens.BootstrapToken("abcdef", "0123456789abcdef")


def test_generated_tokens_have_kubeadms_shape_behind_the_kubelite_prefix():
    token = tokens.BootstrapToken.generate()
    text = str(token)
    assert text.startswith("kubelite.") and len(text) == len("kubelite.") + 6 + 1 + 16
    assert tokens.BootstrapToken.parse(text) == token
    assert tokens.BootstrapToken.generate() != token


@pytest.mark.parametrize("text", ["kubelite.abcdef.0123456789abcdef", "abcdef.0123456789abcdef",
                                  " kubelite.abcdef.0123456789abcdef\n"])
def test_parse_accepts_the_kubelite_and_the_kubeadm_form(text):
    assert tokens.BootstrapToken.parse(text) == TOKEN


@pytest.mark.parametrize("text", ["", "kubelite.ABCDEF.0123456789abcdef", "abcde.0123456789abcdef",
                                  "kubelite.abcdef.0123456789abcde", "other.abcdef.0123456789abcdef"])
def test_parse_refuses_other_text_without_echoing_the_secret(text):
    with pytest.raises(tokens.TokenFormatError) as info:
        tokens.BootstrapToken.parse(text)
    assert "0123456789abcd" not in str(info.value)


def test_mask_hides_the_secret():
    assert tokens.mask(str(TOKEN)) == "kubelite.abcdef.****************"


@pytest.mark.parametrize("text,seconds", [("24h", 86400), ("30m", 1800), ("1h30m", 5400),
                                          ("90s", 90), ("0", 0)])
def test_parse_duration(text, seconds):
    assert tokens.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "10", "5m3"])
def test_parse_duration_refuses_other_text(text):
    with pytest.raises(ValueError):
        tokens.parse_duration(text)


def test_token_secret_has_the_kubernetes_keys():
    secret = tokens.token_secret(TOKEN, ttl=dt.timedelta(hours=2), description="d", now=NOW)
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "token-id": "abcdef", "token-secret": "0123456789abcdef",
        "expiration": "2025-01-01T02:00:00Z",
        "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        "description": "d",
    }


def test_a_token_without_ttl_never_expires():
    secret = tokens.token_secret(TOKEN, ttl=None)
    assert "expiration" not in secret["data"]
    assert tokens.user_for(secret, TOKEN) is not None


@dataclass(frozen=True)
class Case:
    name: str
    secret_changes: dict
    token: tokens.BootstrapToken = TOKEN
    ttl: dt.timedelta | None = dt.timedelta(hours=1)
    usages: tuple[str, ...] = ("authentication", "signing")
    groups: tuple[str, ...] = tokens.DEFAULT_GROUPS
    authenticated: bool = True


CASES = [
    Case("a valid token authenticates", {}),
    Case("a wrong secret is refused", {}, token=tokens.BootstrapToken("abcdef", "x" * 16),
         authenticated=False),
    Case("an expired token is refused", {}, ttl=dt.timedelta(seconds=-1), authenticated=False),
    Case("a token not for authentication is refused", {}, usages=("signing",),
         authenticated=False),
    Case("a token claiming system:masters is refused", {}, groups=("system:masters",),
         authenticated=False),
    Case("a secret of another type is refused", {"type": "Opaque"}, authenticated=False),
    Case("a secret being deleted is refused",
         {"metadata": {"name": "bootstrap-token-abcdef", "deletionTimestamp": "x"}},
         authenticated=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_user_for(case: Case):
    secret = tokens.token_secret(TOKEN, ttl=case.ttl, usages=case.usages, groups=case.groups)
    secret.update(case.secret_changes)
    user = tokens.user_for(secret, case.token)
    if not case.authenticated:
        assert user is None
        return
    assert user is not None
    assert user.username == "system:bootstrap:abcdef"
    assert user.groups == ("system:bootstrappers",
                           "system:bootstrappers:kubeadm:default-node-token",
                           "system:authenticated")


async def test_the_authenticator_finds_bootstrap_tokens_in_the_store(tmp_path):
    store = SqliteStore(tmp_path / "state.db")
    await store.start()
    try:
        objects = Objects(store)
        auth = Authenticator(admin_token="admin", signer=TokenSigner(b"k" * 32),
                             bootstrap=tokens.BootstrapTokens(objects))
        assert await auth.authenticate(f"Bearer {TOKEN}") is None
        secrets = lookup("", "v1", "secrets")
        assert secrets is not None
        await store.create(secrets.key("kube-system", TOKEN.secret_name),
                           orjson.dumps(tokens.token_secret(TOKEN)))
        user = await auth.authenticate(f"Bearer {TOKEN}")
        assert user is not None and user.username == "system:bootstrap:abcdef"
        assert (await auth.authenticate("Bearer abcdef.0123456789abcdef")) == user
        assert await auth.authenticate("Bearer kubelite.abcdef.ffffffffffffffff") is None
        assert (await auth.authenticate("Bearer admin")).username == "kubernetes-admin"
    finally:
        await store.close()


async def test_a_token_made_through_the_api_authenticates_until_it_expires(tmp_path):
    from kubelite.cli.token import create_token, ensure_server_token

    port = free_port()
    async with APIServer(ServerConfig(data_dir=tmp_path, port=port), SqliteStore(
            tmp_path / "state.db")):
        admin = load_kubeconfig(tmp_path / "kubeconfig")
        async with Client(admin) as client:
            token = await create_token(client, ttl=dt.timedelta(hours=1))
            short = await create_token(client, ttl=dt.timedelta(seconds=1))
            server_token = await ensure_server_token(client)
            assert await ensure_server_token(client) == server_token
        as_token = ClientConfig(server=admin.server, ca_data=admin.ca_data, token=str(token))
        async with Client(as_token) as client:
            review = await client.request("POST", "/apis/authentication.k8s.io/v1/"
                                          "selfsubjectreviews", body={
                                              "apiVersion": "authentication.k8s.io/v1",
                                              "kind": "SelfSubjectReview"})
            assert review["status"]["userInfo"]["username"] == f"system:bootstrap:{token.id}"
            assert "system:bootstrappers" in review["status"]["userInfo"]["groups"]
        await asyncio.sleep(1.1)
        expired = ClientConfig(server=admin.server, ca_data=admin.ca_data, token=str(short))
        async with Client(expired, read_retries=0) as client:
            with pytest.raises(Unauthorized):
                await client.request("GET", "/api/v1/namespaces")
