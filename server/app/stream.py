"""GET /events: the SSE stream, with filters, resume and history-truncation notice.

The response is a lean subclass of sse-starlette's ``EventSourceResponse`` (see
:class:`HubStreamResponse` for what it replaces and why); the hub yields ready-made ``bytes``. Pings
(``: ping`` every ``ping_seconds``) and the send timeout (a peer that accepts nothing for
``client_send_timeout_seconds`` is dropped) are done by the hub's one housekeeping task.

Security hooks, kept apart so they port to any stream implementation: :func:`stream_events` asks
the app's :class:`sse_batcher.server.security.guard.Guard` for the credential (a stream token's filters narrow the
request's), takes a per-address slot that the response's ``finally`` gives back (``on_close``), and
hands the response a lifetime (``expires_after``) after which its body ends cleanly.

The last hop of the data flow: hub -> subscriber queue -> this response -> the socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio
import msgspec
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sse_batcher.batcher import BatcherClosedError, EventValidationError, StoreError
from sse_batcher.batcher.events import check_source, check_type
from sse_batcher.server._http import error
from sse_batcher.server.app.runtime import Runtime, runtime_of
from sse_batcher.server.security.guard import NotAllowed, guard_of
from sse_batcher.server.security.tokens import InvalidStreamToken
from sse_batcher.server.stream.hub import HubClosedError, HubFullError
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["HubStreamResponse", "parse_last_event_id", "stream_events"]

logger = logging.getLogger(__name__)

# Ids are PostgreSQL bigints.
_MAX_ID = 2**63 - 1


class BadStreamRequest(ValueError):
    """A query parameter or header of GET /events is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_last_event_id(value: str) -> int:
    """Return a Last-Event-ID as an int.

    Raises:
        BadStreamRequest: not a non-negative integer that fits a bigint.
    """
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or int(text) > _MAX_ID:
        raise BadStreamRequest("last_event_id", f"Last-Event-ID must be a non-negative integer, got {value!r:.40}")
    return int(text)


def _last_event_id(request: Request) -> int | None:
    # The header wins: a reconnecting EventSource keeps the URL it started with (and so any
    # ?last_event_id= in it) but sends the id it actually got last in the header.
    header = request.headers.get("last-event-id")
    if header:
        return parse_last_event_id(header)
    query = request.query_params.get("last_event_id")
    if query:
        return parse_last_event_id(query)
    return None


def _names(request: Request, param: str, check: Callable[[object], str]) -> frozenset[str] | None:
    values = [value for value in request.query_params.getlist(param) if value]
    if not values:
        return None
    names: set[str] = set()
    for value in values:
        for name in value.split(","):
            try:
                names.add(check(name.strip()))
            except EventValidationError as exc:
                raise BadStreamRequest(param, f"{param}: {str(exc).split(': ', 1)[-1]}") from None
    return frozenset(names)


def _truncated(first_available_id: int | None, last_event_id: int) -> bytes:
    data = msgspec.json.encode(
        {"type": "HISTORY_TRUNCATED", "first_available_id": first_available_id, "last_event_id": last_event_id}
    )
    return b"event: HISTORY_TRUNCATED\ndata: %s\n\n" % data


async def _resume_point(runtime: Runtime, last_event_id: int | None) -> tuple[bytes, int | None]:
    """Return what to send before any message, and the id to replay after (None: live only).

    Raises:
        StoreError: the store could not say what it holds.
    """
    if last_event_id is None:
        return b"", None
    first, last = await runtime.store.bounds()
    if last is None or last_event_id > last:
        if last is None and last_event_id == 0:
            return b"", 0  # nothing stored, nothing missed
        # The id is newer than anything stored: the database was reset (or retention emptied it).
        # Start live, from the newest stored message, after saying so.
        return _truncated(first, last_event_id), last or 0
    if first is not None and first > last_event_id + 1:
        return _truncated(first, last_event_id), last_event_id
    return b"", last_event_id


