"""The fan-out: every committed message, encoded once, joined once per tick, handed to every subscriber.

The hub has one feed: the node's log follower (``sse_batcher.batcher.log.follower``), which hands it every row
committed by any node, in strictly increasing id order (:meth:`Hub.publish`). Nothing else calls
into it with messages; the batcher never does. Next hop: each :class:`~.subscriber.Subscriber`'s queue,
which its stream (``server/app/stream.py``) writes to the socket.

The cost model (issue 10): fan-out cost is about subscribers x (writes per subscriber per second x
cost per write + bytes per second x copy cost). So:

- **Bounded wake-ups.** While messages keep coming, the hub fans out at most once per interval,
  joining everything that arrived in between into one frame; when a message arrives after a quiet
  spell it goes out at once, so a lone event keeps its tens of milliseconds. Each subscriber is
  woken, and its socket written, at most once per interval. The interval starts at
  ``fanout_interval_seconds`` and follows load as the batch size does: a tick that fires late,
  because the loop was busy writing to sockets, stretches it by half (up to
  ``fanout_interval_max_seconds``); ticks on time shrink it back toward the floor.
- **Encode and join once.** Each message is encoded to SSE bytes once; the frame (the joined bytes
  of one fan-out) is built once for all unfiltered subscribers and once per distinct filter, and
  the *same* bytes object goes into every matching queue.
- **Never wait for a subscriber.** A queue is bounded (``queue_size`` messages); a subscriber that
  would overflow it is *lagged*: it leaves live fan-out at once, and its stream catches up from
  PostgreSQL from its ``last_id`` and rejoins. The others never notice.
- **No task per stream for housekeeping.** One hub task sends the keep-alive pings and cancels
  streams whose write has been stuck for ``send_timeout_seconds``; an idle stream costs no CPU.
- **No gap, no duplicate.** A subscriber joins live fan-out *before* it reads the store, and skips
  any id it already has (a frame knows where each of its messages starts, so a resume from the
  middle of a frame skips exactly what was sent). Ids only grow, so one comparison suffices.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from itertools import accumulate

import anyio

from sse_batcher.batcher import EventStore, StoredMessage
from sse_batcher.server.stream.subscriber import Frame, Subscriber

__all__ = ["Hub", "HubClosedError", "HubError", "HubFullError", "HubStats", "encode_message"]

logger = logging.getLogger(__name__)

# A replay is written in chunks of about this size: big enough to amortise a send, small enough
# that a catching-up subscriber does not hold megabytes of joined bytes at once.
_REPLAY_CHUNK_BYTES = 256 * 1024
_PING: bytes = b": ping\n\n"

FanoutObserver = Callable[[Sequence[StoredMessage]], None]


def encode_message(message: StoredMessage) -> bytes:
    """Return the SSE bytes of ``message``: ``id``, ``event`` and one ``data`` line.

    The payload is JSON from PostgreSQL's jsonb rendering, which escapes newlines, so one ``data:``
    line is exact.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (message.id, message.type.encode(), message.payload)


def frame_of(encoded: Sequence[tuple[int, bytes]]) -> Frame:
    """Join ``(id, bytes)`` pairs, in id order, into one frame."""
    sizes = [len(data) for _, data in encoded]
    return Frame(
        ids=tuple(message_id for message_id, _ in encoded),
        offsets=(0, *accumulate(sizes[:-1])),
        data=encoded[0][1] if len(encoded) == 1 else b"".join([data for _, data in encoded]),
    )


class HubError(Exception):
    """Base class of the hub's refusals to open a subscriber."""


class HubFullError(HubError):
    """``max_clients`` streams are open already."""


