"""The agent's HTTPS endpoint: its serving certificate, and who may call it.

The certificate is, in order: the files given (kubelet's --tls-cert-file), one
issued from the cluster CA when its key is at hand, or a self-signed one (what
kubelet does without either). The certificate itself is made by certgen.py in a
child process.

Callers are authenticated and then authorized by the API server, as kubelet's
webhook mode does, for `<verb> nodes/<subresource>` on this node:
- a client certificate, verified by TLS against the cluster CA, names the user
  (CN) and its groups (O); the agent asks about that user with a
  SubjectAccessReview made with its own credentials. A node's certificate is
  refused, since nodes may not use nodes/proxy, other nodes' or their own;
- a bearer token is asked about with a SelfSubjectAccessReview made with that
  token, which authenticates and authorizes in one request (an unknown token
  gets 401). The API server proxies logs, exec and port-forward with its admin
  token (server/streaming.py), which is allowed.
Verdicts are cached as kubelet's defaults: allowed for 5 minutes, refused for 30
seconds; a review that fails is refused and not cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from kubelite.agent.config import AgentConfig
from kubelite.api import registry
from kubelite.api.registry import Resource
from kubelite.client import Client, ClientError, Unauthorized, resource_path
from kubelite.server.auth import user_from_certificate

log = logging.getLogger(__name__)

SSAR = registry.lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
SAR = registry.lookup("authorization.k8s.io", "v1", "subjectaccessreviews")
ALLOWED_TTL = 300.0
DENIED_TTL = 30.0


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
_TTL: dict[Verdict, float] = {"allowed": ALLOWED_TTL, "forbidden": DENIED_TTL,
                              "unauthenticated": DENIED_TTL}


def certificate_user(peer_cert: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
    """(user, groups) of a verified client certificate, in ssl's getpeercert() form,
    read as the API server reads it."""
    user = user_from_certificate(peer_cert)
    return None if user is None else (user.username, tuple(user.groups))


class Authenticator:
    def __init__(self, client: Client, *, node_name: str) -> None:
        # The agent's own client, for SubjectAccessReviews.
        self.client = client
        self.node_name = node_name
        # (caller, verb, subresource) -> (verdict, expiry); the caller is a token's
        # digest or a certificate's user and groups.
        self._cache: dict[tuple[str, str, str], tuple[Verdict, float]] = {}

    async def check(self, *, peer_cert: dict | None, authorization: str | None, verb: str,
                    subresource: str) -> Verdict:
        attributes = {"verb": verb, "resource": "nodes", "subresource": subresource,
                      "name": self.node_name}
        if peer_cert:
            user = certificate_user(peer_cert)
            if user is None:
                return "unauthenticated"
            review: dict[str, Any] = {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user[0], "groups": list(user[1]),
                         "resourceAttributes": attributes}}
            caller = "\n".join((user[0], *user[1]))
            return await self._cached((caller, verb, subresource),
                                      lambda: self._ask(self.client, SAR, review))
        if not authorization or not authorization.startswith("Bearer "):
            return "unauthenticated"
        token = authorization[7:].strip()
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attributes}}
        config = dataclasses.replace(self.client.config, token=token, cert_data=None,
                                     key_data=None)

        async def ask_as_caller() -> Verdict | None:
            async with Client(config, user_agent="kubelite-agent-auth", timeout=10) as client:
                return await self._ask(client, SSAR, review)

        digest = hashlib.sha256(token.encode()).hexdigest()
        return await self._cached((digest, verb, subresource), ask_as_caller)

    async def _cached(self, key: tuple[str, str, str],
                      ask: Callable[[], Awaitable[Verdict | None]]) -> Verdict:
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        verdict = await ask()
        if verdict is None:
            return "forbidden"
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (verdict, time.monotonic() + _TTL[verdict])
        return verdict

    async def _ask(self, client: Client, res: Resource | None, review: dict[str, Any]
                   ) -> Verdict | None:
        """The API server's verdict; None when it could not be asked."""
        assert res is not None
        try:
            answer = await client.request("POST", resource_path(res), body=review)
        except Unauthorized as e:
            if client is self.client:
                log.warning("%s: the API server refused the agent's credentials: %s",
                            res.kind, e)
                return None
            return "unauthenticated"
        except ClientError as e:
            log.warning("%s failed: %s", res.kind, e)
            return None
        return "allowed" if (answer.get("status") or {}).get("allowed") else "forbidden"