class HubStreamResponse(EventSourceResponse):
    """An SSE response fed by the hub, lean enough for thousands of idle streams.

    sse-starlette stays the SSE layer (headers, HEAD handling, its ServerSentEvent encoding), but its
    per-connection machinery is replaced, because at 1,000+ streams it is the cost (issue 10): its
    ``__call__`` runs a task group of four tasks per stream (the body, a pinger, a disconnect
    listener and an exit watcher) and enters a cancel scope around every single send. Here a stream
    is the ASGI task plus one task that waits for ``http.disconnect``, and one cancel scope for its
    whole life (no task group: measured, its bookkeeping was an eighth of an idle stream's memory).
    Pings and send timeouts are the hub's job, done by one task for every stream
    (:meth:`sse_batcher.server.stream.hub.Hub.run`): an idle stream costs no CPU between pings, and a peer that accepts
    nothing for ``client_send_timeout_seconds`` has its scope cancelled. Server exit needs no
    watcher either: the runtime's drain closes the hub, and every stream ends after writing what it
    has queued. ``expires_after`` (SSE_MAX_STREAM_SECONDS, a stream token's expiry) ends the stream
    cleanly, with the final empty chunk, so the client resumes by Last-Event-ID.
    """

    def __init__(
        self,
        runtime: Runtime,
        client: Subscriber,
        prelude: bytes,
        after_id: int | None,
        *,
        expires_after: float | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._hub = runtime.hub
        self._client = client
        self._expires_after = expires_after
        # Security hook: ``on_close`` runs however the response ends (a per-address slot).
        self._on_close = on_close
        self._body = runtime.hub.follow(client, after_id, prelude)
        self._disconnected = False
        super().__init__(
            self._body,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            ping=0,
            sep="\n",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] != "http" or scope["method"].upper() == "HEAD":
                await super().__call__(scope, receive, send)  # headers only, no stream
                return
            await self._stream(receive, send)
        except (StoreError, BatcherClosedError) as exc:
            # A replay could not read the store: end the stream; the client resumes from its last id.
            logger.warning("ended a stream whose replay failed: %s", exc)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
            self._hub.release(self._client)
            if self._on_close is not None:
                self._on_close()

    async def _stream(self, receive: Receive, send: Send) -> None:
        client = self._client
        clock = time.monotonic
        # One cancel scope and one watcher task, not an anyio task group: the task group's own
        # bookkeeping was 3-4 KB of the 25-26 KB an idle stream cost (bench.idle_memory, issue 10).
        # The watcher is still bound to this stream: cancelled and awaited before it returns.
        with anyio.CancelScope() as scope:
            client.scope = scope
            if self._expires_after is not None:
                scope.deadline = anyio.current_time() + self._expires_after
            watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(receive, scope))
            try:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                client.last_write = clock()
                async for chunk in self._body:
                    client.sending_since = clock()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    client.last_write = clock()
                    client.sending_since = None
            finally:
                watcher.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([watcher])
                if not watcher.cancelled() and watcher.exception() is not None:
                    logger.warning("a stream's disconnect watcher failed: %r", watcher.exception())
        if client.timed_out:
            # A frozen or dead peer: returning ends the response; uvicorn closes the socket.
            logger.info("closed a stream that accepted nothing for the send timeout")
            return
        if not self._disconnected:
            with anyio.move_on_after(1.0, shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._disconnected = True
                scope.cancel()
                return


async def stream_events(request: Request) -> Response:
    """GET /events: 200 text/event-stream, or a JSON error (400, 401, 403, 429, 503)."""
    runtime = runtime_of(request)
    guard = guard_of(request)
    try:
        grant = guard.subscriber(request)
    except InvalidStreamToken as exc:
        return error(401, str(exc), {"WWW-Authenticate": "Bearer"})
    try:
        types = _names(request, "types", check_type)
        sources = _names(request, "source", check_source)
        last_event_id = _last_event_id(request)
    except BadStreamRequest as exc:
        return error(400, str(exc), field=exc.field)
    try:
        types, sources = guard.narrow(grant, types, sources)
    except NotAllowed as exc:
        return error(403, str(exc), field=exc.field)
    if not runtime.accepting:
        return error(503, "the server is shutting down", {"Retry-After": "1"})
    release_slot = guard.stream_slot(request)
    if release_slot is None:
        return error(429, "too many open streams from this address", {"Retry-After": "5"})
    try:
        lifetime = guard.stream_lifetime(grant)
        response = await _open_stream(runtime, types, sources, last_event_id, lifetime, release_slot)
    except BaseException:
        release_slot()
        raise
    if not isinstance(response, HubStreamResponse):
        release_slot()  # refused: no stream holds the slot
    return response


async def _open_stream(
    runtime: Runtime,
    types: frozenset[str] | None,
    sources: frozenset[str] | None,
    last_event_id: int | None,
    expires_after: float | None,
    on_close: Callable[[], None],
) -> Response:
    config = runtime.config
    try:
        client = runtime.hub.open(types, sources)
    except HubFullError as exc:
        return error(503, str(exc), {"Retry-After": "5"})
    except HubClosedError as exc:
        return error(503, str(exc), {"Retry-After": "1"})
    try:
        extra, after_id = await _resume_point(runtime, last_event_id)
    except StoreError as exc:
        runtime.hub.release(client)
        return error(503, f"the store is unavailable: {exc}", {"Retry-After": "1"})
    except BaseException:
        runtime.hub.release(client)
        raise
    # retry: is a hint the browser keeps: sent once, first.
    prelude = b"retry: %d\n\n" % config.retry_milliseconds + extra
    return HubStreamResponse(runtime, client, prelude, after_id, expires_after=expires_after, on_close=on_close)
