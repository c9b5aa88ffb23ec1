"""Where the API server is and how to prove who we are: kubeconfig files and in-cluster config.

`load_config()` follows client-go's order: an explicit path, then $KUBECONFIG
(the first existing file of the list), then ~/.kube/config, then the in-cluster
service account. These read small files and are meant for start-up; inside a
running event loop call `await asyncio.to_thread(load_config, ...)`.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# A cluster extension in the admin kubeconfig that kubectl ignores: the API server's
# Unix socket on this host, which saves clients on the same host the cost of TLS.
SOCKET_EXTENSION = "kubelite.io/api-socket"


class ConfigError(Exception):
    """No usable configuration: a missing file, context, cluster or user."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    server: str
    ca_data: bytes | None = None
    token: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False
    # The namespace of the context (or the service account's): the default for namespaced calls.
    namespace: str = "default"
    # The same server's Unix socket, when the kubeconfig names one (SOCKET_EXTENSION).
    # It belongs to `server`: whoever points the config at another server clears it.
    socket: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for an https:// server; None for plain http://."""
        if not self.server.startswith("https://"):
            return None
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        else:
            ctx = ssl.create_default_context()
        if self.cert_data and self.key_data:
            _load_cert_chain(ctx, self.cert_data, self.key_data)
        return ctx


def _load_cert_chain(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # The ssl module reads client certificates only from files; keep them in a
    # private directory for the one call and remove them at once.
    with tempfile.TemporaryDirectory(prefix="kubelite-client-") as tmp:
        cert_path = Path(tmp) / "client.crt"
        key_path = Path(tmp) / "client.key"
        cert_path.write_bytes(cert)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        ctx.load_cert_chain(str(cert_path), str(key_path))


def _named(items: list[dict[str, Any]] | None, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise ConfigError(f"{what} {name!r} not found in kubeconfig")


def _data_or_file(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    """`<key>-data` (base64) wins over `<key>` (a path, relative to the kubeconfig's folder)."""
    data = section.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = section.get(key)
    if path:
        return (base / path).read_bytes()
    return None


def load_kubeconfig(path: str | os.PathLike[str], *, context: str | None = None) -> ClientConfig:
    path = Path(path).expanduser()
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e}") from e
    return config_from_dict(doc, context=context, base=path.parent)


def config_from_dict(
    doc: dict[str, Any], *, context: str | None = None, base: Path = Path(".")
) -> ClientConfig:
    """A ClientConfig from a parsed kubeconfig document (paths resolve against `base`)."""
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError("kubeconfig has no current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context")
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster")
    user = _named(doc.get("users"), ctx["user"], "user") if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    return ClientConfig(
        server=server.rstrip("/"),
        ca_data=_data_or_file(cluster, "certificate-authority", base),
        token=token or None,
        cert_data=_data_or_file(user, "client-certificate", base),
        key_data=_data_or_file(user, "client-key", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        namespace=ctx.get("namespace") or "default",
        socket=_socket(cluster),
    )


def _socket(cluster: dict[str, Any]) -> str | None:
    for named in cluster.get("extensions") or []:
        if isinstance(named, dict) and named.get("name") == SOCKET_EXTENSION:
            path = (named.get("extension") or {}).get("path")
            return path if isinstance(path, str) and path else None
    return None


def in_cluster_config(*, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ClientConfig:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    try:
        token = (sa_dir / "token").read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read the service account token: {e}") from e
    ca_path = sa_dir / "ca.crt"
    ns_path = sa_dir / "namespace"
    if ":" in host:  # an IPv6 address needs brackets in a URL
        host = f"[{host}]"
    return ClientConfig(
        server=f"https://{host}:{port}",
        ca_data=ca_path.read_bytes() if ca_path.exists() else None,
        token=token,
        namespace=ns_path.read_text().strip() if ns_path.exists() else "default",
    )


def load_config(
    path: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> ClientConfig:
    if path is not None:
        return load_kubeconfig(path, context=context)
    for candidate in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if candidate and Path(candidate).expanduser().exists():
            return load_kubeconfig(candidate, context=context)
    default = Path("~/.kube/config").expanduser()
    if default.exists():
        return load_kubeconfig(default, context=context)
    return in_cluster_config()
