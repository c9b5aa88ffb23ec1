"""Node credentials: the cluster CA for discovery, and certificates for nodes.

    GET  /kubelite/v1/cluster-ca        the CA certificate (PEM), without
                                        authentication: a joining machine fetches
                                        it unverified and checks it against the hash
                                        it was given (kubeadm's
                                        discovery-token-ca-cert-hash)
    POST /kubelite/v1/nodecredentials   signs a node's certificate requests

kubelite signs node certificates at this one endpoint rather than through
CertificateSigningRequest objects and an approving controller: the decision is
the one Kubernetes' csrapproving controller makes for kubelets (a bootstrapper
may ask for any node's client certificate, a node only for its own), taken at
once, so that joining needs one request and nothing to poll.

The request body:
    {"nodeName": "n1", "clientCSR": PEM, "servingCSR": PEM (optional),
     "addresses": ["10.0.0.5", "n1.example"], "expirationSeconds": 31536000}
The answer:
    {"clientCertificate": PEM, "servingCertificate": PEM (when asked),
     "caCertificate": PEM, "notBefore": RFC 3339, "notAfter": RFC 3339}
Both certificates name `system:node:<name>` in the organisation `system:nodes`,
as kubelet's; the key stays with the node, only its public half is signed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.api import errors
from kubelite.server import codec
from kubelite.server.auth import BOOTSTRAPPERS, MASTERS, NODE_USER_PREFIX, NODES, node_name_of
from kubelite.server.context import user_of

CLUSTER_CA_PATH = "/kubelite/v1/cluster-ca"
NODE_CREDENTIALS_PATH = "/kubelite/v1/nodecredentials"
# Kubernetes' bounds for a CSR's spec.expirationSeconds, and the signer's default
# (kube-controller-manager --cluster-signing-duration).
MIN_SECONDS = 600
MAX_SECONDS = 365 * 24 * 3600

_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True, slots=True)
class Signer:
    ca_cert: Path
    ca_key: Path


SIGNER = web.AppKey("node-signer", Signer)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rfc3339(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _load_csr(pem: Any, what: str) -> x509.CertificateSigningRequest:
    if not isinstance(pem, str):
        raise errors.bad_request(f"{what}: a PEM certificate request is required")
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise errors.bad_request(f"{what}: not a PEM certificate request") from None
    if not csr.is_signature_valid:
        raise errors.bad_request(f"{what}: the request's signature is not valid")
    return csr


def _sans(node: str, addresses: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(node)]
    for value in addresses:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            if not _NODE_NAME.match(value):
                raise errors.bad_request(
                    f"addresses: {value!r} is neither an IP nor a DNS name") from None
            out.append(x509.DNSName(value))
    return list(dict.fromkeys(out))


def sign(signer: Signer, csr: x509.CertificateSigningRequest, *, node: str, serving: bool,
         addresses: list[str], seconds: int) -> tuple[bytes, dt.datetime, dt.datetime]:
    """A certificate for the request's key naming `system:node:<node>`; the request's
    own subject and extensions are ignored: the signer decides them."""
    ca_cert = x509.load_pem_x509_certificate(signer.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(signer.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES),
                         x509.NameAttribute(NameOID.COMMON_NAME, NODE_USER_PREFIX + node)])
    not_before = _now().replace(microsecond=0) - dt.timedelta(minutes=5)
    not_after = min(not_before + dt.timedelta(seconds=seconds + 300), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if serving else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if serving:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(_sans(node, addresses)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), not_before, not_after


def may_request(user_groups: tuple[str, ...], user_node: str | None, node: str) -> bool:
    """As csrapproving: a bootstrapper for any node, a node for itself, an admin always."""
    if MASTERS in user_groups or BOOTSTRAPPERS in user_groups:
        return True
    return user_node == node


def issue(signer: Signer, body: dict[str, Any]) -> dict[str, Any]:
    node = body.get("nodeName")
    seconds = body.get("expirationSeconds", MAX_SECONDS)
    addresses = body.get("addresses") or []
    client_csr = _load_csr(body.get("clientCSR"), "clientCSR")
    serving_csr = (_load_csr(body["servingCSR"], "servingCSR")
                   if body.get("servingCSR") is not None else None)
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise errors.bad_request("addresses: a list of IPs and DNS names is required")
    if not isinstance(seconds, int) or seconds < MIN_SECONDS:
        raise errors.bad_request(
            f"expirationSeconds: may not specify a duration less than {MIN_SECONDS} seconds")
    seconds = min(seconds, MAX_SECONDS)
    assert isinstance(node, str)
    cert, not_before, not_after = sign(signer, client_csr, node=node, serving=False,
                                       addresses=[], seconds=seconds)
    answer = {"clientCertificate": cert.decode(),
              "caCertificate": signer.ca_cert.read_text(),
              "notBefore": _rfc3339(not_before), "notAfter": _rfc3339(not_after)}
    if serving_csr is not None:
        serving, _, _ = sign(signer, serving_csr, node=node, serving=True,
                             addresses=addresses, seconds=seconds)
        answer["servingCertificate"] = serving.decode()
    return answer


async def handle_node_credentials(request: web.Request) -> web.Response:
    body = codec.decode_object(codec.media_type(request), await codec.read_body(request))
    node = body.get("nodeName")
    if not isinstance(node, str) or not _NODE_NAME.match(node) or len(node) > 253:
        raise errors.bad_request("nodeName: a DNS subdomain name is required")
    user = user_of(request)
    if not may_request(user.groups, node_name_of(user), node):
        raise errors.forbidden(
            f'User "{user.username}" may not request credentials for node "{node}"')
    answer = await asyncio.to_thread(issue, request.app[SIGNER], body)
    return codec.json_response(answer, status=201)


async def handle_cluster_ca(request: web.Request) -> web.Response:
    pem = await asyncio.to_thread(request.app[SIGNER].ca_cert.read_bytes)
    return web.Response(body=pem, content_type="application/x-pem-file")


def install(app: web.Application, *, ca_cert: Path, ca_key: Path) -> None:
    app[SIGNER] = Signer(ca_cert, ca_key)
    app.router.add_get(CLUSTER_CA_PATH, handle_cluster_ca)
    app.router.add_post(NODE_CREDENTIALS_PATH, handle_node_credentials)
