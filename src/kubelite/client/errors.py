"""Errors raised by the API client, each API error carrying the server's decoded `Status`.

    ClientError
    ├── TransportError            connection refused/reset, TLS failure, timeout,
    │                             a body that is not JSON (retryable)
    └── ApiError (status)         a non-2xx answer; .code, .reason, .message, .details
        ├── BadRequest            400
        ├── Unauthorized          401
        ├── Forbidden             403
        ├── NotFound              404
        ├── MethodNotAllowed      405
        ├── AlreadyExists         409, reason AlreadyExists (create of an existing name)
        ├── Conflict              409, any other reason (stale resourceVersion, apply conflicts)
        ├── Gone                  410, reason Expired or Gone (watch/continue too old: relist)
        ├── Invalid               422, details.causes carry field paths
        ├── TooManyRequests       429 (retryable; .retry_after from the header)
        ├── InternalError         500
        └── ServerUnavailable     502, 503, 504 (retryable)

`retryable` says whether the same request may be sent again unchanged after a
pause. The client only does so by itself for idempotent reads; writes are
never retried blindly, because a lost answer may hide a write that happened.
"""

from __future__ import annotations

from typing import Any

import orjson


class ClientError(Exception):
    retryable: bool = False


class TransportError(ClientError):
    """The request did not produce an HTTP answer that could be read."""

    retryable = True


class ApiError(ClientError):
    def __init__(self, status: dict[str, Any], *, retry_after: float | None = None) -> None:
        self.status = status
        self.code: int = int(status.get("code") or 0)
        self.reason: str = str(status.get("reason") or "")
        self.message: str = str(status.get("message") or "")
        self.details: dict[str, Any] = status.get("details") or {}
        self.retry_after = retry_after
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list(self.details.get("causes") or [])


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class MethodNotAllowed(ApiError):
    pass


class Conflict(ApiError):
    pass


class AlreadyExists(Conflict):
    pass


class Gone(ApiError):
    pass


class Invalid(ApiError):
    pass


class TooManyRequests(ApiError):
    retryable = True


class InternalError(ApiError):
    pass


class ServerUnavailable(ApiError):
    retryable = True


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
    500: InternalError,
    502: ServerUnavailable,
    503: ServerUnavailable,
    504: ServerUnavailable,
}

_REASON_FOR_CODE: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def error_from_status(
    status: dict[str, Any], *, http_code: int | None = None, retry_after: float | None = None
) -> ApiError:
    """The ApiError subclass for a decoded Status (the HTTP code wins over an absent one)."""
    code = int(status.get("code") or http_code or 0)
    status = dict(status)
    status["code"] = code
    status.setdefault("reason", _REASON_FOR_CODE.get(code, "Unknown"))
    if code == 409 and status["reason"] == "AlreadyExists":
        cls: type[ApiError] = AlreadyExists
    else:
        cls = _BY_CODE.get(code, ApiError)
        if cls is ApiError and code >= 500:
            cls = InternalError
    return cls(status, retry_after=retry_after)


def status_for_body(http_code: int, body: bytes, content_type: str) -> dict[str, Any]:
    """A Status dict for an error answer whose body may not be a Status (proxies, plain text)."""
    if "json" in content_type:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict) and decoded.get("kind") == "Status":
            return decoded
    text = body.decode("utf-8", "replace").strip()
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": text or f"the server responded with HTTP {http_code}",
        "reason": _REASON_FOR_CODE.get(http_code, "Unknown"),
        "code": http_code,
    }
