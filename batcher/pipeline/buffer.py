"""The bounded, thread-safe event buffer between emitters and the flush loop.

``put_item()`` is the hot path: one lock, one append, O(1), never awaits. It wakes the flush loop only
when that loop has something new to decide: the first event into an empty buffer (to arm the
batch timer), the buffer reaching the batch size, or an event that must leave at once. In a steady
flow that is at most two wake-ups per batch, never one per event.

Room is counted by a :class:`~sse_batcher.batcher.pipeline.room.Room`, in events and in encoded
bytes: an emit that does not fit waits there, or is refused, and closing the buffer wakes every
waiter with ``BatcherClosedError`` and accepts nothing more.

Hop 2 of the data flow (emit -> intake -> **buffer** -> flush -> aggregate -> store -> follower ->
hub -> stream). Next hop: the flush loop (``flush.py``) takes batches out with :meth:`EventBuffer.take`.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Mapping

import msgspec

from sse_batcher.batcher.events import NORMAL, Event, event_ts
from sse_batcher.batcher.pipeline.intake import Item
from sse_batcher.batcher.pipeline.room import Room
from sse_batcher.batcher.rules.deadlines import DeadlineClock

__all__ = ["EventBuffer"]

# Wall clock, an event's ts; the hot path writes _now() out with _time_ns, bound once.
_now = event_ts
_time_ns = time.time_ns
# Deadlines: scheduling uses the monotonic clock, so a clock step can neither stall nor hurry a flush.
_mono = time.monotonic
_sleep = time.sleep
_Raw = msgspec.Raw


class EventBuffer:
    """A FIFO of validated events, bounded by ``capacity`` events and ``max_bytes`` bytes of encoded data.

    ``max_bytes`` None bounds by events only.
    ``wake`` is called (outside no lock, from the emitting thread) when the flush loop should look;
    it must be cheap and thread-safe, e.g. ``loop.call_soon_threadsafe(event.set)``.
    """

    def __init__(
        self,
        capacity: int,
        batch_size: int,
        wake: Callable[[], None],
        timeouts: Mapping[str, float] | None = None,
        *,
        max_bytes: int | None = None,
    ) -> None:
        self._room = Room(capacity, sys.maxsize if max_bytes is None else max_bytes)
        # Deadlines by timeout class (a type's own timeout, or the batch timeout), on the monotonic clock.
        self._deadlines = DeadlineClock(timeouts or {})
        # Each type's deadline queue, as the clock remembers it: one dict lookup per event.
        self._stamps = self._deadlines.by_type
        self._batch_size = batch_size
        self._wake = wake
        self._events: deque[Event] = deque()
        # Events with batching off: they leave alone and at once, without the batched ones.
        self._bypass: deque[Event] = deque()
        self._taken = 0
        self._taken_bypass = 0
        self._taken_seq = 0
        self._urgent_seq = 0
        self._lock = self._room.lock
        self._last_seq = 0
        self._high_water = 0

    # -- emit side (any thread) ------------------------------------------------------------
    def put_item(self, item: Item, timeout: float | None = None, on_seq: Callable[[int], None] | None = None) -> int:
        """Append one validated event, an intake :data:`Item`, and return its seq.

        ``batched=False`` puts the event in the bypass queue: it leaves on its own, at once, and
        never drags the batched events out early. ``urgent`` (and ``critical`` priority) flushes
        the batched queue up to this event at once, keeping its order. ``timeout`` > 0 lets a
        worker thread wait that long for room; ``None`` or 0 fails at once. ``on_seq(seq)`` is called
        under the lock, before any flush can take the event (acknowledged publishing registers there).

        Raises:
            BufferFullError: the buffer is full (after waiting up to ``timeout``).
            BatcherClosedError: the buffer is closed (also while waiting for room).
        """
        # The hot path: one tuple unpacked, locals only, no per-event counters beyond what the lock
        # must protect. Taking the item whole, not as arguments, spares emit() a call with *item.
        type_, source, data, priority, key, batched, urgent, idempotency_key = item
        nbytes = len(data)
        # Read outside the lock, to hold it for less (the lever that lets emit scale with threads).
        # The stamps then say when emit() was called: across threads they may disagree with seq
        # order by the microseconds the lock took, or precede the append by a wait for room. Either
        # can only make a deadline fall due early, never late.
        now = _time_ns() // 1_000_000 / 1000  # _now(), written out: this is the hot path
        mono = _mono()
        raw = _Raw(data)
        room = self._room
        lock = room.lock
        if not lock.acquire(False):
            # Contended: give up the GIL once before blocking, so the holder can run to its release.
            # Blocking at once makes a convoy, the GIL and the lock handed back and forth between
            # threads each emit (see bench/RESULTS.md, 'Emit throughput').
            _sleep(0)
            lock.acquire()
        try:
            if room.events >= room.event_limit or room.bytes + nbytes > room.byte_limit:
                room.wait(1, nbytes, timeout)
            room.events += 1
            room.bytes += nbytes
            seq = self._last_seq = self._last_seq + 1
            if on_seq is not None:
                on_seq(seq)  # under the lock: no flush can take the event before its waiter exists
            if batched:
                events = self._events
                events.append(Event(type_, source, seq, now, raw, priority, key, True, idempotency_key))
                depth = len(events)
                wake = depth == 1 or depth == self._batch_size
                if urgent or priority != NORMAL:
                    self._urgent_seq = seq
                    wake = True
                stamps = self._stamps.get(type_)
                if stamps is None:
                    stamps = self._deadlines.queue_of(type_)  # and remembered in _stamps (bounded)
                stamps.append((seq, mono))
                if len(stamps) == 1:  # its class was empty: the earliest deadline may have moved
                    wake = True
            else:
                bypass = self._bypass
                bypass.append(Event(type_, source, seq, now, raw, priority, key, False, idempotency_key))
                wake = len(bypass) == 1
        finally:
            lock.release()
        if wake:
            self._wake()
        return seq

    def put_many(self, items: list[Item], on_seq: Callable[[int], None] | None = None) -> list[int]:
        """Append validated items, all or none: (type, source, data, priority, key, batched, urgent, idempotency key).

        ``on_seq`` is called with each seq under the lock, as in :meth:`put_item`.

        Raises:
            BufferFullError: they do not all fit; none was appended.
            BatcherClosedError: the buffer is closed; none was appended.
        """
        now, mono = _now(), _mono()
        nbytes = sum(len(item[2]) for item in items)
        room = self._room
        with room.lock:
            room.wait(len(items), nbytes, None)
            room.add(len(items), nbytes)
            events, bypass = self._events, self._bypass
            was_empty, bypass_was_empty = not events, not bypass
            seqs = []
            seq = self._last_seq
            rearm = False
            for type_, source, data, priority, key, batched, urgent, idem in items:
                seq += 1
                seqs.append(seq)
                if on_seq is not None:
                    on_seq(seq)
                if not batched:
                    bypass.append(Event(type_, source, seq, now, _Raw(data), priority, key, False, idem))
                    continue
                events.append(Event(type_, source, seq, now, _Raw(data), priority, key, True, idem))
                if urgent or priority != NORMAL:
                    self._urgent_seq = seq
                    rearm = True
                if self._deadlines.add(type_, seq, mono):
                    rearm = True
            self._last_seq = seq
            wake = (
                rearm
                or (was_empty and bool(events))
                or len(events) >= self._batch_size
                or (bypass_was_empty and bool(bypass))
            )
        if wake:
            self._wake()
        return seqs

    # -- flush side (event loop) -----------------------------------------------------------
    def take(self, limit: int) -> list[Event]:
        """Remove and return up to ``limit`` batched events, oldest first, and wake waiting emitters."""
        with self._lock:
            events = self._events
            n = min(limit, len(events))
            # The depth only grows between takes, so its high-water mark is read here, not per emit.
            self._high_water = max(self._high_water, self._room.events)
            batch = [events.popleft() for _ in range(n)]
            if batch:
                self._taken_seq = batch[-1].seq
                self._taken += n
                self._deadlines.drop_through(self._taken_seq)
                self._room.release(n, _data_bytes(batch))
        return batch

    def take_bypass(self) -> list[Event]:
        """Remove and return every waiting bypass event (batching off), oldest first."""
        with self._lock:
            self._high_water = max(self._high_water, self._room.events)
            batch = list(self._bypass)
            self._bypass.clear()
            self._taken_bypass += len(batch)
            if batch:
                self._room.release(len(batch), _data_bytes(batch))
        return batch

    def close(self) -> None:
        """Accept nothing more, and wake every emitter waiting for room with ``BatcherClosedError``.

        What is held stays, for the shutdown to take. Idempotent.
        """
        self._room.close()

    @property
    def room(self) -> Room:
        """The room counter: ``aemit`` waits on it (:meth:`Room.wait_async`) while the buffer is full.

        Its bounds (``max_events``, ``max_bytes``), what it holds (``events``, ``bytes``) and the
        events refused for lack of room (``rejected``) are read there.
        """
        return self._room

    @property
    def loop_thread(self) -> int | None:
        """The event loop's thread, which never waits for room (its flush is what makes room)."""
        return self._room.loop_thread

    @loop_thread.setter
    def loop_thread(self, ident: int | None) -> None:
        self._room.loop_thread = ident

    def marks(self) -> tuple[int, int]:
        """How many batched and bypass events have been accepted so far (for ``flush()``).

        Each queue is FIFO, so once ``taken`` and ``taken_bypass`` reach these marks, every event
        accepted before the call has been taken, whatever arrived since.
        """
        with self._lock:
            return self._taken + len(self._events), self._taken_bypass + len(self._bypass)

    @property
    def taken(self) -> tuple[int, int]:
        """Batched and bypass events taken so far."""
        return self._taken, self._taken_bypass

    @property
    def bypass_waiting(self) -> bool:
        """True while an event with batching off waits to leave."""
        return bool(self._bypass)

    def set_batch_size(self, size: int) -> None:
        """Change the size that triggers a flush (the sizing policy calls this)."""
        with self._lock:
            self._batch_size = size
            full = len(self._events) >= size
        if full:
            self._wake()

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def __len__(self) -> int:
        return len(self._events) + len(self._bypass)

    def next_deadline(self, timeout_seconds: float) -> float | None:
        """When (monotonic) the first waiting event is due: its type's own timeout, else ``timeout_seconds``
        after it arrived. None when nothing waits."""
        with self._lock:
            return self._deadlines.next_deadline(timeout_seconds)

    @property
    def urgent(self) -> bool:
        """True while a batched event that must leave at once (critical, or urgent by rule) waits."""
        return self._urgent_seq > self._taken_seq

    @property
    def last_seq(self) -> int:
        """The seq of the newest accepted event (0 before the first)."""
        return self._last_seq

    @property
    def high_water(self) -> int:
        """The most events held at once so far."""
        return max(self._high_water, self._room.events)

    @property
    def emitted(self) -> int:
        """Events accepted so far: seqs are handed out one per event, from 1."""
        return self._last_seq


def _data_bytes(events: list[Event]) -> int:
    total = 0
    for event in events:
        total += len(event.data)
    return total
