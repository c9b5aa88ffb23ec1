"""Authentication (who is asking) and authorization (may they).

Bearer tokens only, over TLS: the admin token written to the data directory, and
signed tokens (HS256 JWTs with the server's signing key) for service accounts,
as `kubectl create token` issues them. Users in the group system:masters may do
everything; the rest is refused until RBAC comes (a later issue).
"""

from __future__ import annotations

import base64
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


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


class Authenticator:
    def __init__(self, *, admin_token: str, signer: TokenSigner) -> None:
        self._admin_token = admin_token.encode()
        self._signer = signer

    def authenticate(self, authorization: str | None) -> UserInfo | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        token = authorization[7:].strip()
        if hmac.compare_digest(token.encode(), self._admin_token):
            return ADMIN
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
