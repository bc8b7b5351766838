"""What a public endpoint needs: response headers, CORS, and the :class:`Guard` the endpoints ask.

- :class:`SecurityHeadersMiddleware` adds a Content-Security-Policy (scripts and styles only from this
  origin, no inline code, no eval, fetches only to this origin, never framed), ``nosniff``, a
  no-referrer policy and ``X-Frame-Options`` to every response. It touches only the start message's
  headers, so a streamed body (the SSE stream) passes through unbuffered.
- :class:`CORSMiddleware` is off unless origins are listed (``SSE_CORS_ORIGINS``). A listed origin is
  echoed, with credentials allowed; ``*`` lets any origin read, without credentials; any other origin
  gets no ``Access-Control-*`` header at all. Written here rather than taken from Starlette because
  Starlette's adds ``Allow-Credentials`` and ``Expose-Headers`` to every answer, foreign origins
  included, and leaves out ``Vary: Origin`` for them (a shared cache could then serve one origin's
  answer to another).
- :class:`Guard` holds the token sets, the stream-token signer, the publish rate limiter and the
  per-address stream counter of one app; the lifespan keeps it on ``app.state.guard``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection
from typing import Any, Final

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sse_batcher.batcher import EventValidationError
from sse_batcher.batcher.events import check_source, check_type
from sse_batcher.server._http import (
    BodyError,
    bearer_token,
    check_json_content_type,
    decode_json,
    error,
    json_response,
    read_body,
)
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.security.ratelimit import ConnectionCounter, RateLimiter, stream_lifetime
from sse_batcher.server.security.tokens import (
    STREAM_TOKEN_PREFIX,
    InvalidStreamToken,
    StreamGrant,
    StreamTokens,
    TokenSet,
)

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "CORSMiddleware",
    "Guard",
    "NotAllowed",
    "SecurityHeadersMiddleware",
    "client_address",
    "guard_of",
    "issue_stream_token",
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
_SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_CORS_METHODS: Final = frozenset({"GET", "POST"})
# What a browser client sends: a bearer token, a JSON body, and the resume point when it reconnects.
_CORS_HEADERS: Final = ("Authorization", "Content-Type", "Last-Event-ID")
_CORS_MAX_AGE_SECONDS: Final = 600
_MAX_TOKEN_REQUEST_BYTES: Final = 16 * 1024
_DEFAULT_STREAM_TOKEN_SECONDS: Final = 300.0


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
                for name, value in _SECURITY_HEADERS:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        if scope["method"] == "OPTIONS" and origin is not None and "access-control-request-method" in request_headers:
            await self._preflight(origin, request_headers)(scope, receive, send)
            return
        allow = self.allowed(origin) if origin is not None else {}
        if allow:
            allow["Access-Control-Expose-Headers"] = "Retry-After"

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


class NotAllowed(Exception):
    """A request asks for more than its credential allows (403); ``field`` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def client_address(request: HTTPConnection) -> str:
    """The peer's address (behind a proxy, run uvicorn with ``--proxy-headers`` to see the client's)."""
    return request.client.host if request.client is not None else "unknown"


