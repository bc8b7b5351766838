"""The SSE response of one stream: the hub's bytes written to the socket, lean enough for thousands.

Kept with the hub rather than with the endpoint because it needs only the hub and its subscriber:
the endpoint (``sse_batcher.server.app.stream``) decides whether a stream may open and from where,
then hands over to this response.

Where it departs from sse-starlette's ``EventSourceResponse``, on purpose:

- sse-starlette stays the SSE layer (headers, HEAD handling, its ServerSentEvent encoding), but its
  ``__call__`` runs a task group of four tasks per stream (the body, a pinger, a disconnect
  listener and an exit watcher) and enters a cancel scope around every single send. Here a stream
  is the ASGI task plus one task that waits for ``http.disconnect``, and one cancel scope for its
  whole life, not a task group, whose own bookkeeping is a sizeable share of an idle stream's
  memory (bench/RESULTS.md, "Idle streams").
- Pings and send timeouts are the hub's job, done by one task for every stream
  (:mod:`.keepalive`): an idle stream costs no CPU between pings, and a peer that accepts nothing
  for the send timeout has its scope cancelled.
- Server exit needs no watcher either: the runtime's drain closes the hub, and every stream ends
  after writing what it has queued.
- ``expires_after`` (SSE_MAX_STREAM_SECONDS, a stream token's expiry) ends the stream cleanly, with
  the final empty chunk, so the client resumes by Last-Event-ID.
- ``still_allowed`` is asked before each chunk (an event, or the hub's keep-alive ping): once it
  says no (its subscribe token was revoked), the stream ends the same clean way, before that chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send

from sse_batcher.batcher import BatcherClosedError, StoreError
from sse_batcher.server.stream.hub import Hub
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["HubStreamResponse"]

logger = logging.getLogger(__name__)


class HubStreamResponse(EventSourceResponse):
    """An SSE response fed by the hub: ``prelude``, stored messages after ``after_id``, then live.

    ``on_close`` runs however the response ends (the endpoint gives back a per-address slot there);
    ``still_allowed`` is asked before each chunk, and the stream ends once it answers False.
    """

    def __init__(
        self,
        hub: Hub,
        client: Subscriber,
        prelude: bytes,
        after_id: int | None,
        *,
        expires_after: float | None = None,
        on_close: Callable[[], None] | None = None,
        still_allowed: Callable[[], bool] | None = None,
    ) -> None:
        self._hub = hub
        self._still_allowed = still_allowed
        self._client = client
        self._expires_after = expires_after
        self._on_close = on_close
        self._body = hub.follow(client, after_id, prelude)
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
        # One cancel scope and one watcher task, not an anyio task group (see the module docstring).
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
                    if self._still_allowed is not None and not self._still_allowed():
                        logger.info("ended a stream whose credential was revoked")
                        break
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
