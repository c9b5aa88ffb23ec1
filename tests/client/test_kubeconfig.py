import base64
import ssl
from pathlib import Path

import pytest
import yaml

from kubelite.client.kubeconfig import (
    SOCKET_EXTENSION,
    ClientConfig,
    ConfigError,
    in_cluster_config,
    load_config,
    load_kubeconfig,
)

from . import self_signed


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(cluster: dict, user: dict, *, namespace: str | None = None) -> dict:
    ctx = {"cluster": "c", "user": "u"}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "main",
        "contexts": [
            {"name": "other", "context": {"cluster": "x", "user": "x"}},
            {"name": "main", "context": ctx},
        ],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_inline_data_and_token(tmp_path: Path) -> None:
    cert, key = self_signed()
    doc = kubeconfig(
        {"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(cert)},
        {"token": "abc", "client-certificate-data": b64(cert), "client-key-data": b64(key)},
        namespace="team",
    )
    cfg = load_kubeconfig(write(tmp_path, doc))
    assert cfg == ClientConfig(
        server="https://127.0.0.1:6443",
        ca_data=cert,
        token="abc",
        cert_data=cert,
        key_data=key,
        insecure=False,
        namespace="team",
    )
    ctx = cfg.ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_file_references_resolve_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    cert, _ = self_signed()
    (tmp_path / "ca.crt").write_bytes(cert)
    (tmp_path / "tok").write_text("from-file\n")
    doc = kubeconfig(
        {"server": "https://h:1", "certificate-authority": "ca.crt"}, {"tokenFile": "tok"}
    )
    cfg = load_kubeconfig(write(tmp_path, doc))
    assert (cfg.ca_data, cfg.token, cfg.namespace) == (cert, "from-file", "default")


@pytest.mark.parametrize("extensions, socket", [
    ([{"name": "other", "extension": {"path": "/x"}},
      {"name": SOCKET_EXTENSION, "extension": {"path": "/run/k/api.sock"}}], "/run/k/api.sock"),
    ([{"name": SOCKET_EXTENSION, "extension": {}}], None),
    ([{"name": SOCKET_EXTENSION, "extension": {"path": 7}}], None),
    (["not-a-map"], None),
    (None, None),
])
def test_the_local_socket_comes_from_its_cluster_extension(tmp_path: Path, extensions,
                                                           socket) -> None:
    cluster = {"server": "https://h:1"}
    if extensions is not None:
        cluster["extensions"] = extensions
    assert load_kubeconfig(write(tmp_path, kubeconfig(cluster, {"token": "t"}))).socket == socket


def test_insecure_skip_tls_verify_disables_verification(tmp_path: Path) -> None:
    doc = kubeconfig({"server": "https://h:1", "insecure-skip-tls-verify": True}, {})
    ctx = load_kubeconfig(write(tmp_path, doc)).ssl_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE


def test_plain_http_has_no_tls_context() -> None:
    assert ClientConfig(server="http://127.0.0.1:8080").ssl_context() is None


def test_explicit_context_is_used(tmp_path: Path) -> None:
    doc = kubeconfig({"server": "https://h:1"}, {})
    with pytest.raises(ConfigError, match="cluster 'x' not found"):
        load_kubeconfig(write(tmp_path, doc), context="other")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"contexts": []}, "no current-context"),
        ({"current-context": "nope", "contexts": []}, "context 'nope' not found"),
        (kubeconfig({}, {}), "has no server"),
    ],
    ids=["no current context", "unknown context", "cluster without server"],
)
def test_broken_kubeconfigs_are_reported(tmp_path: Path, doc: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_kubeconfig(write(tmp_path, doc))


def test_in_cluster_reads_the_service_account(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    (tmp_path / "namespace").write_text("kube-system")
    cfg = in_cluster_config(sa_dir=tmp_path)
    assert cfg == ClientConfig(
        server="https://10.96.0.1:443", ca_data=b"CA", token="sa-token", namespace="kube-system"
    )


def test_in_cluster_needs_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="not in a cluster"):
        in_cluster_config()


def test_load_config_takes_the_first_existing_kubeconfig_env_entry(tmp_path, monkeypatch) -> None:
    path = write(tmp_path, kubeconfig({"server": "https://from-env:1"}, {}))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{path}")
    assert load_config().server == "https://from-env:1"
