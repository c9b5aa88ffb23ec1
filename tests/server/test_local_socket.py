"""The API server's Unix socket: the same API without TLS for kubelite's clients on
the server's host, found through the admin kubeconfig and closed to everybody else."""

from __future__ import annotations

import dataclasses
import socket
import stat

import aiohttp
import pytest
import yaml

from kubelite.agent.apiclient import AgentClient
from kubelite.client import Client, Unauthorized, load_kubeconfig
from kubelite.client.kubeconfig import SOCKET_EXTENSION
from kubelite.server.app import APIServer, ServerConfig
from kubelite.server.certs import api_socket, ensure_credentials
from kubelite.store.sqlite import SqliteStore
from tests.ports import free_port

REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def server(data_dir):
    return APIServer(ServerConfig(data_dir=data_dir, port=free_port()),
                     SqliteStore(data_dir / "state.db"))


async def test_local_clients_reach_the_api_through_a_private_socket(tmp_path):
    path = tmp_path / "api.sock"
    async with server(tmp_path):
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        admin = load_kubeconfig(tmp_path / "kubeconfig")
        assert admin.socket == str(path)
        async with Client(admin) as client:
            assert client.endpoint == f"unix:{path}"
            review = await client.request(
                "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body=REVIEW)
            assert review["status"]["userInfo"]["username"] == "kubernetes-admin"
            created = await client.create(client.resource("configmaps"), {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local"}})
        # The same object through HTTPS: one API, two ways in.
        async with Client(dataclasses.replace(admin, socket=None)) as client:
            assert client.endpoint == admin.server
            got = await client.get(client.resource("configmaps"), "local")
            assert got["metadata"]["uid"] == created["metadata"]["uid"]
        # Plain HTTP is no way around authentication.
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as s:
            async with s.get("http://localhost/api/v1/namespaces") as resp:
                assert resp.status == 401
                assert (await resp.json())["reason"] == "Unauthorized"
        async with Client(dataclasses.replace(admin, token="not-a-token"),
                          read_retries=0) as client:
            assert client.endpoint == f"unix:{path}"
            with pytest.raises(Unauthorized):
                await client.request("GET", "/api/v1/namespaces")
    assert not path.exists()


async def test_a_socket_left_by_a_killed_server_does_not_stop_the_next(tmp_path):
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    async with server(tmp_path):
        async with Client(load_kubeconfig(tmp_path / "kubeconfig")) as client:
            assert client.endpoint == f"unix:{path}"
            assert (await client.request("GET", "/api/v1/namespaces/default"))[
                "metadata"]["name"] == "default"


async def test_clients_use_https_where_the_socket_is_not_theirs_to_use(tmp_path):
    async with server(tmp_path):
        admin = load_kubeconfig(tmp_path / "kubeconfig")
        # A kubeconfig copied to another host names a socket that is not there.
        elsewhere = dataclasses.replace(admin, socket=str(tmp_path / "elsewhere.sock"))
        # A client certificate proves nothing without TLS.
        certified = dataclasses.replace(admin, token=None)
        for config in (elsewhere, certified):
            async with Client(config) as client:
                assert client.endpoint == admin.server


def test_a_data_dir_too_deep_for_a_socket_path_gets_none(tmp_path):
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    assert api_socket(tmp_path) == tmp_path / "api.sock"
    assert api_socket(deep) is None
    ensure_credentials(deep, host="127.0.0.1", port=6443, socket=api_socket(deep))
    cluster = yaml.safe_load((deep / "kubeconfig").read_text())["clusters"][0]["cluster"]
    assert "extensions" not in cluster
    assert load_kubeconfig(deep / "kubeconfig").socket is None


def test_the_admin_kubeconfig_names_the_socket_as_a_cluster_extension(tmp_path):
    ensure_credentials(tmp_path, host="127.0.0.1", port=6443, socket=tmp_path / "api.sock")
    cluster = yaml.safe_load((tmp_path / "kubeconfig").read_text())["clusters"][0]["cluster"]
    assert cluster["extensions"] == [
        {"name": SOCKET_EXTENSION, "extension": {"path": str(tmp_path / "api.sock")}}]
    assert cluster["server"] == "https://127.0.0.1:6443"


async def test_a_node_agent_reaches_the_api_through_the_network(tmp_path):
    async with server(tmp_path):
        admin = load_kubeconfig(tmp_path / "kubeconfig")
        async with AgentClient(admin, user_agent="agent") as client:
            assert client.endpoint == admin.server
            assert (await client.request("GET", "/api/v1/namespaces/default"))[
                "metadata"]["name"] == "default"
