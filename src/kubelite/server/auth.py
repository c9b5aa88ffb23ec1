"""Authentication (who is asking) and authorization (may they).

Over TLS: client certificates signed by the cluster CA (CN the user, O its
groups, as Kubernetes' x509 authenticator; checked first, as there), then bearer
tokens: the admin token written to the data directory, signed tokens (HS256 JWTs
with the server's signing key) for service accounts, as `kubectl create token`
issues them, and bootstrap tokens (server/tokens.py). Users in the group
system:masters may do everything; nodes are authorized by server/nodeauthz.py;
the rest is refused until RBAC comes (a later issue).
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from kubelite.server.tokens import BootstrapTokens

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
NODES = "system:nodes"
NODE_USER_PREFIX = "system:node:"
BOOTSTRAPPERS = "system:bootstrappers"


@dataclass(frozen=True, slots=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"username": self.username, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


ADMIN = UserInfo("kubernetes-admin", groups=(MASTERS, AUTHENTICATED))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """HS256 JWTs; enough for tokens that only this server verifies."""

    _HEADER = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))

    def __init__(self, key: bytes, *, issuer: str = "https://kubernetes.default.svc") -> None:
        self._key = key
        self.issuer = issuer

    def sign(self, claims: dict[str, Any]) -> str:
        body = f"{self._HEADER}.{_b64(orjson.dumps(claims))}"
        mac = hmac.new(self._key, body.encode(), "sha256").digest()
        return f"{body}.{_b64(mac)}"

    def verify(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != self._HEADER:
            return None
        body = f"{parts[0]}.{parts[1]}"
        want = hmac.new(self._key, body.encode(), "sha256").digest()
        try:
            if not hmac.compare_digest(want, _unb64(parts[2])):
                return None
            claims = orjson.loads(_unb64(parts[1]))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < time.time():
            return None
        return claims

    def service_account_token(
        self, namespace: str, name: str, uid: str, *, audiences: list[str], seconds: int
    ) -> tuple[str, int]:
        now = int(time.time())
        exp = now + seconds
        claims = {
            "iss": self.issuer,
            "aud": audiences,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
        }
        return self.sign(claims), exp


def node_name_of(user: UserInfo) -> str | None:
    """The node a user is, as Kubernetes' node identifier: `system:node:<name>` in
    the group system:nodes; None for everyone else."""
    if NODES not in user.groups or not user.username.startswith(NODE_USER_PREFIX):
        return None
    return user.username[len(NODE_USER_PREFIX):] or None


def user_from_certificate(peer_cert: dict[str, Any]) -> UserInfo | None:
    """The user of a verified client certificate (ssl's getpeercert() form)."""
    names: list[str] = []
    groups: list[str] = []
    for rdn in peer_cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
            elif key == "organizationName":
                groups.append(value)
    if not names or not names[0]:
        return None
    return UserInfo(names[0], groups=(*groups, AUTHENTICATED))


class Authenticator:
    def __init__(self, *, admin_token: str, signer: TokenSigner,
                 bootstrap: BootstrapTokens | None = None) -> None:
        self._admin_token = admin_token.encode()
        self._signer = signer
        self._bootstrap = bootstrap

    async def authenticate(self, authorization: str | None, *,
                           peer_cert: dict[str, Any] | None = None) -> UserInfo | None:
        """`peer_cert` must come from a TLS layer that verified it against the cluster CA."""
        if peer_cert:
            user = user_from_certificate(peer_cert)
            if user is not None:
                return user
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[7:].strip()
        if hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN
        if self._bootstrap is not None and (user := await self._bootstrap.authenticate(token)):
            return user
        claims = self._signer.verify(token)
        if claims is None:
            return None
        sub = claims.get("sub", "")
        if sub.startswith("system:serviceaccount:"):
            ns = sub.split(":")[2]
            sa = claims.get("kubernetes.io", {}).get("serviceaccount", {})
            return UserInfo(
                sub,
                uid=sa.get("uid", ""),
                groups=("system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED),
            )
        return None


def authorize(user: UserInfo, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    """Whether `user` may `verb` the resource; a later RBAC issue widens this."""
    return MASTERS in user.groups
