"""BatcherCore: the batcher's parts, wired together, and every control that is not a way in.

:class:`~sse_batcher.batcher.pipeline.facade.SSEEventBatcher` is this plus the ways events enter
(``emit``, ``aemit``, ``emit_many``, ``publish``). Kept apart so each half reads on its own: here
the parts are built and started, shut down (the flush loop gets the shutdown timeout to store what
is held, then whatever is left goes to the dead-letter file), flushed on request, resized by the
sizing policy (``set_batch_size``, ``set_batch_timeout``), listened to, and counted.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc

from sse_batcher.batcher.config import BatcherConfig
from sse_batcher.batcher.errors import BatcherClosedError, BatcherError, BufferFullError
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.pipeline.breaker import CircuitBreaker
from sse_batcher.batcher.pipeline.buffer import EventBuffer
from sse_batcher.batcher.pipeline.flush import FlushLoop, FlushReport
from sse_batcher.batcher.pipeline.intake import Intake
from sse_batcher.batcher.pipeline.tracker import FlushTracker
from sse_batcher.batcher.pipeline.writer import BatchWriter
from sse_batcher.batcher.protocols import EventStore, Listener
from sse_batcher.batcher.rules.rules import AggregationRules
from sse_batcher.batcher.stats import BatcherStats

__all__ = ["BatcherCore"]

logger = logging.getLogger(__name__)


class BatcherCore(Service):
    """The parts of a batcher wired together, and everything but the ways in; see the module."""

    def __init__(
        self,
        store: EventStore,
        config: BatcherConfig | None = None,
        *,
        rules: AggregationRules | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._store = store
        self._config = config = config or BatcherConfig()
        # Per-type rules (default: JOB_FAILED unbatched) and the optional store circuit breaker.
        rules = rules if rules is not None else AggregationRules()
        self._state = State.NEW
        self._refusing = False  # read on every emit: a plain attribute, not the state enum
        # Emits refused before they reached the buffer: while the writer held batches the disk
        # refused, or by a split's room check.
        self._refused_early = 0
        self._intake = Intake(
            default_source=config.default_source,
            max_event_bytes=config.max_event_bytes,
            batching=config.batching_enabled,
            unbatched=rules.unbatched_types(),
        )
        self._writer = BatchWriter(
            store,
            DeadLetterFile(config.data_dir / "deadletter"),
            max_retries=config.max_retries,
            retry_delay_seconds=config.retry_delay_seconds,
            breaker=breaker,
        )
        # Unique per batcher run: with an event's seq it makes the idempotency key of its message,
        # and it is what an acknowledgement is matched by (seqs restart with every run).
        origin = secrets.token_hex(8)
        self._tracker = FlushTracker(origin)
        self._buffer = EventBuffer(
            config.max_buffered_events,
            config.batch_size,
            self._wake,
            rules.timeouts(config.batch_timeout_seconds),
            max_bytes=config.max_buffered_bytes,
        )
        self._loop = FlushLoop(
            self._buffer,
            self._writer,
            self._tracker,
            origin=origin,
            rules=rules,
            batch_timeout_seconds=config.batch_timeout_seconds,
            max_message_bytes=config.max_message_bytes,
            leading_edge=config.leading_edge,
            max_batch_size=config.max_batch_size,
        )
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = anyio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def config(self) -> BatcherConfig:
        return self._config

    @property
    def store(self) -> EventStore:
        return self._store

    async def start(self) -> None:
        """Start the flush loop; a dead-letter file left by an earlier run is written back first.

        Raises:
            BatcherClosedError: the batcher was already started or closed.
        """
        if self._state is not State.NEW:
            raise BatcherClosedError(f"cannot start a batcher that is {self._state.value}")
        self._loop.bind()
        await self._writer.load_dead_letter()
        self._stack = AsyncExitStack()
        self._task_group = await self._stack.enter_async_context(anyio.create_task_group())
        self._state = State.RUNNING
        self._task_group.start_soon(self._loop.run)

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop intake, flush and store everything, close. Idempotent; never blocks forever.

        Intake stops first: every emitter still waiting for room gets ``BatcherClosedError``, and
        nothing is accepted after. What cannot be stored within ``timeout`` (default: the configured
        shutdown timeout) is appended to the dead-letter file and written back at the next start. A
        batcher that never started (or whose ``start()`` failed) flushes what it holds the same way.
        """
        if self._state is State.CLOSED:
            return
        if self._state is State.CLOSING:
            await self._closed.wait()
            return
        self._refusing = True
        self._buffer.close()  # wakes every emitter waiting for room; nothing is accepted after this
        self._loop.resume()  # and every aemit waiting for the writer to take intake again
        limit = self._config.shutdown_timeout_seconds if timeout is None else timeout
        if self._state is State.NEW:
            await self._close_unstarted(limit)
            return
        self._state = State.CLOSING
        self._loop.closing = True
        self._wake()
        with anyio.move_on_after(limit):
            await self._loop.done.wait()
        stack, self._stack = self._stack, None
        try:
            if not self._loop.done.is_set():
                logger.warning("shutdown flush did not finish in %.1f s; keeping the rest on disk", limit)
                if self._task_group is not None:
                    self._task_group.cancel_scope.cancel()
            if stack is not None:
                await stack.aclose()
            await self._loop.keep_leftovers()
        finally:
            self._closed_now()

    def _closed_now(self) -> None:
        """The end of every close, however it went: CLOSED, and every waiter answered."""
        self._state = State.CLOSED
        self._tracker.release_flush_waiters(self._writer.behind, closed=True)
        self._tracker.close()
        self._closed.set()

    async def _close_unstarted(self, limit: float) -> None:
        """Close a batcher that never ran (never started, or start() failed): what was emitted before
        is flushed here, on the caller's task, within ``limit``; what the store does not take in time
        goes to the dead-letter file, as at any shutdown."""
        self._state = State.CLOSING
        self._loop.closing = True
        try:
            if len(self._buffer):
                self._loop.bind()
                with anyio.move_on_after(limit):
                    await self._loop.run()
                await self._loop.keep_leftovers()
        finally:
            self._closed_now()

    def _wake(self) -> None:
        self._loop.wake()

    def _intake_refused(self) -> BatcherError:
        """The error for an emit while intake is stopped: closing, or batches held in memory.

        The writer holds batches neither the store nor the disk took; intake stops there, so what is
        held in memory stays bounded by the buffer, and resumes once they are stored or on disk.
        """
        if self._refusing:
            return BatcherClosedError("batcher is closed; no more events are accepted")
        self._refused_early += 1
        return BufferFullError(f"the dead-letter file refuses writes ({self._writer.dead_letter_error}); retry shortly")

    def end_waits(self) -> None:
        """Answer every coroutine waiting in ``publish()`` or ``aemit(wait=True)`` now, and every later
        one at once, with :class:`AckTimeoutError` saying where its events stand (``kept``).

        For a server shutting down: it can still send those answers, where its ASGI server would
        soon cancel the requests instead. The events are not dropped: they are stored, or kept on
        disk, as any other. Worker threads blocked in ``emit(wait=True)`` keep waiting.
        """
        self._tracker.end_waits()

    # -- flushing ----------------------------------------------------------------------------
    async def flush(self, timeout: float | None = None) -> bool:
        """Store and hand out every event accepted before the call.

        While the store is down that includes writing the dead-letter file back. Returns True
        when all of them were stored; False when ``timeout`` passed first (they are then still
        buffered or on disk, never lost) or the batcher closed.
        """
        target = self._buffer.marks()
        tracker, writer = self._tracker, self._writer
        if self._state is State.RUNNING and not tracker.reached(target, writer.behind):
            done = tracker.add_flush_waiter(target)
            self._loop.manual = True
            self._wake()
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await done.wait()
        return tracker.reached(target, writer.behind)

    def set_batch_size(self, size: int) -> None:
        """Change the batch size (the sizing policy's lever)."""
        self._buffer.set_batch_size(max(1, int(size)))

    def set_batch_timeout(self, seconds: float) -> None:
        """Change the batch timeout, never above the configured one."""
        self._loop.batch_timeout = min(max(seconds, 0.001), self._config.batch_timeout_seconds)
        self._wake()

    @property
    def batch_size(self) -> int:
        return self._buffer.batch_size

    @property
    def batch_timeout_seconds(self) -> float:
        return self._loop.batch_timeout

    @property
    def backlog(self) -> int:
        """Events waiting in the buffer."""
        return len(self._buffer)

    # -- handing out -------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(messages)`` on the loop after each commit, in id order.

        The listener must not block: it runs on the flush path. Returns a function that removes it.
        """
        listeners = self._loop.listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener) if listener in listeners else None

    def add_flush_observer(self, observer: Callable[[FlushReport], None]) -> None:
        """Call ``observer(report)`` on the loop after every flush; it must only take note, not act.

        The sizing policy records the report here and decides in its own task.
        """
        self._loop.observers.append(observer)

    # -- statistics --------------------------------------------------------------------------
    def statistics(self) -> BatcherStats:
        """Return a frozen snapshot of the counters."""
        buffer, writer, loop = self._buffer, self._writer, self._loop
        return BatcherStats(
            state=self._state.value,
            events_emitted=buffer.emitted,
            events_batched=loop.events_batched,
            events_saved=loop.events_saved,
            batches_created=loop.batches_created,
            messages_stored=loop.messages_stored,
            events_stored=loop.events_stored,
            flushes=dict(loop.flushes),
            buffer_depth=len(buffer),
            buffer_high_water=buffer.high_water,
            buffer_capacity=buffer.room.max_events,
            rejected_full=buffer.room.rejected + self._refused_early,
            retries=writer.retries,
            failed_writes=writer.failed_writes,
            dead_lettered_batches=writer.dead_lettered,
            kept_on_disk=writer.on_disk,
            held_batches=writer.held_batches,
            dead_letter_error=writer.dead_letter_error,
            rejected_messages=writer.rejected,
            listener_errors=loop.listener_errors,
            batch_size=buffer.batch_size,
            batch_timeout_seconds=loop.batch_timeout,
            batching_enabled=self._config.batching_enabled,
            batch_size_histogram=loop.batch_hist.snapshot(),
            write_latency_histogram=writer.latency.snapshot(),
            events_superseded=loop.superseded,
            acks_waiting=self._tracker.waiting,
            breaker=None if writer.breaker is None else writer.breaker.statistics(),
        )

    def get_stats(self) -> dict[str, Any]:
        """Return :meth:`statistics` as a JSON-ready dict."""
        return self.statistics().as_dict()
