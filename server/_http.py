"""Small HTTP helpers shared by the endpoints: JSON responses, errors, bearer tokens.

Which tokens are valid is :class:`~sse_batcher.server.security.Guard`'s business (token sets, files, stream tokens).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

__all__ = [
    "BodyError",
    "bearer_token",
    "check_json_content_type",
    "decode_json",
    "error",
    "json_response",
    "publish_token_required",
    "read_body",
    "read_json",
    "shutting_down",
]

_ENCODER: Final = msgspec.json.Encoder()
# A high surrogate escape not followed by a low one: msgspec calls this "Input data was truncated".
_UNPAIRED_HIGH_SURROGATE: Final = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def json_response(body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Encode ``body`` with msgspec (dataclasses, structs and tuples included) as a JSON response."""
    return Response(_ENCODER.encode(body), status_code, headers, media_type="application/json")


def error(status_code: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """Return ``{"error": message, **extra}`` with ``status_code``."""
    return json_response({"error": message, **extra}, status_code, headers)


def publish_token_required() -> Response:
    """401 asking for the publish token (``WWW-Authenticate: Bearer``): every endpoint that publishes says it so."""
    return error(401, "a valid publish token is required", {"WWW-Authenticate": "Bearer"})


def shutting_down() -> Response:
    """503 with ``Retry-After: 1``: the server is draining and accepts nothing new."""
    return error(503, "the server is shutting down", {"Retry-After": "1"})


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    token = given.strip()
    return token if scheme.lower() == "bearer" and token else None


class BodyError(Exception):
    """A request body was refused before decoding; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_json_content_type(request: Request) -> None:
    """Require ``Content-Type: application/json`` (UTF-8, not compressed).

    Raises:
        BodyError: 415 otherwise.
    """
    media, _, params = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "application/json":
        raise BodyError(415, "Content-Type must be application/json")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BodyError(415, "a JSON body must be UTF-8")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BodyError(415, f"Content-Encoding {encoding!r} is not supported")


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it passes ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything; a body sent
    without one (chunked) is counted as it arrives, so a huge upload never sits in memory.

    Raises:
        BodyError: 413 over the limit; 400 when the client went away mid-body.
    """
    declared = request.headers.get("content-length")
    # isdigit() alone also passes "²", which int() refuses; uvicorn refuses it first, not every server.
    if declared is not None and declared.isascii() and declared.strip().isdigit() and int(declared) > limit:
        raise BodyError(413, f"the body must be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"the body must be at most {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BodyError(400, "the client disconnected before the body was complete") from None
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    """Decode a JSON document (RFC 8259; a duplicated key keeps its last value, as JSON.parse does).

    Raises:
        BodyError: 400 when it is not valid UTF-8 JSON (NaN and Infinity are not JSON).
    """
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        reason = str(exc)
        if reason == "Input data was truncated" and _UNPAIRED_HIGH_SURROGATE.search(body):
            reason = "unpaired surrogate: a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one"
        raise BodyError(400, f"malformed JSON: {reason}") from None


async def read_json(request: Request, limit: int) -> Any:
    """The decoded JSON body: :func:`check_json_content_type`, then :func:`read_body` and :func:`decode_json`.

    Raises:
        BodyError: 415 not JSON, 413 over ``limit`` bytes, 400 malformed or cut short.
    """
    check_json_content_type(request)
    return decode_json(await read_body(request, limit))
