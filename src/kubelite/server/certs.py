"""The cluster's credentials: a CA, the API server's serving certificate, the admin
token, and the admin kubeconfig, all created on first start and reused after.

Files in the data directory (private keys and tokens mode 0600):
    pki/ca.crt, pki/ca.key          cluster CA (10 years)
    pki/apiserver.crt, .key         serving certificate (1 year, re-issued when its
                                    SANs change or it is within 30 days of expiry)
    pki/token-signing.key           HMAC key for service account and node tokens
    admin.token                     the admin bearer token
    kubeconfig                      admin kubeconfig for kubectl and the client; it
                                    names the server's Unix socket (api.sock) for
                                    kubelite's clients on this host
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.client.kubeconfig import SOCKET_EXTENSION

_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Credentials:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_token: str
    signing_key: bytes
    kubeconfig: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _make_ca(cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelite-ca")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def issue_certificate(
    ca_cert_path: Path,
    ca_key_path: Path,
    *,
    common_name: str,
    organization: str | None = None,
    dns_names: list[str] = (),  # type: ignore[assignment]
    ip_addresses: list[str] = (),  # type: ignore[assignment]
    server: bool = True,
    client: bool = False,
    days: int = 365,
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the cluster CA: (cert PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = _load_key(ca_key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _serving_sans(host: str, extra: list[str]) -> tuple[list[str], list[str]]:
    names = {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", socket.gethostname()}
    ips = {"127.0.0.1", "::1", "10.96.0.1"}
    for value in [host, *extra]:
        if not value or value in ("0.0.0.0", "::"):
            continue
        try:
            ipaddress.ip_address(value)
            ips.add(value)
        except ValueError:
            names.add(value)
    return sorted(names), sorted(ips)


def _needs_new_serving_cert(path: Path, names: list[str], ips: list[str]) -> bool:
    if not path.exists():
        return True
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return True
    have_names = set(san.get_values_for_type(x509.DNSName))
    have_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return not (set(names) <= have_names and set(ips) <= have_ips)


def ca_hash(ca_cert_path: Path) -> str:
    """`sha256:<hex>` of the CA's public key, as kubeadm's discovery-token-ca-cert-hash."""
    cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return "sha256:" + digest.finalize().hex()


def write_kubeconfig(
    path: Path, *, server: str, ca_pem: bytes, token: str, user: str = "admin",
    cluster: str = "kubelite", socket: Path | None = None,
) -> None:
    entry = {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    if socket is not None:
        entry["extensions"] = [{"name": SOCKET_EXTENSION, "extension": {"path": str(socket)}}]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": entry}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())


# sun_path holds 108 bytes with the terminating NUL.
_SOCKET_PATH_MAX = 107


def api_socket(data_dir: Path) -> Path | None:
    """Where the server listens on a Unix socket besides HTTPS; None when the path is
    too long for one (a deep test directory), and clients then use HTTPS."""
    path = data_dir.absolute() / "api.sock"
    return path if len(os.fsencode(path)) <= _SOCKET_PATH_MAX else None


def ensure_credentials(
    data_dir: Path, *, host: str, port: int, extra_sans: list[str] = (),  # type: ignore[assignment]
    socket: Path | None = None,
) -> Credentials:
    """Create what is missing, keep what exists: a restart keeps the same CA and token.
    The kubeconfig names `socket` when the server listens there too."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = pki / "ca.crt", pki / "ca.key"
    if not (ca_cert.exists() and ca_key.exists()):
        _make_ca(ca_cert, ca_key)
    serving_cert, serving_key = pki / "apiserver.crt", pki / "apiserver.key"
    names, ips = _serving_sans(host, list(extra_sans))
    if _needs_new_serving_cert(serving_cert, names, ips):
        cert_pem, key_pem = issue_certificate(
            ca_cert, ca_key, common_name="kube-apiserver", dns_names=names, ip_addresses=ips
        )
        _write_private(serving_key, key_pem)
        serving_cert.write_bytes(cert_pem)
    signing = pki / "token-signing.key"
    if not signing.exists():
        _write_private(signing, secrets.token_bytes(32))
    token_file = data_dir / "admin.token"
    if not token_file.exists():
        _write_private(token_file, secrets.token_urlsafe(32).encode())
    token = token_file.read_text().strip()
    kubeconfig = data_dir / "kubeconfig"
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in connect_host:
        connect_host = f"[{connect_host}]"
    write_kubeconfig(
        kubeconfig, server=f"https://{connect_host}:{port}", ca_pem=ca_cert.read_bytes(),
        token=token, socket=socket,
    )
    return Credentials(
        ca_cert=ca_cert, ca_key=ca_key, serving_cert=serving_cert, serving_key=serving_key,
        admin_token=token, signing_key=signing.read_bytes(), kubeconfig=kubeconfig,
    )
