"""FlushLoop: decide when a batch leaves, aggregate it, hand it to the writer, pass on what committed.

One task runs the loop and owns every store write, so exactly one write is in flight and ids follow
commit order. It waits, on one event and one deadline (OpenTelemetry's BatchProcessor shape), for
the first of: an event that must leave at once (bypass or critical), a flush() request, the buffer
reaching the batch size, the oldest event reaching its timeout, the dead-letter file being due for
write-back, or shutdown. Deadlines are monotonic.

With the leading edge on (the default), the loop does not wait for a timeout when the writer is
idle, that is when no write ended within the last batch timeout: it takes what is queued at once
(flush reason ``idle``). What arrives while that write is in flight, or soon after it, forms the
next batch, which leaves on its size or its timeout: the timeout bounds the wait under load
instead of imposing it when idle, as the hub's fan-out interval does. A lone event then costs one
commit instead of a timeout, and a steady flow still pays one commit per timeout, not one per
request (measured against leaving at once after every write: bench/RESULTS.md, "Leading edge").
Whatever the reason, a flush takes up to the largest batch (``max_batch_size``), so a backlog
drains in as few transactions as that allows. Without the leading edge, a batch always waits for
its size or its timeout.

Hop 3 of the data flow. Data flows one way: buffer -> this loop -> aggregate -> writer (-> store).
What the writer returns goes on to the tracker (flush() and acknowledgement waiters) and downstream
to the listeners (the log follower's local-commit wake-up, library callbacks) and the flush
observers (the sizer, which only takes note). Nothing calls back into the loop but
:meth:`FlushLoop.wake`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from sse_batcher.batcher.events import Event, Message
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.pipeline.buffer import EventBuffer
from sse_batcher.batcher.pipeline.tracker import FlushTracker
from sse_batcher.batcher.pipeline.writer import BatchWriter, Written
from sse_batcher.batcher.protocols import Listener
from sse_batcher.batcher.rules.rules import AggregationRules
from sse_batcher.batcher.stats import BATCH_SIZE_BUCKETS, FLUSH_REASONS, Histogram

__all__ = ["FlushLoop", "FlushReport"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What one flush did; handed to flush observers (the sizing policy learns from these)."""

    reason: str
    events: int
    messages: int
    write_seconds: float
    stored: bool
    backlog: int


