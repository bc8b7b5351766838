"""SSEEventBatcher: the facade over intake, buffer, flush loop, writer and tracker.

The data flow, each hop one call in one direction::

    emit() -> intake (check, encode) -> buffer -> flush loop -> aggregate -> writer -> store
                                                      |-> tracker (flush() and acknowledged emits)
                                                      '-> listeners (the log follower's wake-up)

The shape is OpenTelemetry's BatchProcessor: ``emit()`` is an O(1) append under a lock that wakes
the flush loop only when there is something to decide; one loop task owns every store write, so ids
follow commit order and exactly one write is in flight. A batch is stored before it is handed on,
so everything a client sees has a durable id. This module holds the lifecycle and the public API;
each concept lives in its own module (``intake.py``, ``buffer.py``, ``flush.py``, ``_writer.py``,
``tracker.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import secrets
import threading
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.abc

from sse_batcher.batcher.config import BatcherConfig
from sse_batcher.batcher.errors import BatcherClosedError, BatcherError, BufferFullError
from sse_batcher.batcher.events import NORMAL, NUL_ESCAPE, check_key, check_priority
from sse_batcher.batcher.events import encode_json as _encode
from sse_batcher.batcher.lifecycle import Service, State
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.pipeline.breaker import CircuitBreaker
from sse_batcher.batcher.pipeline.buffer import EventBuffer
from sse_batcher.batcher.pipeline.flush import FlushLoop, FlushReport
from sse_batcher.batcher.pipeline.intake import Intake
from sse_batcher.batcher.pipeline.tracker import FlushTracker, timeout_error, wait_for_acks
from sse_batcher.batcher.pipeline.writer import BatchWriter
from sse_batcher.batcher.protocols import EventStore, Listener
from sse_batcher.batcher.rules.rules import AggregationRules
from sse_batcher.batcher.stats import BatcherStats

__all__ = ["FlushReport", "SSEEventBatcher", "State"]

logger = logging.getLogger(__name__)


class SSEEventBatcher(Service):
    """Coalesce events into batches, store each batch in one transaction, hand it to listeners.

    Use as ``async with SSEEventBatcher(store, config) as batcher:`` or ``start()``/``aclose()``.
    ``emit()`` may be called from any thread, before or after ``start()``, until ``aclose()``.
    """

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
        self._rules = rules = rules if rules is not None else AggregationRules()
        self._state = State.NEW
        # Unique per batcher: with an event's seq it makes the idempotency key of its message.
        self._origin = secrets.token_hex(8)
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
        self._tracker = FlushTracker()
        self._buffer = EventBuffer(
            config.max_buffered_events,
            config.batch_size,
            self._wake,
            rules.timeouts(config.batch_timeout_seconds),
        )
        self._loop = FlushLoop(
            self._buffer,
            self._writer,
            self._tracker,
            origin=self._origin,
            rules=rules,
            batch_timeout_seconds=config.batch_timeout_seconds,
        )
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closed = anyio.Event()
        self._event_loop: asyncio.AbstractEventLoop | None = None
        # Read on every emit, so kept as plain attributes rather than looked up through objects.
        self._refusing = False
        self._known_types = self._intake.known_types
        self._known_sources = self._intake.known_sources
        self._default_source = config.default_source
        self._max_event_bytes = config.max_event_bytes
        self._batching = config.batching_enabled
        self._unbatched = rules.unbatched_types()

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
        self._event_loop = asyncio.get_running_loop()
        self._loop.bind()
        await self._writer.load_pending()
        self._stack = AsyncExitStack()
        self._task_group = await self._stack.enter_async_context(anyio.create_task_group())
        self._state = State.RUNNING
        self._task_group.start_soon(self._loop.run)

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop intake, flush and store everything, close. Idempotent; never blocks forever.

        What cannot be stored within ``timeout`` (default: the configured shutdown timeout) is
        appended to the dead-letter file and written back at the next start.
        """
        if self._state is State.CLOSED:
            return
        if self._state is State.CLOSING:
            await self._closed.wait()
            return
        self._refusing = True
        if self._state is State.NEW:
            self._state = State.CLOSED
            self._closed.set()
            return
        self._state = State.CLOSING
        self._loop.closing = True
        self._wake()
        limit = self._config.shutdown_timeout_seconds if timeout is None else timeout
        with anyio.move_on_after(limit):
            await self._loop.done.wait()
        stack, self._stack = self._stack, None
        try:
            if not self._loop.done.is_set():
                logger.warning("shutdown flush did not finish in %.1f s; dead-lettering the rest", limit)
                if self._task_group is not None:
                    self._task_group.cancel_scope.cancel()
            if stack is not None:
                await stack.aclose()
            await self._dead_letter_leftovers()
        finally:
            self._state = State.CLOSED
            self._tracker.release_flush_waiters(self._writer.pending, closed=True)
            self._tracker.close()
            self._closed.set()

    async def _dead_letter_leftovers(self) -> None:
        # After a hung store made shutdown run out of time: keep on disk what the loop still
        # held. A batch that was in flight may have committed; its idempotency key makes the
        # rewrite at the next start harmless.
        leftovers = []
        inflight = self._writer.take_inflight()
        if inflight:
            leftovers.append(inflight)
        bypass = self._buffer.take_bypass()
        if bypass:
            leftovers.append(aggregate(bypass, self._origin, self._rules))
        while len(self._buffer):
            leftovers.append(aggregate(self._buffer.take(len(self._buffer)), self._origin, self._rules))
        await self._writer.keep_on_disk(leftovers)

    # -- emitting ----------------------------------------------------------------------------
    def emit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        timeout: float | None = None,
        wait: bool = False,
    ) -> int:
        """Accept one event and return its seq (with ``wait``, its message id). Safe from any thread.

        ``timeout`` lets a worker thread wait that long for room in a full buffer; on the event
        loop's own thread it is ignored, because waiting there would stall the flush that frees room.
        ``wait=True`` (worker threads only) blocks until the event is committed, up to ``timeout``
        (default: the shutdown timeout), and returns its message id.

        Raises:
            EventValidationError: a field broke its rule; nothing was accepted.
            BufferFullError: the buffer is full; nothing was accepted.
            BatcherClosedError: the batcher is closing or closed.
            AckTimeoutError: ``wait``: not committed in time (``kept`` says whether it is on disk).
            BatcherError: ``wait`` on the event loop's thread (it would block the flush it waits for).
        """
        if wait:
            return self._emit_and_wait(type, data, source, priority, key, batched, timeout)
        # The hot path (bench/emit.py): the name cache lookup is inlined, so a typical emit costs
        # two set lookups, one JSON encode and one locked append; every check lives in Intake.
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        if source is None:
            source = self._default_source
        try:
            known = type in self._known_types and source in self._known_sources
        except TypeError:
            known = False
        if not known:
            self._intake.check_names(type, source)
        if priority != NORMAL:
            check_priority(priority)
        if key is not None:
            check_key(key)
        raw = None
        if data.__class__ is dict:
            try:
                raw = _encode(data)
            except (TypeError, ValueError, OverflowError, RecursionError):
                raw = None
            else:
                if len(raw) > self._max_event_bytes or NUL_ESCAPE in raw:
                    raw = None
        if raw is None:
            raw = self._intake.encode(data)  # raises the descriptive error
        # Batching off (this worker, or everything) bypasses the buffer; a type the rules keep
        # unbatched still leaves at once, but in order with the events before it.
        return self._buffer.put(
            type, source, raw, priority, key, batched and self._batching, timeout, type in self._unbatched
        )

    def _emit_and_wait(
        self,
        type_: str,
        data: dict[str, Any],
        source: str | None,
        priority: str,
        key: str | None,
        batched: bool,
        timeout: float | None,
    ) -> int:
        if self._event_loop is not None and threading.get_ident() == self._buffer.loop_thread:
            raise BatcherError("emit(wait=True) would block the event loop; use await aemit(..., wait=True)")
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        source = self._default_source if source is None else source
        raw = self._intake.check(type_, data, source, priority, key)
        limit = self._wait_limit(timeout)
        acks, on_seq = self._tracker.expect([(source, type_)])
        self._buffer.put(
            type_, source, raw, priority, key, batched and self._batching, limit, type_ in self._unbatched, on_seq
        )
        try:
            return acks[0].future.result(limit)
        except (concurrent.futures.TimeoutError, BatcherClosedError):
            raise timeout_error(acks, limit) from None

    def _wait_limit(self, timeout: float | None) -> float:
        return self._config.shutdown_timeout_seconds if timeout is None else timeout

    async def aemit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
        wait: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Like :meth:`emit`, but wait (without blocking the loop) while the buffer is full.

        With ``wait=True`` it returns once the event is committed, with its message id.

        Raises:
            EventValidationError: a field broke its rule.
            BatcherClosedError: the batcher closed while waiting.
            AckTimeoutError: ``wait``: not committed within ``timeout`` (default: the shutdown timeout).
        """
        source = self._default_source if source is None else source
        while True:
            room = self._loop.room
            try:
                if not wait:
                    return self.emit(type, data, source=source, priority=priority, key=key, batched=batched)
                ids = await self._put_and_wait(
                    [(type, source, self._intake.check(type, data, source, priority, key), priority, key,
                      batched and self._batching, type in self._unbatched, None)],
                    timeout,
                )  # fmt: skip
                return ids[0]
            except BufferFullError:
                await room.wait()

    def emit_many(
        self,
        events: Sequence[dict[str, Any]],
        *,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]:
        """Accept a list of ``{"type", "data", "source"?, "priority"?, "key"?, "idempotency_key"?}``, all or nothing.

        An event with an idempotency key (its own, or ``<idempotency_key>#<index>`` from the request's)
        is stored at most once however often it is published, as long as its row is retained.

        Raises:
            EventValidationError: an event is invalid; ``index`` on the error names which.
            BufferFullError: they do not all fit; none was accepted.
            BatcherClosedError: the batcher is closing or closed.
        """
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        return self._buffer.put_many(self._intake.items(events, default_source, idempotency_key))

    async def publish(
        self,
        events: Sequence[dict[str, Any]],
        *,
        timeout: float | None = None,
        default_source: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[int]:
        """Accept events all or nothing, like :meth:`emit_many`, and return once all are committed.

        They ride in ordinary batches (no commit of their own); the caller pays in latency only.
        Returns their message ids, in order (events of one aggregate share its id). Published again
        with the same idempotency keys, it stores nothing and returns the same ids.

        Raises:
            EventValidationError: an event is invalid (``index`` names which); nothing was accepted.
            BufferFullError: they do not all fit; none was accepted.
            BatcherClosedError: the batcher is closing or closed.
            AckTimeoutError: not all committed within ``timeout`` (default: the shutdown timeout).
        """
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        return await self._put_and_wait(self._intake.items(events, default_source, idempotency_key), timeout)

    async def _put_and_wait(self, items: list[Any], timeout: float | None) -> list[int]:
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        acks, on_seq = self._tracker.expect([(item[1], item[0]) for item in items])
        self._buffer.put_many(items, on_seq)
        return await wait_for_acks(acks, self._wait_limit(timeout))

    def _wake(self) -> None:
        self._loop.wake()

    # -- flushing ----------------------------------------------------------------------------
    async def flush(self, timeout: float | None = None) -> bool:
        """Store and hand out every event accepted before the call.

        While the store is down that includes writing the dead-letter file back. Returns True
        when all of them were stored; False when ``timeout`` passed first (they are then still
        buffered or on disk, never lost) or the batcher closed.
        """
        target = self._buffer.marks()
        tracker, writer = self._tracker, self._writer
        if self._state is State.RUNNING and not tracker.reached(target, writer.pending):
            done = tracker.add_flush_waiter(target)
            self._loop.manual = True
            self._wake()
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await done.wait()
        return tracker.reached(target, writer.pending)

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
        """Call ``observer(report)`` after every flush (the sizing policy uses this)."""
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
            buffer_capacity=buffer.capacity,
            rejected_full=buffer.rejected_full,
            retries=writer.retries,
            failed_writes=writer.failed_writes,
            dead_lettered_batches=writer.dead_lettered,
            dead_letter_pending=writer.pending,
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
