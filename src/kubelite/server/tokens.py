"""Bootstrap tokens: short-lived shared secrets with which a new machine joins.

A token reads `kubelite.<id>.<secret>`, id `[a-z0-9]{6}` and secret `[a-z0-9]{16}`
as kubeadm's `<id>.<secret>`; the prefix only makes a kubelite token easy to
recognise, and the bare kubeadm form is accepted too. Each token is a Secret
`kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`, with
Kubernetes' keys (token-id, token-secret, expiration, usage-bootstrap-*,
auth-extra-groups, description), so `kubectl get secrets -n kube-system` shows
them as on any cluster. A valid token authenticates as `system:bootstrap:<id>`
in the groups `system:bootstrappers` and its extra groups.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import logging
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from kubelite.api.registry import lookup
from kubelite.server.auth import AUTHENTICATED, BOOTSTRAPPERS, UserInfo
from kubelite.server.objects import Objects

log = logging.getLogger(__name__)

PREFIX = "kubelite."
SECRET_TYPE = "bootstrap.kubernetes.io/token"
NAMESPACE = "kube-system"
SECRET_PREFIX = "bootstrap-token-"
# kubeadm's default group, kept so that policies written for kubeadm clusters apply.
DEFAULT_GROUPS = ("system:bootstrappers:kubeadm:default-node-token",)
DEFAULT_USAGES = ("authentication", "signing")
DEFAULT_TTL = dt.timedelta(hours=24)

_ID = re.compile(r"^[a-z0-9]{6}$")
_TOKEN = re.compile(r"^(?:kubelite\.)?([a-z0-9]{6})\.([a-z0-9]{16})$")
_ALPHABET = string.ascii_lowercase + string.digits
_SECRETS = lookup("", "v1", "secrets")

Obj = dict[str, Any]


class TokenFormatError(ValueError):
    """Text that is not a bootstrap token."""


@dataclass(frozen=True, slots=True)
class BootstrapToken:
    id: str
    secret: str

    @classmethod
    def generate(cls) -> BootstrapToken:
        return cls("".join(secrets.choice(_ALPHABET) for _ in range(6)),
                   "".join(secrets.choice(_ALPHABET) for _ in range(16)))

    @classmethod
    def parse(cls, text: str) -> BootstrapToken:
        match = _TOKEN.match(text.strip())
        if match is None:
            raise TokenFormatError(
                f"invalid bootstrap token {mask(text)!r}: expected "
                f"kubelite.<6 characters a-z0-9>.<16 characters a-z0-9>")
        return cls(match.group(1), match.group(2))

    def __str__(self) -> str:
        return f"{PREFIX}{self.id}.{self.secret}"

    @property
    def secret_name(self) -> str:
        return SECRET_PREFIX + self.id


def mask(text: str) -> str:
    """The token with its secret part hidden, for messages and logs."""
    head, sep, _ = text.strip().rpartition(".")
    return f"{head}.****************" if sep else "****"


def valid_id(token_id: str) -> bool:
    return bool(_ID.match(token_id))


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_secret(token: BootstrapToken, *, ttl: dt.timedelta | None = DEFAULT_TTL,
                 description: str = "", usages: tuple[str, ...] = DEFAULT_USAGES,
                 groups: tuple[str, ...] = DEFAULT_GROUPS,
                 now: dt.datetime | None = None) -> Obj:
    """The Secret that stores `token`; no `ttl` (or a zero one) means it never expires."""
    data = {"token-id": token.id, "token-secret": token.secret}
    if ttl:
        data["expiration"] = rfc3339((now or dt.datetime.now(dt.UTC)) + ttl)
    for usage in usages:
        data[f"usage-bootstrap-{usage}"] = "true"
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    if description:
        data["description"] = description
    return {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
            "metadata": {"name": token.secret_name, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def secret_fields(secret: Obj) -> dict[str, str]:
    """A bootstrap token Secret's data, decoded; undecodable values are left out."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out


def expiration(fields: dict[str, str]) -> dt.datetime | None:
    """When the token expires; None when never. A malformed value counts as expired
    (Kubernetes refuses such a token too)."""
    value = fields.get("expiration")
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)


def is_expired(fields: dict[str, str], now: dt.datetime | None = None) -> bool:
    when = expiration(fields)
    return when is not None and when <= (now or dt.datetime.now(dt.UTC))


def user_for(secret: Obj, token: BootstrapToken, now: dt.datetime | None = None) -> UserInfo | None:
    """The identity `token` proves against its stored `secret`, or None, as
    Kubernetes' bootstrap token authenticator decides it."""
    if secret.get("type") != SECRET_TYPE or (secret.get("metadata") or {}).get(
            "deletionTimestamp"):
        return None
    fields = secret_fields(secret)
    if fields.get("token-id") != token.id:
        return None
    if not hmac.compare_digest(fields.get("token-secret", "").encode(), token.secret.encode()):
        log.info("bootstrap token %s: wrong secret", token.id)
        return None
    if is_expired(fields, now):
        log.info("bootstrap token %s has expired", token.id)
        return None
    if fields.get("usage-bootstrap-authentication") != "true":
        log.info("bootstrap token %s is not for authentication", token.id)
        return None
    extra = [g.strip() for g in fields.get("auth-extra-groups", "").split(",") if g.strip()]
    # Only groups under system:bootstrappers: may be added, so that a token can
    # never be made to claim system:masters.
    if any(not g.startswith(BOOTSTRAPPERS + ":") for g in extra):
        log.info("bootstrap token %s has a forbidden extra group", token.id)
        return None
    return UserInfo(f"system:bootstrap:{token.id}",
                    groups=(BOOTSTRAPPERS, *extra, AUTHENTICATED))


class BootstrapTokens:
    """Authenticates bearer tokens against the bootstrap token Secrets of the store."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    async def authenticate(self, text: str) -> UserInfo | None:
        match = _TOKEN.match(text)
        if match is None:
            return None
        token = BootstrapToken(match.group(1), match.group(2))
        assert _SECRETS is not None
        secret = await self.objects.get_or_none(_SECRETS, NAMESPACE, token.secret_name)
        if secret is None:
            log.info("bootstrap token %s does not exist", token.id)
            return None
        return user_for(secret, token)


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration as kubeadm's --ttl takes it: `24h`, `1h30m`, `90s`, `0` (never)."""
    text = text.strip()
    if text == "0":
        return dt.timedelta(0)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 24h, 1h30m, 90s or 0")
    unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return dt.timedelta(seconds=sum(float(n) * unit[u] for n, u in parts))
