"""The serving certificate of the agent's HTTPS endpoint, and who may call it.

The certificate is, in order: the files given (kubelet's --tls-cert-file), one
issued from the cluster CA when its key is at hand, or a self-signed one (what
kubelet does without either). Callers authenticate with a client certificate
signed by the cluster CA, or with a bearer token that the API server confirms
may use this node's `nodes/proxy` (a SelfSubjectAccessReview made with the
caller's own token, cached for two minutes as kubelet's webhook authenticator).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.agent.config import AgentConfig
from kubelite.api import registry
from kubelite.client import Client, ClientConfig, ClientError, resource_path
from kubelite.server.certs import issue_certificate

log = logging.getLogger(__name__)

SSAR = registry.lookup("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
AUTH_CACHE_SECONDS = 120.0


def _self_signed(common_name: str, dns: list[str], ips: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def serving_files(config: AgentConfig, node_ip: str) -> tuple[Path, Path]:
    """(certificate, key) files for the endpoint; blocking, run in a thread."""
    if config.tls_cert_file and config.tls_key_file:
        return config.tls_cert_file, config.tls_key_file
    pki = config.root / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    dns = sorted({config.node_name, "localhost"})
    ips = sorted({node_ip, "127.0.0.1"} - {""})
    if config.ca_key_file and config.ca_cert_file:
        cert, key = issue_certificate(config.ca_cert_file, config.ca_key_file,
                                      common_name=config.node_name, dns_names=dns,
                                      ip_addresses=ips)
    else:
        cert, key = _self_signed(config.node_name, dns, ips)
    cert_path, key_path = pki / "agent.crt", pki / "agent.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    cert_path.write_bytes(cert)
    return cert_path, key_path


def server_context(config: AgentConfig, node_ip: str) -> ssl.SSLContext:
    """TLS for the endpoint; client certificates are asked for and checked
    against the cluster CA, but optional (tokens are the other way in)."""
    cert, key = serving_files(config, node_ip)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if config.client.ca_data:
        ctx.load_verify_locations(cadata=config.client.ca_data.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class Authenticator:
    def __init__(self, client_config: ClientConfig, node_name: str) -> None:
        self.client_config = client_config
        self.node_name = node_name
        # (token digest, verb, subresource) -> (allowed, expiry)
        self._cache: dict[tuple[str, str, str], tuple[bool, float]] = {}

    async def allowed(self, *, peer_cert: dict | None, authorization: str | None, verb: str,
                      subresource: str) -> bool:
        if peer_cert:
            # The TLS layer verified it against the cluster CA.
            return True
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization[7:].strip()
        key = (hashlib.sha256(token.encode()).hexdigest(), verb, subresource)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        allowed = await self._review(token, verb, subresource)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (allowed, time.monotonic() + AUTH_CACHE_SECONDS)
        return allowed

    async def _review(self, token: str, verb: str, subresource: str) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": {"verb": verb, "resource": "nodes",
                                                  "subresource": subresource,
                                                  "name": self.node_name}}}
        config = dataclasses.replace(self.client_config, token=token, cert_data=None,
                                     key_data=None)
        try:
            async with Client(config, user_agent="kubelite-agent-auth", timeout=10) as client:
                answer = await client.request("POST", resource_path(SSAR), body=review)
        except ClientError as e:
            log.info("token review failed: %s", e)
            return False
        return bool((answer.get("status") or {}).get("allowed"))
