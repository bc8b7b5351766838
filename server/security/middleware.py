"""The response headers every answer carries, and CORS: pure ASGI middlewares the app wraps itself in.

Kept apart from the :class:`~sse_batcher.server.security.guard.Guard` because they hold no
credential and ask nothing of a request: they only add headers to the start message, so a streamed
body (the SSE stream) passes through unbuffered.

- :class:`SecurityHeadersMiddleware` adds a Content-Security-Policy (scripts and styles only from this
  origin, no inline code, no eval, fetches only to this origin, never framed), ``nosniff``, a
  no-referrer policy and ``X-Frame-Options`` to every response.
- :class:`CORSMiddleware` is off unless origins are listed (``SSE_CORS_ORIGINS``). A listed origin is
  echoed, with credentials allowed; ``*`` lets any origin read, without credentials; any other origin
  gets no ``Access-Control-*`` header at all. Written here rather than taken from Starlette because
  Starlette's adds ``Allow-Credentials`` and ``Expose-Headers`` to every answer, foreign origins
  included, and leaves out ``Vary: Origin`` for them (a shared cache could then serve one origin's
  answer to another).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "SECURITY_HEADERS",
    "CORSMiddleware",
    "SecurityHeadersMiddleware",
    "add_security_headers",
]

# uPlot sets element styles through the CSSOM (el.style.x = ...), which style-src 'self' allows; the
# dashboard has no inline <script>, <style> or style= attribute. The favicon is a data: URL.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_CORS_METHODS: Final = frozenset({"GET", "POST"})


def add_security_headers(response: Response) -> Response:
    """Add the security headers to a response answered outside :class:`SecurityHeadersMiddleware`.

    The response's own headers win, as in the middleware.
    """
    present = {name for name, _ in response.raw_headers}
    for name, value in SECURITY_HEADERS:
        key = name.lower().encode("latin-1")
        if key not in present:
            response.raw_headers.append((key, value.encode("latin-1")))
    return response


# What a browser client sends: a bearer token, a JSON body, and the resume point when it reconnects.
_CORS_HEADERS: Final = ("Authorization", "Content-Type", "Last-Event-ID")
_CORS_MAX_AGE_SECONDS: Final = 600


class SecurityHeadersMiddleware:
    """Adds :data:`CONTENT_SECURITY_POLICY`, ``nosniff``, ``no-referrer`` and ``DENY`` framing to every answer.

    A header the endpoint set itself is left as it is.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CORSMiddleware:
    """Cross-origin access for the listed ``origins`` only (``*``: any origin, without credentials)."""

    def __init__(self, app: ASGIApp, origins: Collection[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origin for origin in origins if origin != "*")

    def allowed(self, origin: str) -> dict[str, str]:
        """The ``Access-Control-Allow-*`` headers for a request from ``origin``; empty when it is foreign."""
        if origin in self.origins:
            # Echoed, never "*": browsers refuse "*" together with credentials.
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
        if self.any_origin:
            return {"Access-Control-Allow-Origin": "*"}
        return {}

    def response_headers(self, origin: str | None) -> dict[str, str]:
        """The ``Access-Control-*`` headers of an answer (not a preflight) to a request from ``origin``."""
        allow = self.allowed(origin) if origin is not None else {}
        if allow:
            allow["Access-Control-Expose-Headers"] = "Retry-After"
        return allow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in request_headers:
            await self._preflight(origin, request_headers)(scope, receive, send)
            return
        allow = self.response_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # The answer depends on Origin even when it grants nothing.
                headers.add_vary_header("Origin")
                headers.update(allow)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, origin: str, request_headers: Headers) -> Response:
        allow = self.allowed(origin)
        method = request_headers["access-control-request-method"].strip().upper()
        asked = {h.strip().lower() for h in request_headers.get("access-control-request-headers", "").split(",")}
        asked.discard("")
        if not allow or method not in _CORS_METHODS or not asked <= {h.lower() for h in _CORS_HEADERS}:
            return Response("CORS preflight refused", 403, {"Vary": "Origin"}, media_type="text/plain")
        headers = {
            **allow,
            "Access-Control-Allow-Methods": ", ".join(sorted(_CORS_METHODS)),
            "Access-Control-Allow-Headers": ", ".join(_CORS_HEADERS),
            "Access-Control-Max-Age": str(_CORS_MAX_AGE_SECONDS),
            "Vary": "Origin",
        }
        return Response(status_code=204, headers=headers)
