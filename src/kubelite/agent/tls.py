"""The agent's HTTPS endpoint: its serving certificate, and who may call it.

The certificate is, in order: the files given (kubelet's --tls-cert-file), one
issued from the cluster CA when its key is at hand, or a self-signed one (what
kubelet does without either). Callers authenticate with a client certificate
signed by the cluster CA, or with a bearer token that the API server confirms
may use this node's `nodes/<subresource>` (a SelfSubjectAccessReview made with
the caller's own token, cached for two minutes as kubelet's webhook
authenticator). The certificate itself is made by certgen.py in a child process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import ssl
import sys
import time
from pathlib import Path
from typing import Literal

from kubelite.agent.config import AgentConfig
from kubelite.api import registry
from kubelite.client import Client, ClientConfig, ClientError, Unauthorized, resource_path

log = logging.getLogger(__name__)

SSAR = registry.lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
AUTH_CACHE_SECONDS = 120.0


async def serving_files(config: AgentConfig, node_ip: str) -> tuple[Path, Path]:
    """(certificate, key) files for the endpoint, made by certgen in a child process."""
    if config.tls_cert_file and config.tls_key_file:
        return config.tls_cert_file, config.tls_key_file
    pki = config.root / "pki"
    argv = [sys.executable, "-m", "kubelite.agent.certgen", "--out-dir", str(pki),
            "--name", config.node_name]
    for name in {config.node_name, "localhost"}:
        argv += ["--dns", name]
    for ip in {node_ip, "127.0.0.1"} - {""}:
        argv += ["--ip", ip]
    if config.ca_cert_file and config.ca_key_file:
        argv += ["--ca-cert", str(config.ca_cert_file), "--ca-key", str(config.ca_key_file)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"making the agent's certificate failed: {output.decode()[-2000:]}")
    return pki / "agent.crt", pki / "agent.key"


def server_context(cert: Path, key: Path, ca_data: bytes | None) -> ssl.SSLContext:
    """TLS for the endpoint; client certificates are asked for and checked
    against the cluster CA, but optional (tokens are the other way in)."""
    # A bare server context: the default one would load the system's CA bundle,
    # which only matters to clients and costs memory.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    if ca_data:
        ctx.load_verify_locations(cadata=ca_data.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


Verdict = Literal["allowed", "unauthenticated", "forbidden"]


class Authenticator:
    def __init__(self, client_config: ClientConfig, node_name: str) -> None:
        self.client_config = client_config
        self.node_name = node_name
        # (token digest, verb, subresource) -> (verdict, expiry)
        self._cache: dict[tuple[str, str, str], tuple[Verdict, float]] = {}

    async def check(self, *, peer_cert: dict | None, authorization: str | None, verb: str,
                    subresource: str) -> Verdict:
        if peer_cert:
            # The TLS layer verified it against the cluster CA.
            return "allowed"
        if not authorization or not authorization.startswith("Bearer "):
            return "unauthenticated"
        token = authorization[7:].strip()
        key = (hashlib.sha256(token.encode()).hexdigest(), verb, subresource)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        verdict = await self._review(token, verb, subresource)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (verdict, time.monotonic() + AUTH_CACHE_SECONDS)
        return verdict

    async def _review(self, token: str, verb: str, subresource: str) -> Verdict:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": verb, "resource": "nodes",
                                                  "subresource": subresource,
                                                  "name": self.node_name}}}
        config = dataclasses.replace(self.client_config, token=token, cert_data=None,
                                     key_data=None)
        try:
            async with Client(config, user_agent="kubelite-agent-auth", timeout=10) as client:
                answer = await client.request("POST", resource_path(SSAR), body=review)
        except Unauthorized:
            return "unauthenticated"
        except ClientError as e:
            log.info("token review failed: %s", e)
            return "forbidden"
        return "allowed" if (answer.get("status") or {}).get("allowed") else "forbidden"
