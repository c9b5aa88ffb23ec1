"""Request bodies in, responses out: JSON, YAML and protobuf bodies; JSON responses,
Tables when kubectl asks for them, and `Status` for every error."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import yaml
from aiohttp import web

from kubelite.api import errors

MAX_BODY = 3 * 1024 * 1024
JSON = "application/json"
_TABLE_MARK = "as=Table"


async def read_body(request: web.Request) -> bytes:
    """The raw body, refused with 413 past 3 MiB (the apiserver's limit) before it
    is read whole."""
    length = request.content_length
    if length is not None:
        if length > MAX_BODY:
            raise errors.too_large()
        # One read, not a loop of chunks: most bodies come with their length.
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise errors.bad_request("the request body ended early") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: web.Request) -> str:
    return (request.headers.get("Content-Type") or JSON).split(";")[0].strip().lower()


def decode_body(content_type: str, body: bytes) -> Any:
    if not body.strip():
        raise errors.bad_request("the request body is empty")
    if content_type == "application/vnd.kubernetes.protobuf":
        from kubelite.server.protobuf import decode

        return decode(body)
    if content_type.endswith("yaml"):
        if body.lstrip()[:1] == b"{":
            # JSON is YAML, and clients (kubectl apply --server-side among them)
            # mostly send JSON as application/apply-patch+yaml: parse it in C.
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(body)
        try:
            docs = [d for d in yaml.safe_load_all(body) if d is not None]
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error converting YAML to JSON: {exc}") from None
        if len(docs) != 1:
            raise errors.bad_request("the request body must hold exactly one YAML document")
        return _json_safe(docs[0])
    if content_type.endswith("json") or content_type == "text/plain":
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise errors.bad_request(
                f"couldn't get version/kind; json parse error: {exc}"
            ) from None
    raise errors.unsupported_media_type(content_type)


def _json_safe(value: Any) -> Any:
    """YAML may produce dates and non-string keys; JSON has neither."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text.replace("+00:00", "Z")
    return str(value)


def decode_object(content_type: str, body: bytes) -> dict[str, Any]:
    obj = decode_body(content_type, body)
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")
    meta = obj.get("metadata")
    if meta is None:
        obj["metadata"] = {}
    elif not isinstance(meta, dict):
        raise errors.bad_request("metadata: must be an object")
    return obj


def wants_table(request: web.Request) -> bool:
    return _TABLE_MARK in request.headers.get("Accept", "")


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON,
                        headers=headers)


def raw_json(data: bytes, *, content_type: str = JSON, status: int = 200,
             vary: str | None = None) -> web.Response:
    headers = {"Content-Type": content_type}
    if vary:
        headers["Vary"] = vary
    return web.Response(body=data, status=status, headers=headers)


def error_response(err: errors.APIError) -> web.Response:
    return json_response(err.status(), status=err.code)


def success_status(details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Success"}
    if details:
        body["details"] = details
    return body
