"""The fan-out: every committed message, encoded once, handed to every matching SSE client.

The hub has one feed: the node's log follower (``batcher.follower``), which hands it every row
committed by any node, in strictly increasing id order (:meth:`Hub.publish`). Nothing else calls
into it with messages; the batcher never does.

Why it is shaped like this (issue 4):

- Each message is encoded to its SSE bytes once, as the follower hands it over, and the *same* bytes
  object goes into every matching client's queue, so the cost of a commit is one encoding plus one
  append per client, whatever the message size.
- The listener runs on the flush path and never waits: a client's queue is bounded
  (``client_queue_size`` messages) and a client that would overflow it simply leaves the live
  fan-out. Its own stream task then catches up from PostgreSQL, from the last id it delivered,
  and rejoins. The others never notice.
- A client's stream task drains everything queued at once and writes it as one body chunk, so a
  busy client costs one write per wake-up, not one per message.
- No gap, no duplicate: a client is subscribed to live messages *before* it reads the store, and
  drops any live id it already got from the store. Ids only grow, so one comparison suffices.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass

import anyio

from batcher import EventStore, StoredMessage

__all__ = ["Client", "Hub", "HubClosedError", "HubError", "HubFullError", "HubStats", "encode_message"]

logger = logging.getLogger(__name__)

# A replay is written in chunks of about this size: big enough to amortise a send, small enough
# that a catching-up client does not hold megabytes of joined bytes at once.
_REPLAY_CHUNK_BYTES = 256 * 1024


def encode_message(message: StoredMessage) -> bytes:
    """Return the SSE bytes of ``message``: ``id``, ``event`` and one ``data`` line.

    The payload is JSON from msgspec, which escapes newlines, so one ``data:`` line is exact.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (message.id, message.type.encode(), message.payload)


class HubError(Exception):
    """Base class of the hub's refusals to open a client."""


class HubFullError(HubError):
    """``max_clients`` streams are open already."""


class HubClosedError(HubError):
    """The hub is closing (server shutdown): no new streams."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubStats:
    """Counters of the fan-out since start; ``evictions`` are catch-ups from the store."""

    clients: int
    clients_total: int
    clients_refused: int
    messages_sent: int
    bytes_sent: int
    replayed_messages: int
    evictions: int
    send_timeouts: int
    closing: bool


class Client:
    """One SSE connection's place in the fan-out: its filters, its bounded queue, its cursor.

    Owned by the hub (which appends) and one stream task (which drains); both run on the loop.
    """

    __slots__ = ("types", "sources", "_queue", "_limit", "_waiter", "overflow_after", "closing", "delivered_id")

    def __init__(self, types: frozenset[str] | None, sources: frozenset[str] | None, limit: int) -> None:
        self.types = types
        self.sources = sources
        self._queue: deque[tuple[int, bytes]] = deque()
        self._limit = limit
        self._waiter: anyio.Event | None = None
        # Set when the client left live fan-out: the last id before the first message it missed.
        self.overflow_after: int | None = None
        self.closing = False
        # The last id this client was given (None until it was given one, or told where to start).
        self.delivered_id: int | None = None

    @property
    def filtered(self) -> bool:
        return self.types is not None or self.sources is not None

    def matches(self, message: StoredMessage) -> bool:
        """Whether ``message`` passes this client's ``?types=`` and ``?source=`` filters."""
        return (self.types is None or message.event_type in self.types) and (
            self.sources is None or message.source in self.sources
        )

    def push(self, items: Sequence[tuple[int, bytes]]) -> bool:
        """Queue ``items`` (all or none) and wake the stream; False when they do not fit."""
        if len(self._queue) + len(items) > self._limit:
            self.overflow_after = items[0][0] - 1
            self._wake()
            return False
        self._queue.extend(items)
        self._wake()
        return True

    def take(self) -> list[tuple[int, bytes]]:
        """Remove and return everything queued, oldest first."""
        items = list(self._queue)
        self._queue.clear()
        return items

    def close(self) -> None:
        """Ask the stream to end once it has delivered what is queued."""
        self.closing = True
        self._wake()

    async def wait(self) -> None:
        """Wait until something is queued, the client overflowed, or it is closing."""
        if self._queue or self.overflow_after is not None or self.closing:
            return
        waiter = self._waiter = anyio.Event()
        await waiter.wait()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()