class FlushLoop:
    """The flush schedule and its counters; the batcher facade starts :meth:`run` in its task group."""

    def __init__(
        self,
        buffer: EventBuffer,
        writer: BatchWriter,
        tracker: FlushTracker,
        *,
        origin: str,
        rules: AggregationRules,
        batch_timeout_seconds: float,
        max_message_bytes: int | None = None,
        leading_edge: bool = True,
        max_batch_size: int = 500,
    ) -> None:
        self._buffer = buffer
        self._writer = writer
        self._tracker = tracker
        self._origin = origin
        self._rules = rules
        self._max_message_bytes = max_message_bytes
        self.batch_timeout = batch_timeout_seconds
        self.leading_edge = leading_edge
        self._last_flush_end = -math.inf
        self.max_batch_size = max_batch_size
        self.closing = False
        self.manual = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake_event: asyncio.Event | None = None
        self._resumed = anyio.Event()
        self.done = anyio.Event()
        self.listeners: list[Listener] = []
        self.observers: list[Callable[[FlushReport], None]] = []
        self.flushes = dict.fromkeys(FLUSH_REASONS, 0)
        self.events_batched = 0
        self.events_saved = 0
        self.batches_created = 0
        self.messages_stored = 0
        self.events_stored = 0
        self.superseded = 0
        self.listener_errors = 0
        self.batch_hist = Histogram(BATCH_SIZE_BUCKETS)

    def bind(self) -> None:
        """Remember the running loop, so emitting threads can wake this one."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = self._buffer.loop_thread = threading.get_ident()
        self._wake_event = asyncio.Event()

    @property
    def resumed(self) -> anyio.Event:
        """Set once the writer stops refusing intake (its held batches are stored or on disk), or
        the batcher closes: ``aemit`` waits on it while intake is refused."""
        return self._resumed

    def resume(self) -> None:
        """Wake everyone waiting on :attr:`resumed` (on the loop's thread)."""
        resumed, self._resumed = self._resumed, anyio.Event()
        resumed.set()

    def wake(self) -> None:
        """Ask the loop to look again; safe from any thread, cheap (the buffer calls it)."""
        loop, event = self._loop, self._wake_event
        if loop is None or event is None:
            return
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop already closed: nothing left to wake
                pass

    async def run(self) -> None:
        """Flush until closing and empty; the dead-letter file left by an earlier run goes first."""
        try:
            if self._writer.behind:
                self._written_back(await self._writer.write_back())
            while True:
                reason = await self._next_reason()
                if reason is None:
                    break
                await self._flush_once(reason)
        finally:
            self.done.set()

    def _due(self) -> str | None:
        """Why a batch should leave now, or None: a question only, it changes nothing."""
        buffer = self._buffer
        depth = len(buffer)
        if self.closing:
            return "shutdown" if depth else None
        if not depth:
            return None
        if buffer.bypass_waiting:
            return "bypass"
        if buffer.urgent:
            return "critical"
        if self.manual:
            return "manual"
        if depth >= buffer.batch_size:
            return "size"
        now = time.monotonic()
        if self.leading_edge and now - self._last_flush_end >= self.batch_timeout:
            # Asked only between writes, and none ended within a timeout: the writer is idle.
            return "idle"
        deadline = buffer.next_deadline(self.batch_timeout)
        if deadline is not None and now >= deadline:
            return "timeout"
        return None

    async def _next_reason(self) -> str | None:
        wake = self._wake_event
        if wake is None:
            raise RuntimeError("FlushLoop.bind() was not called")
        while True:
            wake.clear()
            reason = self._due()
            if reason is not None:
                return reason
            if self.closing:
                return None
            if self.manual:
                # flush() was asked while nothing was buffered: nothing to flush, so answer it here.
                self.manual = False
                self._tracker.release_flush_waiters(self._writer.behind)
            now = time.monotonic()
            deadline = self._buffer.next_deadline(self.batch_timeout)
            write_back_at = self._writer.next_write_back_at
            if write_back_at <= now:
                self._written_back(await self._writer.write_back())
                continue
            delay = min(math.inf if deadline is None else deadline - now, write_back_at - now)
            with anyio.move_on_after(max(delay, 0.0)):
                await wake.wait()

    async def _flush_once(self, reason: str) -> None:
        buffer = self._buffer
        # Bypass events first, whatever the reason: they are the ones that must not wait.
        bypass = buffer.bypass_waiting
        # The batch size is when a batch is due, not how much it may take: a backlog leaves in as
        # few transactions as the largest batch allows.
        events = buffer.take_bypass() if bypass else buffer.take(max(buffer.batch_size, self.max_batch_size))
        if reason == "manual" and len(buffer) == 0:
            self.manual = False
        if not events:
            return
        self.flushes[reason] += 1
        self.batch_hist.observe(len(events))
        messages = self._aggregate(events)
        self._count(len(events), messages)
        started = time.perf_counter()
        written = await self._writer.write(messages, closing=self.closing)
        elapsed = time.perf_counter() - started
        self._tracker.handled(len(events), bypass=bypass)
        self._last_flush_end = time.monotonic()
        self._pass_on(written)
        report = FlushReport(reason, len(events), len(messages), elapsed, not written.kept, len(buffer))
        for observer in self.observers:
            try:
                observer(report)
            except Exception:
                self.listener_errors += 1
                logger.exception("flush observer %r failed", observer)

    async def keep_leftovers(self) -> None:
        """Append to the dead-letter file what the loop still holds; for a shutdown that ran out of time.

        A batch that was in flight may have committed; its idempotency key makes the rewrite at the
        next start harmless.
        """
        buffer = self._buffer
        leftovers = self._writer.take_unwritten()
        bypass = buffer.take_bypass()
        if bypass:
            leftovers.append(self._aggregate(bypass))
        while len(buffer):
            leftovers.append(self._aggregate(buffer.take(len(buffer))))
        kept = await self._writer.keep_on_disk(leftovers)
        # Their waiters are answered "kept" when the tracker closes: a retry would store them twice.
        self._tracker.settle(Written(kept=[message for batch in kept for message in batch]))

    def _aggregate(self, events: list[Event]) -> list[Message]:
        return aggregate(events, self._origin, self._rules, max_message_bytes=self._max_message_bytes)

    def _count(self, events: int, messages: list[Message]) -> None:
        for message in messages:
            if message.event_count > 1:
                self.events_batched += message.event_count
                self.batches_created += 1
        self.events_saved += events - len(messages)
        if not self._rules.plain:  # key coalescing drops superseded events; count them
            self.superseded += events - sum(m.event_count for m in messages)

    def _written_back(self, written: Written) -> None:
        """Pass on what a write-back stored; intake may have resumed, so wake ``aemit`` waiters."""
        self._pass_on(written)
        if not self._writer.refusing:
            self.resume()

    def _pass_on(self, written: Written) -> None:
        """Settle waiters, then hand what committed downstream, in id order."""
        self._tracker.settle(written)
        self._tracker.release_flush_waiters(self._writer.behind)
        stored = written.stored
        if not stored:
            return
        self.messages_stored += len(stored)
        self.events_stored += sum(m.event_count for m in stored)
        for listener in list(self.listeners):
            try:
                listener(stored)
            except Exception:
                self.listener_errors += 1
                logger.exception("listener %r failed", listener)
