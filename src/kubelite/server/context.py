"""What every request handler shares, and the parsed target of one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubelite.api import errors
from kubelite.api.registry import Resource
from kubelite.server.auth import Authenticator, TokenSigner, UserInfo
from kubelite.server.objects import Objects
from kubelite.store.base import Store


@dataclass(slots=True)
class ServerContext:
    store: Store
    objects: Objects
    authenticator: Authenticator
    signer: TokenSigner


@dataclass(frozen=True, slots=True)
class Target:
    res: Resource
    namespace: str | None
    name: str | None
    subresource: str = ""


CONTEXT = web.AppKey("context", ServerContext)
USER = web.RequestKey("user", UserInfo)


def ctx(request: web.Request) -> ServerContext:
    return request.app[CONTEXT]


def user_of(request: web.Request) -> UserInfo:
    return request[USER]


def query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def query_int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {value!r}") from None


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise errors.bad_request(f'unsupported dry run value "{value}"; supported: All')
    return bool(values)


def field_manager(request: web.Request) -> str:
    """The manager name: ?fieldManager, else the user agent's product, as the apiserver."""
    manager = request.query.get("fieldManager")
    if manager:
        if len(manager) > 128:
            raise errors.bad_request("fieldManager: Too long: must have at most 128 bytes")
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0][:128] or "unknown"


def field_validation(request: web.Request) -> str:
    value = request.query.get("fieldValidation", "Warn")
    if value not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation: Invalid value: "{value}": must be one of Ignore, Warn, Strict'
        )
    return value


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["metadata"]
