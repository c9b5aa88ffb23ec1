"""Joining a cluster with a bootstrap token: `kubelite agent --server URL --token T
--ca-cert-hash sha256:H`.

The steps, as kubeadm join and kubelet's TLS bootstrap:
1. fetch the cluster CA without verifying the server (GET /kubelite/v1/cluster-ca)
   and refuse it unless the sha256 of its SubjectPublicKeyInfo is the pinned hash;
2. make key pairs on this machine and send their certificate requests, over TLS
   verified against that CA, authenticated with the token
   (POST /kubelite/v1/nodecredentials, server/nodecerts.py);
3. keep the answer under the agent's root and write a kubeconfig there:
       ROOT/pki/ca.crt, node-client.crt/.key, node-serving.crt/.key,
       ROOT/pki/node-credentials.json (node, server, addresses, validity)
       ROOT/kubeconfig
A later start with valid credentials on disk uses them and needs no token.

Keys, requests and the CA hash are made by `python -m kubelite.agent.joinkeys` in
a child process, so that the agent never imports `cryptography` (about 7 MB).
Certificate rotation is in agent/rotation.py.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubelite.client import (
    ApiError,
    Client,
    ClientConfig,
    ClientError,
    Forbidden,
    TransportError,
    Unauthorized,
)

# Served by server/nodecerts.py (not imported here: it needs `cryptography`).
CLUSTER_CA_PATH = "/kubelite/v1/cluster-ca"
NODE_CREDENTIALS_PATH = "/kubelite/v1/nodecredentials"
# Kubernetes' default for kubelet client certificates (--cluster-signing-duration).
DEFAULT_SECONDS = 365 * 24 * 3600

_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN = re.compile(r"^(?:kubelite\.)?[a-z0-9]{6}\.[a-z0-9]{16}$")


class JoinError(Exception):
    """Joining was refused or failed; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """A node's credentials on disk and what they were issued for."""

    root: Path
    node_name: str
    server: str
    addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.pki / "node-client.crt"

    @property
    def client_key(self) -> Path:
        return self.pki / "node-client.key"

    @property
    def serving_cert(self) -> Path:
        return self.pki / "node-serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.pki / "node-serving.key"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def client_config(self) -> ClientConfig:
        """A client that authenticates with the node's client certificate."""
        return ClientConfig(server=self.server, ca_data=self.ca_cert.read_bytes(),
                            cert_data=self.client_cert.read_bytes(),
                            key_data=self.client_key.read_bytes())


def _meta_path(root: Path) -> Path:
    return root / "pki" / "node-credentials.json"


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def load_credentials(root: Path, *, node_name: str, server: str | None = None,
                     now: dt.datetime | None = None) -> NodeCredentials | None:
    """Credentials on disk for `node_name` (and `server` when given) that are still
    valid; None when there are none, they are for another node or they expired."""
    try:
        meta = json.loads(_meta_path(root).read_text())
        creds = NodeCredentials(
            root=root, node_name=meta["nodeName"], server=meta["server"],
            addresses=tuple(meta.get("addresses") or ()),
            not_before=_parse_time(meta["notBefore"]), not_after=_parse_time(meta["notAfter"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if creds.node_name != node_name or (server is not None and creds.server != server):
        return None
    files = (creds.ca_cert, creds.client_cert, creds.client_key, creds.serving_cert,
             creds.serving_key)
    if not all(f.exists() for f in files):
        return None
    if creds.not_after <= (now or dt.datetime.now(dt.UTC)):
        return None
    return creds


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _kubeconfig(creds: NodeCredentials) -> bytes:
    user = f"system:node:{creds.node_name}"
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "kubelite", "cluster": {
            "server": creds.server,
            "certificate-authority-data": base64.b64encode(creds.ca_cert.read_bytes()).decode()}}],
        "users": [{"name": user, "user": {"client-certificate": str(creds.client_cert),
                                          "client-key": str(creds.client_key)}}],
        "contexts": [{"name": "kubelite", "context": {"cluster": "kubelite", "user": user}}],
        "current-context": "kubelite", "preferences": {},
    }, sort_keys=False).encode()


def store_credentials(root: Path, *, node_name: str, server: str, addresses: tuple[str, ...],
                      answer: dict[str, Any], keys: Path) -> NodeCredentials:
    """Put a signing answer and the keys it was made for (in `keys`) in place.
    Blocking: call in a thread."""
    pki = root / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = NodeCredentials(root=root, node_name=node_name, server=server, addresses=addresses,
                            not_before=_parse_time(answer["notBefore"]),
                            not_after=_parse_time(answer["notAfter"]))
    # Keys before certificates: a crash between leaves a key without its new
    # certificate, which the next start notices as a mismatch and rejoins.
    _write_private(creds.ca_cert, answer["caCertificate"].encode())
    for kind in ("client", "serving"):
        _write_private(pki / f"node-{kind}.key", (keys / f"{kind}.key").read_bytes())
        cert = answer["clientCertificate" if kind == "client" else "servingCertificate"]
        _write_private(pki / f"node-{kind}.crt", cert.encode())
    _write_private(_meta_path(root), json.dumps({
        "nodeName": node_name, "server": server, "addresses": list(addresses),
        "notBefore": answer["notBefore"], "notAfter": answer["notAfter"]}).encode())
    _write_private(creds.kubeconfig, _kubeconfig(creds))
    return creds


