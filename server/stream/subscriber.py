"""Subscriber: one SSE connection's place in the fan-out; the one bounded subscriber that lags and catches up.

Vocabulary (the same everywhere): a subscriber is *live* while the hub hands it frames; it is
*lagged* when its queue would overflow, and leaves live fan-out at once (the hub never waits for
it); its stream then catches up from PostgreSQL from ``last_id``, the last id it was given, and
rejoins. ``closing`` asks the stream to end once it has written what is queued.

What the hub hands over is a :class:`~sse_batcher.server.stream.frame.Frame`: the SSE bytes of one
or more consecutive messages, shared by every subscriber with the same filters.
"""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

from sse_batcher.batcher import StoredMessage
from sse_batcher.server.stream.frame import Frame

__all__ = ["Subscriber"]


class Subscriber:
    """Filters, a bounded queue of frames, and the cursor of one stream.

    Owned by the hub (which pushes) and one stream task (which takes); both run on the event loop.
    ``limit`` counts messages, not frames.
    """

    __slots__ = (
        "types",
        "sources",
        "_queue",
        "_queued",
        "_limit",
        "_waiter",
        "lagged",
        "closing",
        "last_id",
        "last_write",
        "sending_since",
        "scope",
        "timed_out",
    )

    def __init__(self, types: frozenset[str] | None, sources: frozenset[str] | None, limit: int) -> None:
        self.types = types
        self.sources = sources
        self._queue: deque[Frame | bytes] = deque()
        self._queued = 0
        self._limit = limit
        # A bare future, not an anyio.Event: the hub wakes every subscriber on every fan-out, and
        # Event.set cost an eighth of the server's time at 1,000 streams (bench/RESULTS.md, "Fan-out").
        self._waiter: asyncio.Future[None] | None = None
        self.lagged = False
        self.closing = False
        # The last id this subscriber was given; until then, where it starts: the resume id, or the
        # id before its first live message (None while it has neither).
        self.last_id: int | None = None
        # Kept by its stream: when it last wrote (for pings) and since when a write is stuck.
        self.last_write = 0.0
        self.sending_since: float | None = None
        # The stream's cancel scope: the hub cancels it when a write is stuck past the send timeout.
        self.scope: anyio.CancelScope | None = None
        self.timed_out = False

    @property
    def filtered(self) -> bool:
        return self.types is not None or self.sources is not None

    @property
    def key(self) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        """Subscribers with the same key get the same frames (one join per key per fan-out)."""
        return self.types, self.sources

    def matches(self, message: StoredMessage) -> bool:
        """Whether ``message`` passes this subscriber's ``?types=`` and ``?source=`` filters."""
        return (self.types is None or message.event_type in self.types) and (
            self.sources is None or message.source in self.sources
        )

    def push(self, frame: Frame) -> bool:
        """Queue ``frame`` and wake the stream; False (and lagged) when it does not fit."""
        if self.last_id is None:
            # A live-only subscriber's resume point is just before its first live message: should it
            # lag before writing anything (its queue may hold only a ping), it catches up from there.
            self.last_id = frame.first_id - 1
        if self._queued + len(frame.ids) > self._limit:
            self.lagged = True
            self._wake()
            return False
        self._queue.append(frame)
        self._queued += len(frame.ids)
        self._wake()
        return True

    def ping(self, data: bytes) -> None:
        """Queue a keep-alive comment (it carries no id and never counts against the limit)."""
        self._queue.append(data)
        self._wake()

    def take(self) -> list[Frame | bytes]:
        """Remove and return everything queued, oldest first."""
        items = list(self._queue)
        self._queue.clear()
        self._queued = 0
        return items

    def close(self) -> None:
        """Ask the stream to end once it has written what is queued."""
        self.closing = True
        self._wake()

    async def wait(self) -> None:
        """Wait until something is queued, the subscriber lagged, or it is closing."""
        if self._queue or self.lagged or self.closing:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
