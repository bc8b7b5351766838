"""Error answers as JSON with the security headers, wherever they are made: app, Starlette or uvicorn.

The app's own errors are ``{"error": "..."}`` (``sse_batcher.server._http.error``) and pass through
:class:`~sse_batcher.server.security.middleware.SecurityHeadersMiddleware`. Two kinds of answer
never reach that middleware in the shape a client expects, so they are made here:

- Starlette's own 404, 405 and 500 (plain text by default): :func:`http_exception` and
  :func:`server_error` are the app's exception handlers. Starlette answers a 500 from its outermost
  layer, outside every middleware, so :func:`server_error` adds the security headers itself.
- Answers uvicorn writes before any app runs (400 on a malformed request, and the connection
  limits' 408 and 431 of :mod:`sse_batcher.server.serving.protocol`): :func:`raw_error` renders the
  whole HTTP/1.1 response as bytes.
"""

from __future__ import annotations

import http
from collections.abc import Iterable
from typing import Final

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.server.security.middleware import SECURITY_HEADERS

__all__ = ["error_body", "http_exception", "raw_error", "server_error"]

_JSON: Final = "application/json"


def error_body(message: str) -> bytes:
    """``{"error": message}`` as JSON bytes."""
    return msgspec.json.encode({"error": message})


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's HTTPException (404, 405, ...) as ``{"error": ...}``, keeping its headers (``Allow``)."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException only
        raise exc
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return Response(error_body(exc.detail), exc.status_code, headers, media_type=_JSON)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unhandled exception: 500 ``{"error": "internal server error"}`` with the security headers.

    Starlette runs this handler outside every middleware, so the headers are added here.
    """
    return Response(error_body("internal server error"), 500, dict(SECURITY_HEADERS), media_type=_JSON)


def raw_error(status: int, message: str, default_headers: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 error response, JSON with the security headers and ``Connection: close``.

    For answers written straight to the socket, before any app runs.
    """
    body = error_body(message)
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [f"{name}: {value}".encode() for name, value in SECURITY_HEADERS]
    lines += [
        b"content-type: application/json",
        b"content-length: %d" % len(body),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