async def _helper(*args: str) -> str:
    """Run `python -m kubelite.agent.joinkeys ARGS`; its stdout."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubelite.agent.joinkeys", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise JoinError(f"making keys failed: {err.decode().strip().splitlines()[-1:]}")
    return out.decode().strip()


async def make_requests(workdir: Path, *, ca_file: Path | None = None) -> str:
    """Fresh keys and certificate requests in `workdir` (client.key/.csr,
    serving.key/.csr); the CA's public key hash when `ca_file` is given."""
    args = ["--out-dir", str(workdir)]
    if ca_file is not None:
        args += ["--ca-hash-of", str(ca_file)]
    return await _helper(*args)


async def request_certificates(config: ClientConfig, *, node_name: str,
                               addresses: tuple[str, ...], workdir: Path,
                               seconds: int) -> dict[str, Any]:
    """Ask the API server to sign the requests in `workdir`, authenticated by `config`."""
    body = {"nodeName": node_name,
            "clientCSR": (workdir / "client.csr").read_text(),
            "servingCSR": (workdir / "serving.csr").read_text(),
            "addresses": list(addresses), "expirationSeconds": seconds}
    async with Client(config, user_agent=f"kubelite-agent/{node_name}", timeout=30,
                      read_retries=0) as client:
        return await client.request("POST", NODE_CREDENTIALS_PATH, body=body)


async def fetch_ca(server: str) -> bytes:
    """The CA certificate the server offers, fetched without verifying it."""
    config = ClientConfig(server=server, insecure=True)
    try:
        async with Client(config, user_agent="kubelite-join", timeout=15) as client:
            pem = await client.request("GET", CLUSTER_CA_PATH, raw=True)
    except ClientError as e:
        raise JoinError(f"cannot fetch the cluster CA from {server}: {e}") from None
    if b"BEGIN CERTIFICATE" not in pem:
        raise JoinError(f"{server} did not answer with a CA certificate")
    return pem


async def join(*, server: str, token: str, ca_cert_hash: str, node_name: str, root: Path,
               addresses: tuple[str, ...], seconds: int = DEFAULT_SECONDS) -> NodeCredentials:
    """Join with a bootstrap token; raises JoinError with a one-line reason."""
    if not _TOKEN.match(token):
        raise JoinError("invalid --token: expected kubelite.<6 characters a-z0-9>."
                        "<16 characters a-z0-9>, as `kubelite token create` prints")
    want = ca_cert_hash.strip().lower()
    if not _HASH.match(want):
        raise JoinError("invalid --ca-cert-hash: expected sha256:<64 hex digits>, as "
                        "`kubelite server` prints")
    if not server.startswith("https://"):
        raise JoinError(f"invalid --server {server!r}: expected https://HOST:PORT")
    ca_pem = await fetch_ca(server)
    workdir = root / "pki" / "joining"
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True, mode=0o700)
    try:
        await asyncio.to_thread(_write_private, workdir / "ca.crt", ca_pem)
        got = await make_requests(workdir, ca_file=workdir / "ca.crt")
        if got != want:
            raise JoinError(f"the cluster CA of {server} has public key hash {got}, not the "
                            f"pinned --ca-cert-hash {want}: refusing to join")
        config = ClientConfig(server=server, ca_data=ca_pem, token=token)
        try:
            answer = await request_certificates(config, node_name=node_name,
                                                addresses=addresses, workdir=workdir,
                                                seconds=seconds)
        except Unauthorized:
            masked = token.rsplit(".", 1)[0] + ".****************"
            raise JoinError(f"the API server refused the bootstrap token {masked}: it is "
                            f"unknown, wrong or expired (make a new one with "
                            f"`kubelite token create`)") from None
        except Forbidden as e:
            raise JoinError(f"the API server refused to sign node credentials: "
                            f"{e.status.get('message', e)}") from None
        except (ApiError, TransportError) as e:
            raise JoinError(f"requesting node credentials from {server} failed: {e}") from None
        return await asyncio.to_thread(store_credentials, root, node_name=node_name,
                                       server=server, addresses=addresses, answer=answer,
                                       keys=workdir)
    finally:
        await asyncio.to_thread(clear_dir, workdir)


def clear_dir(path: Path) -> None:
    """Remove a work directory of key files (flat) if it exists."""
    if path.exists():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        path.rmdir()


async def ensure_credentials(*, server: str, token: str | None, ca_cert_hash: str | None,
                             node_name: str, root: Path,
                             addresses: tuple[str, ...]) -> NodeCredentials:
    """Valid credentials on disk, else join with the token."""
    found = await asyncio.to_thread(load_credentials, root, node_name=node_name, server=server)
    if found is not None:
        return found
    if not token or not ca_cert_hash:
        raise JoinError(f"no valid node credentials under {root}: give --token and "
                        f"--ca-cert-hash to join")
    return await join(server=server, token=token, ca_cert_hash=ca_cert_hash,
                      node_name=node_name, root=root, addresses=addresses)
