"""Answering, at shutdown, the requests still waiting on the database: a 503, not uvicorn's 500.

uvicorn gives open responses ``timeout_graceful_shutdown`` after the drain, then cancels them, and a
request cancelled before its response began is logged as ``Exception in ASGI application`` and
answered 500. A handler waiting on an unreachable PostgreSQL (a stream's resume lookup, an
idempotency key lookup, ``/api/stats``) can outlast that grace. :class:`DrainCutoff` answers such a
request itself a moment after the drain ends: it cancels the handler and sends 503 ``{"error"}``
with ``Retry-After``, as for any request refused during a shutdown.

A 503 says "nothing was done", and that holds: no handler changes state for good while it waits
before its response. The one wait that follows a change, a publish waiting for its commit, is
answered by the drain itself first (504 with ``kept``, see :meth:`Runtime.drain`). A response
already begun, a stream, is left alone: the hub's close ends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sse_batcher.server import _http
from sse_batcher.server.security.middleware import add_security_headers

__all__ = ["Cut", "DrainCutoff", "cut_at_shutdown", "shutting_down"]


class Cut:
    """A wait before a response that the runtime may cancel at shutdown (:func:`cut_at_shutdown`)."""

    def __init__(self, unanswered: set[anyio.CancelScope] | None) -> None:
        self.scope = anyio.CancelScope()
        self._unanswered = unanswered
        if unanswered is not None:
            unanswered.add(self.scope)

    @property
    def cut(self) -> bool:
        """Whether the runtime cancelled the wait: answer :func:`shutting_down`."""
        return self.scope.cancelled_caught

    def begun(self) -> None:
        """The response has begun: no longer the runtime's to cancel."""
        if self._unanswered is not None:
            self._unanswered.discard(self.scope)


@contextmanager
def cut_at_shutdown(state: State) -> Iterator[Cut]:
    """Run the body under a cancel scope the runtime in ``state`` cancels a moment after its drain
    ends, unless :meth:`Cut.begun` was called first; then :attr:`Cut.cut` says to answer 503."""
    runtime = getattr(state, "runtime", None)
    # None: the database away at start, so no drain will come.
    cut = Cut(None if runtime is None else runtime.unanswered)
    try:
        with cut.scope:
            yield cut
    finally:
        cut.begun()


def shutting_down() -> Response:
    """503 ``{"error"}`` with ``Retry-After`` and the security headers: the request was cut at shutdown."""
    return add_security_headers(_http.shutting_down())


class DrainCutoff:
    """Pure ASGI: run each HTTP request under :func:`cut_at_shutdown` until its response begins.

    ``state`` is the app's. ``GET /events`` is served ahead of this (``events_route.py``), which
    cuts its resume lookup the same way and then writes the stream through the server's own send.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with cut_at_shutdown(self._state) as cut:

            async def answering(message: Message) -> None:
                if message["type"] == "http.response.start":
                    cut.begun()
                await send(message)

            await self.app(scope, receive, answering)
        if cut.cut:
            await shutting_down()(scope, receive, send)
