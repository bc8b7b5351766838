"""The bounded, thread-safe event buffer between emitters and the flush loop.

``put()`` is the hot path: one lock, one append, O(1), never awaits. It wakes the flush loop only
when that loop has something new to decide: the first event into an empty buffer (to arm the
batch timer), the buffer reaching the batch size, or an event that must leave at once. In a steady
flow that is at most two wake-ups per batch, never one per event.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import msgspec

from .errors import BufferFullError
from .events import CRITICAL, NORMAL, Event
from .rules import WindowClock

__all__ = ["EventBuffer"]

_now = time.time
_Raw = msgspec.Raw


class EventBuffer:
    """A FIFO of validated events, bounded by ``capacity``.

    ``wake`` is called (outside no lock, from the emitting thread) when the flush loop should look;
    it must be cheap and thread-safe, e.g. ``loop.call_soon_threadsafe(event.set)``.
    """

    def __init__(
        self, capacity: int, batch_size: int, wake: Callable[[], None], windows: Mapping[str, float] | None = None
    ) -> None:
        self._capacity = capacity
        # Only when some type has a window of its own; otherwise the oldest event sets the deadline.
        self._windows = WindowClock(windows) if windows else None
        self._batch_size = batch_size
        self._wake = wake
        self._events: deque[Event] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._waiters = 0
        self._last_seq = 0
        self.loop_thread: int | None = None
        self._urgent = False
        self._high_water = 0
        self._rejected_full = 0

    # -- emit side (any thread) ------------------------------------------------------------
    def put(
        self,
        type_: str,
        source: str,
        data: bytes,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        timeout: float | None = None,
    ) -> int:
        """Append one validated event and return its seq.

        ``timeout`` > 0 lets a worker thread wait that long for room; ``None`` or 0 fails at once.

        Raises:
            BufferFullError: the buffer is full (after waiting up to ``timeout``).
        """
        # The hot path: locals only, no per-event counters beyond what the lock must protect.
        with self._lock:
            events = self._events
            depth = len(events)
            if depth >= self._capacity:
                self._wait_for_room(timeout)
                depth = len(events)
            seq = self._last_seq = self._last_seq + 1
            now = _now()
            events.append(Event(type_, source, seq, now, _Raw(data), priority, key, batched))
            depth += 1
            if depth > self._high_water:
                self._high_water = depth
            urgent = priority != NORMAL or not batched
            if urgent:
                self._urgent = True
            wake = depth == 1 or depth == self._batch_size or urgent
            if self._windows is not None and self._windows.add(type_, seq, now):
                wake = True
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
            while len(self._events) >= self._capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._not_full.wait(remaining):
                    if len(self._events) < self._capacity:
                        break
                    self._rejected_full += 1
                    raise BufferFullError(f"buffer still full after waiting {timeout:g} s; retry later")
        finally:
            self._waiters -= 1

    def put_many(self, items: list[tuple[str, str, bytes, str, str | None, bool]]) -> list[int]:
        """Append validated ``(type, source, data, priority, key, batched)`` items, all or none.

        Raises:
            BufferFullError: they do not all fit; none was appended.
        """
        now = time.time()
        with self._lock:
            events = self._events
            if len(events) + len(items) > self._capacity:
                self._rejected_full += len(items)
                raise BufferFullError(
                    f"buffer has room for {self._capacity - len(events)} events, not {len(items)}; retry later"
                )
            was_empty = not events
            seqs = []
            urgent = False
            rearm = False
            seq = self._last_seq
            for type_, source, data, priority, key, batched in items:
                seq += 1
                seqs.append(seq)
                events.append(Event(type_, source, seq, now, msgspec.Raw(data), priority, key, batched))
                urgent = urgent or priority == CRITICAL or not batched
                if self._windows is not None and self._windows.add(type_, seq, now):
                    rearm = True
            self._last_seq = seq
            depth = len(events)
            self._high_water = max(self._high_water, depth)
            if urgent:
                self._urgent = True
            wake = bool(items) and (was_empty or depth >= self._batch_size or urgent or rearm)
        if wake:
            self._wake()
        return seqs

    # -- flush side (event loop) -----------------------------------------------------------
    def take(self, limit: int) -> list[Event]:
        """Remove and return up to ``limit`` events, oldest first, and wake waiting emitters."""
        with self._lock:
            events = self._events
            n = min(limit, len(events))
            batch = [events.popleft() for _ in range(n)]
            if self._windows is not None and batch:
                self._windows.drop_through(batch[-1].seq)
            if not events:
                self._urgent = False
            elif self._urgent and not any(e.priority == CRITICAL or not e.batched for e in events):
                self._urgent = False
            if self._waiters and n:
                self._not_full.notify_all()
        return batch

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
        return len(self._events)

    def oldest_ts(self) -> float | None:
        """The emit time of the oldest waiting event, or ``None`` when empty."""
        try:
            return self._events[0].ts
        except IndexError:
            return None

    def next_deadline(self, timeout_seconds: float) -> float | None:
        """When the first waiting event is due (per-type windows, else ``timeout_seconds``); None when empty."""
        if self._windows is None:
            oldest = self.oldest_ts()
            return None if oldest is None else oldest + timeout_seconds
        with self._lock:
            return self._windows.next_deadline(timeout_seconds)

    @property
    def urgent(self) -> bool:
        """True while an event that must leave at once (critical, unbatched) is waiting."""
        return self._urgent

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
