"""What one stream writes, in order: its prelude, the stored messages it missed, then live frames.

Kept apart from the hub's fan-out because it runs in each stream's own task, not in the hub's: the
hub pushes frames into queues and never waits; a delivery takes them out, skips what its subscriber
already has, and reads the store whenever the subscriber is behind (a resume, or after it lagged).

No gap, no duplicate: a subscriber joins live fan-out *before* it reads the store, and skips any id
it already has (a frame knows where each of its messages starts, so a resume from the middle of a
frame skips exactly what was sent). Ids only grow, so one comparison suffices.

Replay memory is bounded twice. Per stream, the store pages by bytes (``SSE_REPLAY_PAGE_BYTES``), so
a client that reads slowly pins one page, not a page of hundreds of large aggregates. Across
streams, a page is fetched only with one of ``replay_pages`` permits (``SSE_REPLAY_BUDGET_BYTES``
divided by the page size) and holds it until the stream has written it; beyond that a replay waits,
holding no memory, so a crowd of clients that never read cannot grow the server past the budget. A
stuck client gives its permit back at the send timeout, when its stream is cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing

import anyio

from sse_batcher.batcher import EventStore
from sse_batcher.server.stream.frame import encode_message
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["Delivery"]

# A replay is written in chunks of about this size: big enough to amortise a send, small enough
# that a catching-up subscriber does not hold megabytes of joined bytes at once.
_REPLAY_CHUNK_BYTES = 256 * 1024


class Delivery:
    """Turns each subscriber's queue, and the store when it is behind, into SSE bytes; counts what it sent.

    One per hub: ``rejoin`` puts a lagged subscriber back into the hub's live fan-out; at most
    ``replay_pages`` replay pages are in memory at once across its streams (None: no bound).
    """

    __slots__ = ("_pages", "_rejoin", "_store", "bytes_sent", "messages_sent", "replayed", "writes")

    def __init__(
        self, store: EventStore, rejoin: Callable[[Subscriber], None], replay_pages: int | None = None
    ) -> None:
        self._store = store
        self._rejoin = rejoin
        self._pages = anyio.CapacityLimiter(replay_pages) if replay_pages is not None else None
        self.messages_sent = 0
        self.bytes_sent = 0
        self.replayed = 0
        # Chunks handed to the socket (live and replayed): writes per delivered message is the fan-out's cost.
        self.writes = 0

    async def follow(
        self, subscriber: Subscriber, after_id: int | None, prelude: bytes = b""
    ) -> AsyncGenerator[bytes, None]:
        """Yield ``subscriber``'s SSE bytes: ``prelude``, stored messages after ``after_id`` (None: none), then live.

        Ends when the subscriber is closed (shutdown) and has been given what was queued.

        Raises:
            StoreError: the store failed during a replay (the connection ends; the client resumes).
        """
        if prelude:
            yield prelude
        floor = after_id  # every id <= floor was delivered already
        if after_id is not None:
            subscriber.last_id = after_id
            async with aclosing(self._replay(subscriber, after_id)) as replay:
                async for chunk in replay:
                    yield chunk
            floor = subscriber.last_id
        while True:
            items = subscriber.take()
            if items:
                parts: list[bytes] = []
                count = 0
                for item in items:
                    if isinstance(item, bytes):
                        parts.append(item)
                        continue
                    data, n = item.after(floor)
                    if n:
                        parts.append(data)
                        count += n
                        floor = subscriber.last_id = item.last_id
                if parts:
                    chunk = parts[0] if len(parts) == 1 else b"".join(parts)
                    self.messages_sent += count
                    self.bytes_sent += len(chunk)
                    self.writes += 1
                    yield chunk
                continue
            if subscriber.lagged:
                # It fell a whole queue behind: rejoin live first, then read the store from the
                # last id it got, then skip the live ids the store already gave it.
                subscriber.lagged = False
                if not subscriber.closing:
                    self._rejoin(subscriber)
                async with aclosing(self._replay(subscriber, subscriber.last_id or 0)) as replay:
                    async for chunk in replay:
                        yield chunk
                floor = subscriber.last_id
                continue
            if subscriber.closing:
                return
            await subscriber.wait()

    async def _replay(self, subscriber: Subscriber, after_id: int) -> AsyncGenerator[bytes, None]:
        """Yield the stored messages after ``after_id`` matching ``subscriber``, in chunks; track its cursor."""
        parts: list[bytes] = []
        size = count = 0
        permit = self._page_permit if self._pages is not None else None
        # Closed here, in this task, when the stream ends mid-replay: a page's permit is given back
        # at once, by the task that took it (left to the garbage collector, another task would).
        stored = self._store.replay(after_id, types=subscriber.types, sources=subscriber.sources, page_permit=permit)
        async with aclosing(stored) as replay:
            async for message in replay:
                data = encode_message(message)
                parts.append(data)
                size += len(data)
                count += 1
                subscriber.last_id = message.id
                if size >= _REPLAY_CHUNK_BYTES:
                    yield self._sent_replay(parts, count, size)
                    parts, size, count = [], 0, 0
        if parts:
            yield self._sent_replay(parts, count, size)

    def _page_permit(self) -> anyio.CapacityLimiter:
        if self._pages is None:  # pragma: no cover - only passed to the store when there is a bound
            raise RuntimeError("no replay budget")
        return self._pages

    @property
    def replay_pages_in_use(self) -> int:
        """Replay pages held in memory now, across streams (0 without a bound)."""
        return int(self._pages.borrowed_tokens) if self._pages is not None else 0

    @property
    def replays_waiting(self) -> int:
        """Replays waiting for room under the budget now."""
        return self._pages.statistics().tasks_waiting if self._pages is not None else 0

    def _sent_replay(self, parts: list[bytes], count: int, size: int) -> bytes:
        self.messages_sent += count
        self.replayed += count
        self.bytes_sent += size
        self.writes += 1
        return b"".join(parts)
