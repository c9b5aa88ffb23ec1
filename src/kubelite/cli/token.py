"""`kubelite token create|list|delete`: bootstrap tokens for joining machines, as
`kubeadm token`. Tokens are Secrets in kube-system (server/tokens.py), managed
through the API with the admin kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import socket
import sys
from pathlib import Path
from typing import Any

from kubelite.client import (
    Client,
    ClientConfig,
    ClientError,
    ConfigError,
    NotFound,
    load_kubeconfig,
)
from kubelite.server import tokens

SERVER_TOKEN_DESCRIPTION = "made by kubelite server for its join command"
# The server's join token is replaced when less than this is left of it.
_MIN_LEFT = dt.timedelta(hours=1)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("token", help="manage bootstrap tokens for joining nodes",
                       description="Create, list and delete bootstrap tokens with which "
                                   "`kubelite agent --token` joins a machine.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=Path("/var/lib/kubelite"),
                        help="the server's data directory, for its admin kubeconfig")
    common.add_argument("--kubeconfig", type=Path,
                        help="admin kubeconfig (default DATA_DIR/kubeconfig)")
    ops = p.add_subparsers(dest="op", required=True, metavar="OP")
    create = ops.add_parser("create", parents=[common], help="create a token and print it")
    create.add_argument("--ttl", default="24h",
                        help="lifetime, e.g. 24h, 30m, 1h30m; 0 never expires (default 24h)")
    create.add_argument("--description", default="")
    create.add_argument("--usages", default="authentication,signing",
                        help="comma-separated: authentication, signing")
    create.add_argument("--groups", default=",".join(tokens.DEFAULT_GROUPS),
                        help="extra groups, each starting with system:bootstrappers:")
    create.add_argument("--print-join-command", action="store_true",
                        help="print the whole `kubelite agent` command to join with")
    ops.add_parser("list", parents=[common], help="list tokens")
    delete = ops.add_parser("delete", parents=[common], help="delete tokens by id or whole token")
    delete.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(run=run)
    return p


def ca_hash_of(pem: bytes) -> str:
    """`sha256:<hex>` of a CA's SubjectPublicKeyInfo, as server/certs.py's ca_hash."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def join_command(*, server: str, token: str, ca_pem: bytes) -> str:
    return (f"kubelite agent --server {server} --token {token} "
            f"--ca-cert-hash {ca_hash_of(ca_pem)}")


def reachable_server(host: str, port: int) -> str:
    """The URL a machine elsewhere uses: the listen address, or for a wildcard
    this machine's default-route address (a UDP connect sends nothing)."""
    if host in ("0.0.0.0", "::", ""):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect(("10.255.255.255", 9))
                host = str(s.getsockname()[0])
            except OSError:
                host = "127.0.0.1"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _row(secret: dict[str, Any], now: dt.datetime) -> list[str] | None:
    if secret.get("type") != tokens.SECRET_TYPE:
        return None
    fields = tokens.secret_fields(secret)
    if not tokens.valid_id(fields.get("token-id", "")):
        return None
    token = f"{tokens.PREFIX}{fields['token-id']}.{fields.get('token-secret', '')}"
    when = tokens.expiration(fields)
    if when is None:
        ttl, expires = "<forever>", "<never>"
    elif when <= now:
        ttl, expires = "<invalid>", tokens.rfc3339(when)
    else:
        ttl, expires = _human(when - now), tokens.rfc3339(when)
    usages = ",".join(k.removeprefix("usage-bootstrap-") for k, v in sorted(fields.items())
                      if k.startswith("usage-bootstrap-") and v == "true")
    return [token, ttl, expires, usages or "<none>", fields.get("description", "<none>") or
            "<none>", fields.get("auth-extra-groups", "<none>")]


