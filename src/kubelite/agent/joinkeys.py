"""`python -m kubelite.agent.joinkeys --out-dir DIR [--ca-hash-of CA]`: make the
node's key pairs and certificate requests for joining and for rotation.

Writes DIR/client.key, client.csr, serving.key, serving.csr (keys mode 0600) and,
with --ca-hash-of, prints the CA's `sha256:<hex>` public key hash. A child
process of the agent, so that the agent itself never imports `cryptography`.
The requests' subjects only say what is asked for: the server decides the
certificates' names (server/nodecerts.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.server.certs import ca_hash


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_request(out_dir: Path, kind: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"node-{kind}")]))
           .sign(key, hashes.SHA256()))
    _write(out_dir / f"{kind}.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    _write(out_dir / f"{kind}.csr", csr.public_bytes(serialization.Encoding.PEM), 0o644)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubelite.agent.joinkeys")
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--ca-hash-of", type=Path)
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for kind in ("client", "serving"):
        make_request(args.out_dir, kind)
    if args.ca_hash_of is not None:
        try:
            print(ca_hash(args.ca_hash_of))
        except ValueError as e:
            print(f"the cluster CA is not a PEM certificate: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
