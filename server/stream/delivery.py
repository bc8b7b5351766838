"""What one stream writes, in order: its prelude, the stored messages it missed, then live frames.

Kept apart from the hub's fan-out because it runs in each stream's own task, not in the hub's: the
hub pushes frames into queues and never waits; a delivery takes them out, skips what its subscriber
already has, and reads the store whenever the subscriber is behind (a resume, or after it lagged).

No gap, no duplicate: a subscriber joins live fan-out *before* it reads the store, and skips any id
it already has (a frame knows where each of its messages starts, so a resume from the middle of a
frame skips exactly what was sent). Ids only grow, so one comparison suffices.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

from sse_batcher.batcher import EventStore
from sse_batcher.server.stream.frame import encode_message
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["Delivery"]

# A replay is written in chunks of about this size: big enough to amortise a send, small enough
# that a catching-up subscriber does not hold megabytes of joined bytes at once.
_REPLAY_CHUNK_BYTES = 256 * 1024


class Delivery:
    """Turns each subscriber's queue, and the store when it is behind, into SSE bytes; counts what it sent.

    One per hub: ``rejoin`` puts a lagged subscriber back into the hub's live fan-out.
    """

    __slots__ = ("_rejoin", "_store", "bytes_sent", "messages_sent", "replayed", "writes")

    def __init__(self, store: EventStore, rejoin: Callable[[Subscriber], None]) -> None:
        self._store = store
        self._rejoin = rejoin
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
            async for chunk in self._replay(subscriber, after_id):
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
                async for chunk in self._replay(subscriber, subscriber.last_id or 0):
                    yield chunk
                floor = subscriber.last_id
                continue
            if subscriber.closing:
                return
            await subscriber.wait()

    async def _replay(self, subscriber: Subscriber, after_id: int) -> AsyncIterator[bytes]:
        """Yield the stored messages after ``after_id`` matching ``subscriber``, in chunks; track its cursor."""
        parts: list[bytes] = []
        size = count = 0
        replay = self._store.replay(after_id, types=subscriber.types, sources=subscriber.sources)
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

    def _sent_replay(self, parts: list[bytes], count: int, size: int) -> bytes:
        self.messages_sent += count
        self.replayed += count
        self.bytes_sent += size
        self.writes += 1
        return b"".join(parts)
