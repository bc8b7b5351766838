"""The bounded, thread-safe event buffer between emitters and the flush loop.

``put_item()`` is the hot path: one lock, one append, O(1), never awaits. It wakes the flush loop only
when that loop has something new to decide: the first event into an empty buffer (to arm the
batch timer), the buffer reaching the batch size, or an event that must leave at once. In a steady
flow that is at most two wake-ups per batch, never one per event.

Hop 2 of the data flow (emit -> intake -> **buffer** -> flush -> aggregate -> store -> follower ->
hub -> stream). Next hop: the flush loop (``flush.py``) takes batches out with :meth:`EventBuffer.take`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import msgspec

from sse_batcher.batcher.errors import BufferFullError
from sse_batcher.batcher.events import NORMAL, Event
from sse_batcher.batcher.pipeline.intake import Item
from sse_batcher.batcher.rules.deadlines import DeadlineClock

__all__ = ["EventBuffer"]

_time_ns = time.time_ns


def _now() -> float:
    """Wall time in whole milliseconds: an event's ``ts``.

    The full float repr costs four more bytes per event on the wire and in every stored row, for
    sub-millisecond precision nothing downstream reads. Integer arithmetic, because
    round(time.time(), 3) takes two and a half times as long (see bench/RESULTS.md, 'Bytes on the
    wire per event').
    """
    return _time_ns() // 1_000_000 / 1000


# Deadlines: scheduling uses the monotonic clock, so a clock step can neither stall nor hurry a flush.
_mono = time.monotonic
_Raw = msgspec.Raw


class EventBuffer:
    """A FIFO of validated events, bounded by ``capacity``.

    ``wake`` is called (outside no lock, from the emitting thread) when the flush loop should look;
    it must be cheap and thread-safe, e.g. ``loop.call_soon_threadsafe(event.set)``.
    """

    def __init__(
        self, capacity: int, batch_size: int, wake: Callable[[], None], timeouts: Mapping[str, float] | None = None
    ) -> None:
        self._capacity = capacity
        # Deadlines by timeout class (a type's own timeout, or the batch timeout), on the monotonic clock.
        self._deadlines = DeadlineClock(timeouts or {})
        self._batch_size = batch_size
        self._wake = wake
        self._events: deque[Event] = deque()
        # Events with batching off: they leave alone and at once, without the batched ones.
        self._bypass: deque[Event] = deque()
        self._taken = 0
        self._taken_bypass = 0
        self._taken_seq = 0
        self._urgent_seq = 0
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._waiters = 0
        self._last_seq = 0
        self.loop_thread: int | None = None
        self._high_water = 0
        self._rejected_full = 0

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
        """
        # The hot path: one tuple unpacked, locals only, no per-event counters beyond what the lock
        # must protect. Taking the item whole, not as arguments, spares emit() a call with *item.
        type_, source, data, priority, key, batched, urgent, idempotency_key = item
        with self._lock:
            events = self._events
            if len(events) + len(self._bypass) >= self._capacity:
                self._wait_for_room(timeout)
            seq = self._last_seq = self._last_seq + 1
            if on_seq is not None:
                on_seq(seq)  # under the lock: no flush can take the event before its waiter exists
            now = _now()
            if batched:
                events.append(Event(type_, source, seq, now, _Raw(data), priority, key, True, idempotency_key))
                depth = len(events)
                wake = depth == 1 or depth == self._batch_size
                if urgent or priority != NORMAL:
                    self._urgent_seq = seq
                    wake = True
                if self._deadlines.add(type_, seq, _mono()):
                    wake = True
                depth += len(self._bypass)
            else:
                bypass = self._bypass
                bypass.append(Event(type_, source, seq, now, _Raw(data), priority, key, False, idempotency_key))
                wake = len(bypass) == 1
                depth = len(events) + len(bypass)
            if depth > self._high_water:
                self._high_water = depth
        if wake:
            self._wake()
        return seq

    def _wait_for_room(self, timeout: float | None) -> None:
        # Called with the lock held; Condition.wait releases it while waiting. The event loop's
        # own thread never waits: it is the thread whose flush would make room.
        if not timeout or timeout <= 0 or threading.get_ident() == self.loop_thread:
            self._rejected_full += 1
            raise BufferFullError(f"buffer full ({self._capacity} events waiting); retry later")
        deadline = time.monotonic() + timeout
        self._waiters += 1
        try:
            while len(self._events) + len(self._bypass) >= self._capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._not_full.wait(remaining):
                    if len(self._events) + len(self._bypass) < self._capacity:
                        break
                    self._rejected_full += 1
                    raise BufferFullError(f"buffer still full after waiting {timeout:g} s; retry later")
        finally:
            self._waiters -= 1

    def put_many(self, items: list[Item], on_seq: Callable[[int], None] | None = None) -> list[int]:
        """Append validated items, all or none: (type, source, data, priority, key, batched, urgent, idempotency key).

        ``on_seq`` is called with each seq under the lock, as in :meth:`put_item`.

        Raises:
            BufferFullError: they do not all fit; none was appended.
        """
        now, mono = _now(), _mono()
        with self._lock:
            events, bypass = self._events, self._bypass
            room = self._capacity - len(events) - len(bypass)
            if len(items) > room:
                self._rejected_full += len(items)
                raise BufferFullError(f"buffer has room for {room} events, not {len(items)}; retry later")
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
            self._high_water = max(self._high_water, len(events) + len(bypass))
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
            batch = [events.popleft() for _ in range(n)]
            if batch:
                self._taken_seq = batch[-1].seq
                self._taken += n
                self._deadlines.drop_through(self._taken_seq)
            if self._waiters and n:
                self._not_full.notify_all()
        return batch

    def take_bypass(self) -> list[Event]:
        """Remove and return every waiting bypass event (batching off), oldest first."""
        with self._lock:
            batch = list(self._bypass)
            self._bypass.clear()
            self._taken_bypass += len(batch)
            if self._waiters and batch:
                self._not_full.notify_all()
        return batch

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

    @property
    def capacity(self) -> int:
        return self._capacity

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
        return self._high_water

    @property
    def emitted(self) -> int:
        """Events accepted so far: seqs are handed out one per event, from 1."""
        return self._last_seq

    @property
    def rejected_full(self) -> int:
        return self._rejected_full
