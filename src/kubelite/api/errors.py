"""API errors, each rendered as the Kubernetes `Status` object a client expects.

    APIError (code, reason, message, details)
    ├── 400 BadRequest        malformed body, bad query, strict decoding errors
    ├── 401 Unauthorized / 403 Forbidden
    ├── 404 NotFound          object, resource or namespace missing
    ├── 405 MethodNotAllowed
    ├── 409 AlreadyExists / Conflict
    ├── 410 Expired           watch or continue past compaction
    ├── 413 RequestEntityTooLarge
    ├── 415 UnsupportedMediaType
    ├── 422 Invalid           with details.causes carrying field paths
    └── 500 InternalError     a bug: logged, never a crash

Handlers raise these; the server turns them into responses at one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Cause reasons as Kubernetes spells them (apimachinery field.ErrorType).
FIELD_REQUIRED = "FieldValueRequired"
FIELD_INVALID = "FieldValueInvalid"
FIELD_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_DUPLICATE = "FieldValueDuplicate"
FIELD_FORBIDDEN = "FieldValueForbidden"
FIELD_TOO_LONG = "FieldValueTooLong"
FIELD_UNKNOWN = "FieldValueTypeInvalid"


@dataclass(frozen=True, slots=True)
class Cause:
    """One field error: `field` is a path like spec.template.spec.containers[0].image."""

    reason: str
    message: str
    field: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def render(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class APIError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(group: str, kind: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> APIError:
    return APIError(403, "Forbidden", message)


def not_found(group: str, plural: str, name: str) -> APIError:
    gr = f"{plural}.{group}" if group else plural
    return APIError(404, "NotFound", f'{gr} "{name}" not found', _details(group, plural, name))


def resource_not_found(message: str = "the server could not find the requested resource") -> APIError:
    return APIError(404, "NotFound", message, {})


def method_not_allowed(message: str) -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def already_exists(group: str, plural: str, name: str) -> APIError:
    gr = f"{plural}.{group}" if group else plural
    return APIError(
        409, "AlreadyExists", f'{gr} "{name}" already exists', _details(group, plural, name)
    )


def conflict(group: str, plural: str, name: str, why: str) -> APIError:
    gr = f"{plural}.{group}" if group else plural
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {gr} "{name}": {why}',
        _details(group, plural, name),
    )


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large(message: str = "Request entity too large: limit is 3145728") -> APIError:
    return APIError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got "{content_type}")')


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> APIError:
    qualified = f"{kind}.{group}" if group else kind
    if len(causes) == 1:
        summary = causes[0].render()
    else:
        summary = "[" + ", ".join(c.render() for c in causes) + "]"
    details = _details(group, kind, name)
    details["causes"] = [c.to_dict() for c in causes]
    return APIError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}', details)


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")
