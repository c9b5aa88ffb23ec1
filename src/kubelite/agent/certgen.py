"""`python -m kubelite.agent.certgen`: write the agent's serving certificate.

Run as a child process so that the agent itself never imports `cryptography`,
which would cost it about 7 MB of memory for a job done once at start. The
certificate is issued from the cluster CA when its key is given, else
self-signed (as kubelet does without one); a valid certificate already on disk
with the same names is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubelite.server.certs import issue_certificate

_RENEW_BEFORE = dt.timedelta(days=30)


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


def _still_good(cert_path: Path, dns: list[str], ips: list[str], issuer: Path | None) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _RENEW_BEFORE:
        return False
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have_ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    if set(sans.get_values_for_type(x509.DNSName)) != set(dns) or have_ips != set(ips):
        return False
    if issuer is not None:
        ca = x509.load_pem_x509_certificate(issuer.read_bytes())
        return cert.issuer == ca.subject
    return cert.issuer == cert.subject


def write(out_dir: Path, *, name: str, dns: list[str], ips: list[str],
          ca_cert: Path | None, ca_key: Path | None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = out_dir / "agent.crt", out_dir / "agent.key"
    issuer = ca_cert if ca_cert and ca_key else None
    if key_path.exists() and _still_good(cert_path, dns, ips, issuer):
        return cert_path, key_path
    if issuer is not None and ca_key is not None:
        cert, key = issue_certificate(issuer, ca_key, common_name=name, dns_names=dns,
                                      ip_addresses=ips)
    else:
        cert, key = _self_signed(name, dns, ips)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    cert_path.write_bytes(cert)
    return cert_path, key_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubelite.agent.certgen")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--ip", action="append", default=[])
    p.add_argument("--ca-cert", type=Path)
    p.add_argument("--ca-key", type=Path)
    args = p.parse_args(argv)
    write(args.out_dir, name=args.name, dns=sorted(set(args.dns)), ips=sorted(set(args.ip)),
          ca_cert=args.ca_cert, ca_key=args.ca_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