class HubClosedError(HubError):
    """The hub is closing (server shutdown): no new streams."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubStats:
    """Counters of the fan-out since start; ``lagged``: subscribers that fell behind and caught up from the store."""

    clients: int
    clients_total: int
    clients_refused: int
    messages_sent: int
    bytes_sent: int
    replayed_messages: int
    lagged: int
    send_timeouts: int
    fanouts: int
    pings_sent: int
    fanout_interval_seconds: float
    closing: bool


class Hub:
    """Fans committed messages out to SSE subscribers; fed by the log follower (:meth:`publish`).

    Run :meth:`run` in a task group: it sends the deferred fan-outs, the pings and the send timeouts.
    ``on_fanout`` (optional) sees each message once, when it first goes out to subscribers.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        queue_size: int,
        max_clients: int,
        fanout_interval_seconds: float = 0.0,
        fanout_interval_max_seconds: float | None = None,
        ping_seconds: float = 15.0,
        send_timeout_seconds: float = 30.0,
        on_fanout: FanoutObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        hold_back: Callable[[StoredMessage], bool] | None = None,
    ) -> None:
        self._store = store
        # Issue 14, ``live = false``: such messages are stored (and replayed) but not streamed live.
        self._hold_back = hold_back
        self._queue_size = queue_size
        self._max_clients = max_clients
        # The interval follows load: a tick that fires late (the loop was busy writing to sockets)
        # stretches it, up to the max; ticks on time bring it back to the configured floor.
        self._base_interval = fanout_interval_seconds
        self._max_interval = max(fanout_interval_seconds, fanout_interval_max_seconds or fanout_interval_seconds)
        self._interval = fanout_interval_seconds
        self._ping_seconds = ping_seconds
        self._send_timeout = send_timeout_seconds
        self._on_fanout = on_fanout
        self._clock = clock
        # Live subscribers without filters take every frame; filtered ones are grouped by filter.
        self._plain: set[Subscriber] = set()
        self._filtered: dict[tuple[frozenset[str] | None, frozenset[str] | None], set[Subscriber]] = {}
        # Every open subscriber, live or catching up from the store.
        self._subscribers: set[Subscriber] = set()
        self._pending: list[StoredMessage] = []
        self._due: float | None = None
        self._last_fanout = -math.inf
        self._wake = anyio.Event()
        self._closing = False
        self._clients_total = 0
        self._clients_refused = 0
        self._messages_sent = 0
        self._bytes_sent = 0
        self._replayed = 0
        self._lagged = 0
        self._send_timeouts = 0
        self._fanouts = 0
        self._pings = 0

    # -- subscribers -------------------------------------------------------------------------
    def open(self, types: Collection[str] | None = None, sources: Collection[str] | None = None) -> Subscriber:
        """Register a subscriber in live fan-out (before any replay, so nothing falls between).

        Every subscriber opened must be given back with :meth:`release`.

        Raises:
            HubFullError: ``max_clients`` subscribers are open.
            HubClosedError: the hub is closing.
        """
        if self._closing:
            self._clients_refused += 1
            raise HubClosedError("the server is shutting down")
        if len(self._subscribers) >= self._max_clients:
            self._clients_refused += 1
            raise HubFullError(f"the server already streams to {self._max_clients} clients")
        subscriber = Subscriber(
            frozenset(types) if types else None, frozenset(sources) if sources else None, self._queue_size
        )
        subscriber.last_write = self._clock()
        self._subscribers.add(subscriber)
        self._clients_total += 1
        self._join(subscriber)
        return subscriber

    def release(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber`` (its connection ended). Idempotent."""
        self._leave(subscriber)
        self._subscribers.discard(subscriber)
        subscriber.closing = True

    def _join(self, subscriber: Subscriber) -> None:
        if subscriber.filtered:
            self._filtered.setdefault(subscriber.key, set()).add(subscriber)
        else:
            self._plain.add(subscriber)

    def _leave(self, subscriber: Subscriber) -> None:
        self._plain.discard(subscriber)
        group = self._filtered.get(subscriber.key)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._filtered[subscriber.key]

    # -- fan-out -----------------------------------------------------------------------------
    def publish(self, messages: Sequence[StoredMessage]) -> None:
        """Take committed ``messages`` (in id order, from the log follower); never waits.

        After a quiet spell they go out at once; while messages keep coming, they wait for the next
        tick of the fan-out interval and go out joined with the others.
        """
        if self._hold_back is not None:
            messages = [message for message in messages if not self._hold_back(message)]
        if not messages:
            return
        now = self._clock()
        if self._pending or now - self._last_fanout < self._interval:
            self._pending.extend(messages)
            if self._due is None:
                self._due = self._last_fanout + self._interval
                self._wake.set()
            return
        self._fanout(messages, now)

    def _fanout(self, messages: Sequence[StoredMessage], now: float) -> None:
        self._last_fanout = now
        self._fanouts += 1
        encoded = [(message.id, encode_message(message)) for message in messages]
        overflowed: list[Subscriber] = []
        if self._plain:
            frame = frame_of(encoded)
            for subscriber in self._plain:
                if not subscriber.push(frame):
                    overflowed.append(subscriber)
        for group in self._filtered.values():
            probe = next(iter(group))
            mine = [item for item, message in zip(encoded, messages, strict=True) if probe.matches(message)]
            if not mine:
                continue
            frame = frame_of(mine)
            for subscriber in group:
                if not subscriber.push(frame):
                    overflowed.append(subscriber)
        # Counted here, when it leaves live fan-out; its stream notices once its current write ends.
        self._lagged += len(overflowed)
        for subscriber in overflowed:
            self._leave(subscriber)
        # Measured once per message, when it first goes to a subscriber: not when nobody is listening.
        if self._on_fanout is not None and (self._plain or self._filtered):
            self._on_fanout(messages)

    async def run(self) -> None:
        """Send deferred fan-outs on time, pings to idle streams, and time out stuck writes; until cancelled."""
        period = max(0.05, min(self._ping_seconds, self._send_timeout) / 4)
        next_housekeeping = self._clock() + period
        while True:
            now = self._clock()
            if self._due is not None and now >= self._due:
                self._adapt(now - self._due)
                self._flush_pending(now)
            if now >= next_housekeeping:
                self._housekeep(now)
                next_housekeeping = now + period
            deadline = next_housekeeping if self._due is None else min(self._due, next_housekeeping)
            self._wake = anyio.Event()
            with anyio.move_on_after(max(0.0, deadline - self._clock())):
                await self._wake.wait()

    def _adapt(self, lateness: float) -> None:
        interval = self._interval
        if lateness > interval * 0.5:
            self._interval = min(self._max_interval, max(interval, 0.001) * 1.5)
        elif lateness < interval * 0.1:
            self._interval = max(self._base_interval, interval * 0.9)

    def _flush_pending(self, now: float) -> None:
        pending, self._pending, self._due = self._pending, [], None
        if pending:
            self._fanout(pending, now)

    def _housekeep(self, now: float) -> None:
        # Pings go to streams that wrote nothing for most of a ping interval; a stream whose write
        # has not returned for the send timeout is a frozen peer: cancel it (its stream ends).
        ping_after = self._ping_seconds * 0.75
        for subscriber in self._subscribers:
            since = subscriber.sending_since
            if since is not None:
                if now - since >= self._send_timeout and subscriber.scope is not None and not subscriber.timed_out:
                    subscriber.timed_out = True
                    self._send_timeouts += 1
                    subscriber.scope.cancel()
            elif now - subscriber.last_write >= ping_after and subscriber.scope is not None:
                subscriber.last_write = now
                self._pings += 1
                subscriber.ping(_PING)

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
                    self._messages_sent += count
                    self._bytes_sent += len(chunk)
                    yield chunk
                continue
            if subscriber.lagged:
                # It fell a whole queue behind: rejoin live first, then read the store from the
                # last id it got, then skip the live ids the store already gave it.
                subscriber.lagged = False
                if not subscriber.closing:
                    self._join(subscriber)
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
        return len(self._subscribers)

    def close(self) -> None:
        """Fan out what waits, refuse new subscribers, and let every stream end after what it has queued.

        Idempotent.
        """
        self._flush_pending(self._clock())
        self._closing = True
        for subscriber in self._subscribers:
            subscriber.close()

    def statistics(self) -> HubStats:
        """Return a frozen snapshot of the counters."""
        return HubStats(
            clients=len(self._subscribers),
            clients_total=self._clients_total,
            clients_refused=self._clients_refused,
            messages_sent=self._messages_sent,
            bytes_sent=self._bytes_sent,
            replayed_messages=self._replayed,
            lagged=self._lagged,
            send_timeouts=self._send_timeouts,
            fanouts=self._fanouts,
            pings_sent=self._pings,
            fanout_interval_seconds=self._interval,
            closing=self._closing,
        )
