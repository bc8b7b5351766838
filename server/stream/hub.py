"""The fan-out: the subscriber registry and the tick that hands every committed message to each subscriber.

The hub has one feed: the node's log follower (``sse_batcher.batcher.log.follower``), which hands it every row
committed by any node, in strictly increasing id order (:meth:`Hub.publish`). Nothing else calls
into it with messages; the batcher never does. Next hop: each :class:`~.subscriber.Subscriber`'s queue,
which its stream (:mod:`.response`) writes to the socket through a :class:`~.delivery.Delivery`.

Fan-out cost is about subscribers x (writes per subscriber per second x cost per write + bytes per
second x copy cost) (bench/RESULTS.md, "Fan-out"). So:

- **Bounded wake-ups.** While messages keep coming, they are staged and go out at most once per
  interval, joined into one frame; after a quiet spell a message goes out at once, so a lone event
  keeps its tens of milliseconds. The interval starts at ``fanout_interval_seconds`` and follows
  load as the batch size does: a tick that fires late, because the loop was busy writing to sockets,
  stretches it by half (up to ``fanout_interval_max_seconds``); ticks on time shrink it back.
- **Encode and join once** (:mod:`.frame`): one frame for all unfiltered subscribers and one per
  distinct filter; the *same* bytes object goes into every matching queue.
- **Never wait for a subscriber.** A queue is bounded (``queue_size`` messages); a subscriber that
  would overflow it is *lagged*: it leaves live fan-out at once, and its stream catches up from
  PostgreSQL from its ``last_id`` and rejoins (:mod:`.delivery`). The others never notice.
- **No task per stream for housekeeping** (:mod:`.keepalive`). The hub's one task sends the pings
  and cancels streams whose write has been stuck for ``send_timeout_seconds``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from dataclasses import dataclass

import anyio

from sse_batcher.batcher import EventStore, StoredMessage
from sse_batcher.server.stream.delivery import Delivery
from sse_batcher.server.stream.frame import encode_message, frame_of
from sse_batcher.server.stream.keepalive import KeepAlive
from sse_batcher.server.stream.subscriber import Subscriber

__all__ = ["FanoutObserver", "Hub", "HubClosedError", "HubError", "HubFullError", "HubStats"]

# Sees each message once, when it first goes out to subscribers.
FanoutObserver = Callable[[Sequence[StoredMessage]], None]


class HubError(Exception):
    """Base class of the hub's refusals to open a subscriber."""


class HubFullError(HubError):
    """``max_clients`` streams are open already."""