class Hub:
    """Fans committed messages out to SSE clients; fed by the log follower (:meth:`publish`)."""

    def __init__(
        self,
        store: EventStore,
        *,
        queue_size: int,
        max_clients: int,
        hold_back: Callable[[StoredMessage], bool] | None = None,
    ) -> None:
        self._store = store
        # Issue 14, ``live = false``: such messages are stored (and replayed) but not streamed live.
        self._hold_back = hold_back
        self._queue_size = queue_size
        self._max_clients = max_clients
        # Live clients without filters take every message: no per-message test for them.
        self._plain: set[Client] = set()
        self._filtered: set[Client] = set()
        # Every open client, live or catching up from the store.
        self._clients: set[Client] = set()
        self._closing = False
        self._clients_total = 0
        self._clients_refused = 0
        self._messages_sent = 0
        self._bytes_sent = 0
        self._replayed = 0
        self._evictions = 0
        self._send_timeouts = 0
        # The largest id fanned out (issue 9: the node's place in the log, for its heartbeat).

    # -- clients -----------------------------------------------------------------------------
    def open(self, types: Collection[str] | None = None, sources: Collection[str] | None = None) -> Client:
        """Register a client in live fan-out (before any replay, so nothing falls between).

        Every client opened must be given back with :meth:`release`.

        Raises:
            HubFullError: ``max_clients`` clients are open.
            HubClosedError: the hub is closing.
        """
        if self._closing:
            self._clients_refused += 1
            raise HubClosedError("the server is shutting down")
        if len(self._clients) >= self._max_clients:
            self._clients_refused += 1
            raise HubFullError(f"the server already streams to {self._max_clients} clients")
        client = Client(frozenset(types) if types else None, frozenset(sources) if sources else None, self._queue_size)
        self._clients.add(client)
        self._clients_total += 1
        self._join(client)
        return client

    def release(self, client: Client) -> None:
        """Forget ``client`` (its connection ended). Idempotent."""
        self._plain.discard(client)
        self._filtered.discard(client)
        self._clients.discard(client)
        client.closing = True

    def count_send_timeout(self) -> None:
        """Count a client closed because it accepted nothing for the send timeout."""
        self._send_timeouts += 1

    def _join(self, client: Client) -> None:
        (self._filtered if client.filtered else self._plain).add(client)

    # -- fan-out -----------------------------------------------------------------------------
    def publish(self, messages: Sequence[StoredMessage]) -> None:
        """Hand committed ``messages`` (in id order, from the log follower) to every live client; never waits."""
        if self._hold_back is not None:
            messages = [message for message in messages if not self._hold_back(message)]
        if not messages:
            return
        items = [(message.id, encode_message(message)) for message in messages]
        overflowed: list[Client] = []
        for client in self._plain:
            if not client.push(items):
                overflowed.append(client)
        for client in self._filtered:
            mine = [item for item, message in zip(items, messages, strict=True) if client.matches(message)]
            if mine and not client.push(mine):
                overflowed.append(client)
        # Counted here, when it leaves live fan-out; its stream notices once its current send ends.
        self._evictions += len(overflowed)
        for client in overflowed:
            self._plain.discard(client)
            self._filtered.discard(client)

    async def follow(self, client: Client, after_id: int | None, prelude: bytes = b"") -> AsyncIterator[bytes]:
        """Yield ``client``'s SSE bytes: ``prelude``, stored messages after ``after_id`` (None: none), then live.

        Ends when the client is closed (shutdown) and has been given what was queued.

        Raises:
            StoreError: the store failed during a replay (the connection ends; the client resumes).
        """
        if prelude:
            yield prelude
        floor = after_id  # every id <= floor was delivered already
        if after_id is not None:
            client.delivered_id = after_id
            async for chunk in self._replay(client, after_id):
                yield chunk
            floor = client.delivered_id
        while True:
            items = client.take()
            if items and floor is not None and items[0][0] <= floor:
                items = [item for item in items if item[0] > floor]
            if items:
                client.delivered_id = items[-1][0]
                chunk = items[0][1] if len(items) == 1 else b"".join([data for _, data in items])
                self._messages_sent += len(items)
                self._bytes_sent += len(chunk)
                yield chunk
                continue
            if client.overflow_after is not None:
                # It fell a whole queue behind: rejoin live first, then read the store from the
                # last id it got, then drop the live ids the store already gave it.
                start = client.delivered_id if client.delivered_id is not None else client.overflow_after
                client.overflow_after = None
                if not client.closing:
                    self._join(client)
                async for chunk in self._replay(client, start):
                    yield chunk
                floor = client.delivered_id
                continue
            if client.closing:
                return
            await client.wait()

    async def _replay(self, client: Client, after_id: int) -> AsyncIterator[bytes]:
        """Yield the stored messages after ``after_id`` matching ``client``, in chunks; track its cursor."""
        parts: list[bytes] = []
        size = count = 0
        replay = self._store.replay(after_id, types=client.types, sources=client.sources)
        async for message in replay:
            data = encode_message(message)
            parts.append(data)
            size += len(data)
            count += 1
            client.delivered_id = message.id
            if size >= _REPLAY_CHUNK_BYTES:
                yield self._sent_replay(parts, count, size)
                parts, size, count = [], 0, 0
        if parts:
            yield self._sent_replay(parts, count, size)

    def _sent_replay(self, parts: list[bytes], count: int, size: int) -> bytes:
        self._messages_sent += count
        self._replayed += count
        self._bytes_sent += size
        return b"".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def clients(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        """Refuse new clients and let every open stream end after what it has queued. Idempotent."""
        self._closing = True
        for client in self._clients:
            client.close()

    def statistics(self) -> HubStats:
        """Return a frozen snapshot of the counters."""
        return HubStats(
            clients=len(self._clients),
            clients_total=self._clients_total,
            clients_refused=self._clients_refused,
            messages_sent=self._messages_sent,
            bytes_sent=self._bytes_sent,
            replayed_messages=self._replayed,
            evictions=self._evictions,
            send_timeouts=self._send_timeouts,
            closing=self._closing,
        )
