"""The :class:`Guard` the endpoints ask: may this request publish, subscribe, open another stream?

It holds one app's token sets and stream-token signer (:mod:`.tokens`), and its publish rate limiter
and per-address stream counter (:mod:`.ratelimit`); the lifespan keeps it on ``app.state.guard``.
It answers, and the endpoint turns a refusal into a 401, 403 or 429; only :meth:`Guard.charge`
hands back its 429 (or 413) itself, with the ``Retry-After`` that only it knows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from sse_batcher.server._http import bearer_token, error
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.security.ratelimit import ConnectionCounter, RateLimiter, stream_lifetime
from sse_batcher.server.security.tokens import (
    STREAM_TOKEN_PREFIX,
    InvalidStreamToken,
    StreamGrant,
    StreamTokens,
    TokenSet,
)

__all__ = ["Guard", "NotAllowed", "client_address", "guard_of"]

# Stands for a refused credential where a grant is expected: it allows nothing.
_NOTHING = StreamGrant(expires_at=0.0, types=frozenset(), sources=frozenset())


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

    def reads_everything(self, request: Request) -> bool:
        """Whether the request may read every event: the test for showing event data elsewhere.

        True when subscribing is open and no filtered stream token is presented, or when the bearer
        (or ``?token=``) is a subscribe token, a publish token (its holder can mint any stream token),
        or a stream token without filters. An invalid credential is False, never an error.
        """
        try:
            grant = self.subscriber(request)
        except InvalidStreamToken:
            grant = _NOTHING
        if grant is None:
            return True
        if grant.types is None and grant.sources is None:
            return True
        token = bearer_token(request)
        return token is not None and self.publish_tokens.required and self.publish_tokens.matches(token)

    def still_subscribed(self, request: Request) -> Callable[[], bool] | None:
        """For a stream opened with a subscribe token: a check that the token is still accepted.

        None when there is nothing to revoke (subscribing is open, or the credential is a stream
        token, which ends at its expiry). The check is cheap enough for every chunk of a stream: it
        compares tokens again only when the tokens file's set has changed.
        """
        tokens = self.subscribe_tokens
        if tokens.file is None:
            return None
        presented = [t for t in (bearer_token(request), request.query_params.get("token")) if t]
        if any(t.startswith(STREAM_TOKEN_PREFIX) for t in presented):
            return None
        seen = tokens.generation()
        allowed = True

        def still_allowed() -> bool:
            nonlocal seen, allowed
            now = tokens.generation()
            if now != seen:
                seen = now
                allowed = any([tokens.matches(t) for t in presented])
            return allowed

        return still_allowed

    @staticmethod
    def narrow(
        grant: StreamGrant | None, types: frozenset[str] | None, sources: frozenset[str] | None
    ) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """The filters to stream with: the request's, within the grant's (a request narrows, never widens).

        Raises:
            NotAllowed: the request asks for a type or source the grant leaves out, or the grant
                allows none (an empty filter).
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
    if not granted:
        # An empty filter matches nothing; letting it through would read as no filter at all.
        raise NotAllowed(field, f"the stream token allows no {field}: an empty filter matches nothing")
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
        raise RuntimeError("sse-batcher's lifespan has not run (see docs/guide.md on mounting)")
    return guard