def _human(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds >= 60 else f"{seconds}s"


async def _bootstrap_secrets(client: Client) -> list[dict[str, Any]]:
    secrets = client.resource("secrets")
    listing = await client.list(secrets, namespace=tokens.NAMESPACE)
    return [s for s in listing.get("items") or [] if s.get("type") == tokens.SECRET_TYPE]


async def create_token(client: Client, *, ttl: dt.timedelta | None, description: str = "",
                       usages: tuple[str, ...] = tokens.DEFAULT_USAGES,
                       groups: tuple[str, ...] = tokens.DEFAULT_GROUPS) -> tokens.BootstrapToken:
    token = tokens.BootstrapToken.generate()
    await client.create(client.resource("secrets"), tokens.token_secret(
        token, ttl=ttl, description=description, usages=usages, groups=groups),
        namespace=tokens.NAMESPACE)
    return token


async def ensure_server_token(client: Client) -> str:
    """The server's join token: a valid one made before, else a new 24 h one.
    Expired tokens are deleted on the way, as Kubernetes' token cleaner does."""
    now = dt.datetime.now(dt.UTC)
    found: str | None = None
    for secret in await _bootstrap_secrets(client):
        fields = tokens.secret_fields(secret)
        if tokens.is_expired(fields, now):
            try:
                await client.delete(client.resource("secrets"), secret["metadata"]["name"],
                                    namespace=tokens.NAMESPACE)
            except NotFound:
                pass
            continue
        when = tokens.expiration(fields)
        if (found is None and fields.get("description") == SERVER_TOKEN_DESCRIPTION
                and (when is None or when - now > _MIN_LEFT)):
            found = f"{tokens.PREFIX}{fields['token-id']}.{fields['token-secret']}"
    if found is not None:
        return found
    return str(await create_token(client, ttl=tokens.DEFAULT_TTL,
                                  description=SERVER_TOKEN_DESCRIPTION))


async def print_join_command(config: ClientConfig, *, host: str, port: int) -> None:
    """What `kubelite server` prints on start."""
    async with Client(config, user_agent="kubelite-server") as client:
        token = await ensure_server_token(client)
    assert config.ca_data is not None
    server = reachable_server(host, port)
    print("To join a machine, run there (as root):", flush=True)
    print(f"  {join_command(server=server, token=token, ca_pem=config.ca_data)}", flush=True)


def _groups(text: str) -> tuple[str, ...]:
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    bad = [g for g in groups if not g.startswith(tokens.BOOTSTRAPPERS + ":")]
    if bad:
        raise ValueError(f"invalid group {bad[0]!r}: extra groups must start with "
                         f"{tokens.BOOTSTRAPPERS}:")
    return groups


async def _create(client: Client, args: argparse.Namespace) -> int:
    ttl = tokens.parse_duration(args.ttl)
    usages = tuple(u.strip() for u in args.usages.split(",") if u.strip())
    unknown = set(usages) - {"authentication", "signing"}
    if unknown:
        raise ValueError(f"invalid usage {sorted(unknown)[0]!r}: use authentication, signing")
    token = await create_token(client, ttl=ttl or None, description=args.description,
                               usages=usages, groups=_groups(args.groups))
    if args.print_join_command:
        assert client.config.ca_data is not None
        print(join_command(server=client.config.server, token=str(token),
                           ca_pem=client.config.ca_data))
    else:
        print(token)
    return 0


async def _list(client: Client) -> int:
    now = dt.datetime.now(dt.UTC)
    rows = [r for s in await _bootstrap_secrets(client) if (r := _row(s, now)) is not None]
    header = ["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


async def _delete(client: Client, ids: list[str]) -> int:
    status = 0
    for text in ids:
        token_id = text.removeprefix(tokens.PREFIX).split(".")[0]
        if not tokens.valid_id(token_id):
            print(f"error: {text!r} is not a token id ([a-z0-9]{{6}}) or token",
                  file=sys.stderr)
            status = 1
            continue
        try:
            await client.delete(client.resource("secrets"), tokens.SECRET_PREFIX + token_id,
                                namespace=tokens.NAMESPACE)
            print(f"bootstrap token {token_id!r} deleted")
        except NotFound:
            print(f"error: bootstrap token {token_id!r} not found", file=sys.stderr)
            status = 1
    return status


async def run(args: argparse.Namespace) -> int:
    path = args.kubeconfig or args.data_dir / "kubeconfig"
    try:
        config = await asyncio.to_thread(load_kubeconfig, path)
        async with Client(config, user_agent="kubelite-token") as client:
            if args.op == "create":
                return await _create(client, args)
            if args.op == "list":
                return await _list(client)
            return await _delete(client, args.ids)
    except (ClientError, ConfigError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


__all__ = ["add_parser", "ca_hash_of", "create_token", "ensure_server_token",
           "join_command", "print_join_command", "run"]
