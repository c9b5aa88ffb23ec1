"""TLS termination for the ingress proxy: a server context per certificate, chosen by SNI.

Python's ssl module loads certificates only from files, so each key pair is
written to a private temporary file, loaded and removed; that is blocking work
and runs in a thread (`contexts_for`), never during a handshake. The handshake's
SNI callback only looks the prepared context up.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelite.ingress.routes import KeyPair

log = logging.getLogger(__name__)

# ingress-nginx serves its "Kubernetes Ingress Controller Fake Certificate" for
# hosts without a certificate of their own; kubelite does the same with its own name.
DEFAULT_CERT_NAME = "kubelite-ingress-default"


def self_signed(common_name: str = DEFAULT_CERT_NAME, *, days: int = 365) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
    )


def server_context(pair: KeyPair) -> ssl.SSLContext:
    """A TLS server context for one key pair (blocking: call from a thread)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    fd, path = tempfile.mkstemp(prefix="kubelite-ingress-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pair.cert.rstrip(b"\n") + b"\n" + pair.key)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


async def contexts_for(
    pairs: Iterable[KeyPair], known: dict[KeyPair, ssl.SSLContext]
) -> dict[KeyPair, ssl.SSLContext]:
    """Contexts for `pairs`, reusing those in `known`; pairs that fail to load are
    logged and left out (their hosts then get the default certificate)."""
    wanted = set(pairs)
    fresh = {p: c for p, c in known.items() if p in wanted}
    missing = [p for p in wanted if p not in fresh]

    def load() -> dict[KeyPair, ssl.SSLContext]:
        out = {}
        for pair in missing:
            try:
                out[pair] = server_context(pair)
            except (ssl.SSLError, ValueError) as e:
                log.warning("ingress: cannot load a TLS certificate: %s", e)
        return out

    if missing:
        fresh.update(await asyncio.to_thread(load))
    return fresh


def sni_selector(
    choose: Callable[[str | None], ssl.SSLContext | None],
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
    """An `sni_callback` that switches the connection to `choose(server_name)`'s
    context; None keeps the listening (default) context."""

    def callback(conn: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = choose(server_name)
        if chosen is not None:
            conn.context = chosen

    return callback