class HubClosedError(HubError):
    """The hub is closing (server shutdown): no new streams."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HubStats:
    """Counters of the fan-out since start; ``lagged``: subscribers that fell behind and caught up from the store.

    ``fanouts`` counts frames (one per tick, shared by every subscriber), ``writes`` the chunks
    handed to sockets, all streams together.
    """

    clients: int
    clients_total: int
    clients_refused: int
    messages_sent: int
    bytes_sent: int
    writes: int
    replayed_messages: int
    lagged: int
    send_timeouts: int
    fanouts: int
    pings_sent: int
    fanout_interval_seconds: float
    closing: bool
    replay_pages_in_use: int = 0
    replays_waiting: int = 0


class Hub:
    """Fans committed messages out to SSE subscribers; fed by the log follower (:meth:`publish`).

    Run :meth:`run` in a task group: it sends the staged fan-outs, the pings and the send timeouts.
    ``on_fanout`` (optional) sees each message once, when it first goes out to subscribers.
    ``replay_pages`` bounds the replay pages in memory across streams (:mod:`.delivery`).
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
        replay_pages: int | None = None,
    ) -> None:
        # A digest rule's ``live = false``: such messages are stored (and replayed) but not streamed live.
        self._hold_back = hold_back
        self._queue_size = queue_size
        self._max_clients = max_clients
        self._base_interval = fanout_interval_seconds
        self._max_interval = max(fanout_interval_seconds, fanout_interval_max_seconds or fanout_interval_seconds)
        self._interval = fanout_interval_seconds
        self._on_fanout = on_fanout
        self._clock = clock
        # Live subscribers without filters take every frame; filtered ones are grouped by filter.
        self._plain: set[Subscriber] = set()
        self._filtered: dict[tuple[frozenset[str] | None, frozenset[str] | None], set[Subscriber]] = {}
        # Every open subscriber, live or catching up from the store.
        self._subscribers: set[Subscriber] = set()
        # Messages held for the next fan-out tick while the interval since the last one runs.
        self._staged: list[StoredMessage] = []
        self._due: float | None = None
        self._last_fanout = -math.inf
        self._wake = anyio.Event()
        self._closing = False
        self._delivery = Delivery(store, rejoin=self._join, replay_pages=replay_pages)
        self._clients_total = 0
        self._clients_refused = 0
        self._keepalive = KeepAlive(ping_seconds=ping_seconds, send_timeout_seconds=send_timeout_seconds)
        self._lagged = 0
        self._fanouts = 0

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

    def follow(self, subscriber: Subscriber, after_id: int | None, prelude: bytes = b"") -> AsyncGenerator[bytes, None]:
        """Return ``subscriber``'s SSE bytes: ``prelude``, stored messages after ``after_id`` (None: none), then live.

        The generator is :meth:`.delivery.Delivery.follow`; it raises ``StoreError`` when a replay fails.
        """
        return self._delivery.follow(subscriber, after_id, prelude)

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

        After a quiet spell they go out at once; while messages keep coming, they are staged for the
        next tick of the fan-out interval and go out joined with the others.
        """
        if self._hold_back is not None:
            messages = [message for message in messages if not self._hold_back(message)]
        if not messages:
            return
        now = self._clock()
        if self._staged or now - self._last_fanout < self._interval:
            self._staged.extend(messages)
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
        """Send staged fan-outs on time and sweep the streams for pings and send timeouts; until cancelled."""
        period = self._keepalive.period_seconds
        next_sweep = self._clock() + period
        while True:
            now = self._clock()
            if self._due is not None and now >= self._due:
                self._adapt(now - self._due)
                self._flush_staged(now)
            if now >= next_sweep:
                self._keepalive.sweep(self._subscribers, now)
                next_sweep = now + period
            deadline = next_sweep if self._due is None else min(self._due, next_sweep)
            self._wake = anyio.Event()
            with anyio.move_on_after(max(0.0, deadline - self._clock())):
                await self._wake.wait()

    def _adapt(self, lateness: float) -> None:
        interval = self._interval
        if lateness > interval * 0.5:
            self._interval = min(self._max_interval, max(interval, 0.001) * 1.5)
        elif lateness < interval * 0.1:
            self._interval = max(self._base_interval, interval * 0.9)

    def _flush_staged(self, now: float) -> None:
        staged, self._staged, self._due = self._staged, [], None
        if staged:
            self._fanout(staged, now)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """Fan out what is staged, refuse new subscribers, and let every stream end after what it has queued.

        Idempotent.
        """
        self._flush_staged(self._clock())
        self._closing = True
        for subscriber in self._subscribers:
            subscriber.close()

    def statistics(self) -> HubStats:
        """Return a frozen snapshot of the counters."""
        return HubStats(
            clients=len(self._subscribers),
            clients_total=self._clients_total,
            clients_refused=self._clients_refused,
            messages_sent=self._delivery.messages_sent,
            bytes_sent=self._delivery.bytes_sent,
            writes=self._delivery.writes,
            replayed_messages=self._delivery.replayed,
            lagged=self._lagged,
            send_timeouts=self._keepalive.send_timeouts,
            fanouts=self._fanouts,
            pings_sent=self._keepalive.pings,
            fanout_interval_seconds=self._interval,
            closing=self._closing,
            replay_pages_in_use=self._delivery.replay_pages_in_use,
            replays_waiting=self._delivery.replays_waiting,
        )