class Guard:
    """The credentials and limits of one app, built from its config.

    Raises:
        ConfigError: a tokens file cannot be read at start.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.publish_tokens = TokenSet("publish", config.publish_token, config.publish_tokens_file)
        self.subscribe_tokens = TokenSet("subscribe", config.subscribe_token, config.subscribe_tokens_file)
        self.stream_tokens = StreamTokens(config.stream_token_secret)
        self.publish_limiter = (
            RateLimiter(config.publish_rate_limit, config.publish_burst) if config.publish_rate_limit > 0 else None
        )
        self.streams = ConnectionCounter(config.max_clients_per_ip)

    # -- publishing --------------------------------------------------------------------------
    def publisher(self, request: Request) -> str | None:
        """The rate-limit key of an authorised publisher (its token, else its address); None: 401."""
        if not self.publish_tokens.required:
            return "address:" + client_address(request)
        token = bearer_token(request)
        if token is None or not self.publish_tokens.matches(token):
            return None
        # Keyed by a digest, so the limiter's table holds no usable token.
        return "token:" + hashlib.sha256(token.encode()).hexdigest()

    def charge(self, key: str, events: int) -> Response | None:
        """Charge ``events`` to ``key``'s bucket: None when granted, else the 429 (or 413) to answer."""
        if self.publish_limiter is None:
            return None
        wait = self.publish_limiter.take(key, events)
        if wait == 0:
            return None
        if math.isinf(wait):
            return error(
                413, f"{events} events exceed the publish burst of {self.publish_limiter.burst}; send fewer per request"
            )
        retry_after = max(1, math.ceil(wait))
        return error(429, "the publish rate limit is exceeded", {"Retry-After": str(retry_after)},
                     retry_after_seconds=retry_after)  # fmt: skip

    def refund(self, key: str, events: int) -> None:
        """Give back what :meth:`charge` took for a request refused afterwards (nothing was stored)."""
        if self.publish_limiter is not None:
            self.publish_limiter.give_back(key, events)

    # -- subscribing -------------------------------------------------------------------------
    def subscriber(self, request: Request) -> StreamGrant | None:
        """The grant of a stream token, or None for a subscribe token or an open endpoint.

        Raises:
            InvalidStreamToken: no valid credential (401).
        """
        presented = [t for t in (bearer_token(request), request.query_params.get("token")) if t]
        for token in presented:
            # A stream token is checked even where subscribing is open: its filters still bind.
            if token.startswith(STREAM_TOKEN_PREFIX):
                return self.stream_tokens.verify(token)
        if not self.subscribe_tokens.required:
            return None
        # Both are compared, so the timing does not say which one was presented.
        valid = [self.subscribe_tokens.matches(token) for token in presented]
        if not any(valid):
            raise InvalidStreamToken("a valid subscribe token is required")
        return None

    @staticmethod
    def narrow(
        grant: StreamGrant | None, types: frozenset[str] | None, sources: frozenset[str] | None
    ) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """The filters to stream with: the request's, within the grant's (a request narrows, never widens).

        Raises:
            NotAllowed: the request asks for a type or source the grant leaves out.
        """
        if grant is None:
            return types, sources
        return _within("types", types, grant.types), _within("source", sources, grant.sources)

    def stream_slot(self, request: Request) -> Callable[[], None] | None:
        """A slot among the client address's streams: its release function, or None when all are taken."""
        return self.streams.acquire(client_address(request))

    def stream_lifetime(self, grant: StreamGrant | None) -> float | None:
        """How long a new stream may run: the lifetime cap with jitter, and never past its token's expiry."""
        return stream_lifetime(self.config.max_stream_seconds, grant.expires_at if grant is not None else None)


def _within(field: str, asked: frozenset[str] | None, granted: frozenset[str] | None) -> frozenset[str] | None:
    if granted is None:
        return asked
    if asked is None:
        return granted
    if not asked <= granted:
        extra = ", ".join(sorted(asked - granted))
        raise NotAllowed(field, f"the stream token does not allow {field} {extra}")
    return asked


def guard_of(request: HTTPConnection) -> Guard:
    """The guard the app's lifespan made.

    Raises:
        RuntimeError: the lifespan never ran.
    """
    guard: Guard | None = getattr(request.app.state, "guard", None)
    if guard is None:
        raise RuntimeError("sse-batcher's lifespan has not run (see the README on mounting)")
    return guard


def _names(body: dict[str, Any], field: str, check: Callable[[object], str]) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise NotAllowed(field, f"{field} must be a name or a non-empty list of names")
    try:
        return [check(name) for name in values]
    except EventValidationError as exc:
        raise NotAllowed(field, f"{field}: {exc}") from None


async def issue_stream_token(request: Request) -> Response:
    """POST /api/stream-token ``{"ttl_seconds"?, "types"?, "source"?}``: 200 ``{"token", "expires_at"}``.

    Authorised by a publish token: whoever may publish is trusted to hand out read access, and
    with no publish token configured nobody is (a stream token would open a closed stream).
    """
    guard = guard_of(request)
    if not guard.publish_tokens.required:
        return error(403, "stream tokens are issued only with a publish token configured (SSE_PUBLISH_TOKEN)")
    if guard.publisher(request) is None:
        return error(401, "a valid publish token is required", {"WWW-Authenticate": "Bearer"})
    try:
        raw = await read_body(request, _MAX_TOKEN_REQUEST_BYTES)
        if raw.strip():
            check_json_content_type(request)
        body = decode_json(raw) if raw.strip() else {}
    except BodyError as exc:
        return error(exc.status, str(exc))
    if not isinstance(body, dict):
        return error(422, "the body must be a JSON object", field="body")
    longest = guard.config.stream_token_max_seconds
    ttl = body.get("ttl_seconds", min(_DEFAULT_STREAM_TOKEN_SECONDS, longest))
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= longest:
        return error(422, f"ttl_seconds must be a number above 0 and at most {longest:g}", field="ttl_seconds")
    try:
        types = _names(body, "types", check_type)
        sources = _names(body, "source", check_source)
    except NotAllowed as exc:
        return error(422, str(exc), field=exc.field)
    token, expires_at = guard.stream_tokens.issue(ttl, types, sources)
    return json_response({"token": token, "expires_at": expires_at}, headers={"Cache-Control": "no-store"})
