"""SSEEventBatcher: emit from anywhere, flush in batches, store, then hand out in id order.

The shape is OpenTelemetry's BatchProcessor: ``emit()`` is an O(1) append under a lock that wakes
the flush loop only when there is something to decide; one loop task owns every store write, so
ids follow commit order and exactly one write is in flight. A batch is stored before it is handed
to listeners, so everything a client sees has a durable id.

When the store fails past its retries the batch goes to the dead-letter file, and so does every
later batch until the file has been written back, so order is kept while the stream is late.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ._writer import BatchWriter
from .aggregate import aggregate
from .breaker import CircuitBreaker
from .buffer import EventBuffer
from .config import BatcherConfig
from .deadletter import DeadLetterFile
from .errors import BatcherClosedError, BufferFullError, EventValidationError
from .events import NORMAL, NUL_ESCAPE, Message, StoredMessage, check_key, check_priority, check_source, check_type
from .events import encode_data as _encode_data
from .events import encode_json as _encode
from .protocols import EventStore
from .rules import AggregationRules
from .stats import BATCH_SIZE_BUCKETS, FLUSH_REASONS, BatcherStats, Histogram
from .subscription import Subscription

__all__ = ["FlushReport", "Listener", "SSEEventBatcher", "State"]

logger = logging.getLogger(__name__)

Listener = Callable[[Sequence[StoredMessage]], None]

# How many distinct types/sources the validation cache remembers; past this, validate each time,
# so a client sending endless new names costs CPU but never memory.
_NAME_CACHE_LIMIT = 4096


class State(enum.Enum):
    """Lifecycle of a batcher: NEW -> RUNNING -> CLOSING -> CLOSED."""

    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What one flush did; handed to flush observers (the sizing policy learns from these)."""

    reason: str
    events: int
    messages: int
    write_seconds: float
    stored: bool
    backlog: int


class SSEEventBatcher:
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
        self._unbatched = rules.unbatched_types()
        self._superseded = 0
        self._state = State.NEW
        # Unique per batcher: with an event's seq it makes the idempotency key of its message.
        self._origin = secrets.token_hex(8)
        self._buffer = EventBuffer(
            config.max_buffered_events, config.batch_size, self._wake, rules.windows(config.batch_timeout_seconds)
        )
        self._writer = BatchWriter(
            store,
            DeadLetterFile(config.data_dir / "deadletter"),
            max_retries=config.max_retries,
            retry_delay_seconds=config.retry_delay_seconds,
            breaker=breaker,
            deliver=self._deliver,
            on_drained=self._release_flush_waiters,
        )
        self._batch_timeout = config.batch_timeout_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake_event: asyncio.Event | None = None
        self._room = anyio.Event()
        self._stack: AsyncExitStack | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._loop_done = anyio.Event()
        self._closed = anyio.Event()
        self._listeners: list[Listener] = []
        self._subscriptions: set[Subscription] = set()
        self._flush_observers: list[Callable[[FlushReport], None]] = []
        self._flush_waiters: list[tuple[tuple[int, int], anyio.Event]] = []
        self._manual = False
        # Events stored or dead-lettered so far, (batched, bypass): flush() waits on these.
        self._handled = (0, 0)
        # Read on every emit, so kept as plain attributes rather than looked up through config.
        self._refusing = False
        self._default_source = config.default_source
        self._max_event_bytes = config.max_event_bytes
        self._batching = config.batching_enabled
        self._known_types: set[str] = set()
        self._known_sources: set[str] = set()
        self._flushes = dict.fromkeys(FLUSH_REASONS, 0)
        self._events_batched = 0
        self._events_saved = 0
        self._batches_created = 0
        self._messages_stored = 0
        self._events_stored = 0
        self._listener_errors = 0
        self._batch_hist = Histogram(BATCH_SIZE_BUCKETS)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

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
        self._loop = asyncio.get_running_loop()
        self._loop_thread = self._buffer.loop_thread = threading.get_ident()
        self._wake_event = asyncio.Event()
        await self._writer.load_pending()
        self._stack = AsyncExitStack()
        self._task_group = await self._stack.enter_async_context(anyio.create_task_group())
        self._state = State.RUNNING
        self._task_group.start_soon(self._run)

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
        if self._state is State.NEW:
            self._state = State.CLOSED
            self._refusing = True
            self._closed.set()
            return
        self._state = State.CLOSING
        self._refusing = True
        self._wake()
        limit = self._config.shutdown_timeout_seconds if timeout is None else timeout
        with anyio.move_on_after(limit):
            await self._loop_done.wait()
        stack, self._stack = self._stack, None
        try:
            if not self._loop_done.is_set():
                logger.warning("shutdown flush did not finish in %.1f s; dead-lettering the rest", limit)
                if self._task_group is not None:
                    self._task_group.cancel_scope.cancel()
            if stack is not None:
                await stack.aclose()
            await self._dead_letter_leftovers()
        finally:
            for sub in list(self._subscriptions):
                sub.close()
            self._state = State.CLOSED
            self._release_flush_waiters()
            self._closed.set()

    async def _dead_letter_leftovers(self) -> None:
        # After a hung store made shutdown run out of time: keep on disk what the loop still
        # held. A batch that was in flight may have committed; its idempotency key makes the
        # rewrite at the next start harmless.
        leftovers: list[list[Message]] = []
        if self._writer.inflight:
            leftovers.append(self._writer.inflight)
            self._writer.inflight = None
        bypass = self._buffer.take_bypass()
        if bypass:
            leftovers.append(aggregate(bypass, self._origin, self._rules))
        while len(self._buffer):
            leftovers.append(aggregate(self._buffer.take(len(self._buffer)), self._origin, self._rules))
        await self._writer.keep_on_disk(leftovers)

    async def __aenter__(self) -> SSEEventBatcher:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
    ) -> int:
        """Accept one event and return its seq. Safe from any thread; never blocks the loop.

        ``timeout`` lets a worker thread wait that long for room in a full buffer; on the event
        loop's own thread it is ignored, because waiting there would stall the flush that frees room.

        Raises:
            EventValidationError: a field broke its rule; nothing was accepted.
            BufferFullError: the buffer is full; nothing was accepted.
            BatcherClosedError: the batcher is closing or closed.
        """
        # The hot path (bench/emit.py): checks are inlined and names known to be valid are
        # cached, so a typical emit costs two set lookups, one JSON encode and one locked append.
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        if source is None:
            source = self._default_source
        try:  # _check_names's fast path, inlined: a method call per emit is measurable here
            known = type in self._known_types and source in self._known_sources
        except TypeError:
            known = False
        if not known:
            self._check_names(type, source)
        if priority != NORMAL:
            check_priority(priority)
        if key is not None:
            check_key(key)
        if data.__class__ is not dict:
            raw = _encode_data(data, self._max_event_bytes)
        else:
            try:
                raw = _encode(data)
            except (TypeError, ValueError, OverflowError, RecursionError):
                raw = _encode_data(data, self._max_event_bytes)  # raises the descriptive error
            if len(raw) > self._max_event_bytes or NUL_ESCAPE in raw:
                _encode_data(data, self._max_event_bytes)  # raises the descriptive error
        # Batching off (this worker, or everything) bypasses the buffer; a type the rules keep
        # unbatched still leaves at once, but in order with the events before it.
        return self._buffer.put(
            type, source, raw, priority, key, batched and self._batching, timeout, type in self._unbatched
        )

    def _check_names(self, type_: object, source: object) -> None:
        """Validate ``type_`` and ``source``; names seen valid before cost two set lookups.

        Raises:
            EventValidationError: either breaks its rule (an unhashable value included).
        """
        try:
            if type_ in self._known_types and source in self._known_sources:
                return
        except TypeError:  # unhashable (a list, say): not a name; the checks below say why
            pass
        check_type(type_)
        check_source(source)
        if len(self._known_types) < _NAME_CACHE_LIMIT:
            self._known_types.add(type_)  # type: ignore[arg-type]
        if len(self._known_sources) < _NAME_CACHE_LIMIT:
            self._known_sources.add(source)  # type: ignore[arg-type]

    async def aemit(
        self,
        type: str,
        data: dict[str, Any],
        *,
        source: str | None = None,
        priority: str = NORMAL,
        key: str | None = None,
        batched: bool = True,
    ) -> int:
        """Like :meth:`emit`, but wait (without blocking the loop) while the buffer is full.

        Raises:
            EventValidationError: a field broke its rule.
            BatcherClosedError: the batcher closed while waiting.
        """
        while True:
            room = self._room
            try:
                return self.emit(type, data, source=source, priority=priority, key=key, batched=batched)
            except BufferFullError:
                await room.wait()

    def emit_many(self, events: Sequence[dict[str, Any]], *, default_source: str | None = None) -> list[int]:
        """Accept a list of ``{"type", "data", "source"?, "priority"?, "key"?}`` all or nothing.

        Raises:
            EventValidationError: an event is invalid; ``index`` on the error names which.
            BufferFullError: they do not all fit; none was accepted.
            BatcherClosedError: the batcher is closing or closed.
        """
        if self._state is State.CLOSING or self._state is State.CLOSED:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        items: list[tuple[str, str, bytes, str, str | None, bool, bool]] = []
        batching = self._config.batching_enabled
        fallback = default_source or self._config.default_source
        for index, event in enumerate(events):
            try:
                if not isinstance(event, dict):
                    raise EventValidationError("event", "must be a JSON object")
                unknown = event.keys() - _EVENT_FIELDS
                if unknown:
                    raise EventValidationError(sorted(unknown)[0], "is not a known event field")
                if "type" not in event:
                    raise EventValidationError("type", "is required")
                if "data" not in event:
                    raise EventValidationError("data", "is required")
                # An explicit null means "not given", as it does for ``key`` and for emit(source=None).
                source = event.get("source")
                if source is None:
                    source = fallback
                priority = event.get("priority", NORMAL)
                key = event.get("key")
                raw = self._validate(event["type"], event["data"], source, priority, key)
            except EventValidationError as exc:
                exc.index = index  # type: ignore[attr-defined]
                raise
            items.append((event["type"], source, raw, priority, key, batching, event["type"] in self._unbatched))
        return self._buffer.put_many(items)

    def _validate(self, type_: object, data: object, source: object, priority: object, key: object) -> bytes:
        self._check_names(type_, source)
        if priority is not NORMAL:
            check_priority(priority)
        if key is not None:
            check_key(key)
        return _encode_data(data, self._config.max_event_bytes)

    def _wake(self) -> None:
        # Called from emitting threads; setting an asyncio.Event is only safe on its loop.
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

    # -- flushing ----------------------------------------------------------------------------
    async def flush(self, timeout: float | None = None) -> bool:
        """Store and hand out every event accepted before the call.

        While the store is down that includes writing the dead-letter file back. Returns True
        when all of them were stored; False when ``timeout`` passed first (they are then still
        buffered or on disk, never lost) or the batcher closed.
        """
        target = self._buffer.marks()
        if self._state is State.RUNNING and not self._flushed(target):
            done = anyio.Event()
            self._flush_waiters.append((target, done))
            self._manual = True
            self._wake()
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                await done.wait()
        return self._flushed(target)

    def _flushed(self, target: tuple[int, int]) -> bool:
        handled = self._handled
        return handled[0] >= target[0] and handled[1] >= target[1] and not self._writer.pending

    def set_batch_size(self, size: int) -> None:
        """Change the batch size (the sizing policy's lever)."""
        self._buffer.set_batch_size(max(1, int(size)))

    def set_batch_timeout(self, seconds: float) -> None:
        """Change the batch timeout, never above the configured one."""
        self._batch_timeout = min(max(seconds, 0.001), self._config.batch_timeout_seconds)
        self._wake()

    @property
    def batch_size(self) -> int:
        return self._buffer.batch_size

    @property
    def batch_timeout_seconds(self) -> float:
        return self._batch_timeout

    @property
    def backlog(self) -> int:
        """Events waiting in the buffer."""
        return len(self._buffer)

    async def _run(self) -> None:
        try:
            if self._writer.pending:
                await self._writer.drain()
            while True:
                reason = await self._next_reason()
                if reason is None:
                    break
                await self._flush_once(reason)
        finally:
            self._loop_done.set()

    def _due(self) -> str | None:
        buffer = self._buffer
        depth = len(buffer)
        if self._state is State.CLOSING:
            return "shutdown" if depth else None
        if not depth:
            if self._manual:
                self._manual = False
                self._release_flush_waiters()
            return None
        if buffer.bypass_waiting:
            return "bypass"
        if buffer.urgent:
            return "critical"
        if self._manual:
            return "manual"
        if depth >= buffer.batch_size:
            return "size"
        deadline = buffer.next_deadline(self._batch_timeout)
        if deadline is not None and time.time() >= deadline:
            return "timeout"
        return None

    async def _next_reason(self) -> str | None:
        wake = self._wake_event
        assert wake is not None  # set by start()
        while True:
            wake.clear()
            reason = self._due()
            if reason is not None:
                return reason
            if self._state is State.CLOSING:
                return None
            now = time.time()
            deadline = self._buffer.next_deadline(self._batch_timeout)
            delay = math.inf if deadline is None else deadline - now
            writer = self._writer
            if writer.pending:
                if now >= writer.retry_at:
                    await writer.drain()
                    continue
                delay = min(delay, writer.retry_at - now)
            with anyio.move_on_after(max(delay, 0.0)):
                await wake.wait()

    async def _flush_once(self, reason: str) -> None:
        buffer = self._buffer
        # Bypass events first, whatever the reason: they are the ones that must not wait.
        bypass = buffer.bypass_waiting
        events = buffer.take_bypass() if bypass else buffer.take(buffer.batch_size)
        room, self._room = self._room, anyio.Event()
        room.set()
        if reason == "manual" and len(buffer) == 0:
            self._manual = False
        if not events:
            return
        self._flushes[reason] += 1
        self._batch_hist.observe(len(events))
        messages = aggregate(events, self._origin, self._rules)
        for message in messages:
            if message.event_count > 1:
                self._events_batched += message.event_count
                self._batches_created += 1
        self._events_saved += len(events) - len(messages)
        if not self._rules.plain:  # key coalescing drops superseded events; count them
            self._superseded += len(events) - sum(m.event_count for m in messages)
        started = time.perf_counter()
        stored = await self._writer.write(messages, closing=self._state is State.CLOSING)
        elapsed = time.perf_counter() - started
        normal, bypassed = self._handled
        self._handled = (normal, bypassed + len(events)) if bypass else (normal + len(events), bypassed)
        self._release_flush_waiters()
        report = FlushReport(reason, len(events), len(messages), elapsed, stored, len(buffer))
        for observer in self._flush_observers:
            try:
                observer(report)
            except Exception:
                self._listener_errors += 1
                logger.exception("flush observer %r failed", observer)

    def _release_flush_waiters(self) -> None:
        if not self._flush_waiters:
            return
        closed = self._state is State.CLOSED
        keep = []
        for target, done in self._flush_waiters:
            if closed or self._flushed(target):
                done.set()
            else:
                keep.append((target, done))
        self._flush_waiters = keep

    # -- handing out -------------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(messages)`` on the loop after each commit, in id order.

        The listener must not block: it runs on the flush path. Returns a function that removes it.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def subscribe(self, queue_size: int | None = None) -> Subscription:
        """Return an async iterator of stored messages, in id order, from now on.

        A subscriber that falls ``queue_size`` messages behind is closed with ``lagged`` set,
        rather than stall the flush; it can catch up from the store with ``replay``.
        """
        sub = Subscription(queue_size or self._config.subscriber_queue_size, self._subscriptions.discard)
        if self._state is State.CLOSED:
            sub.close()
        else:
            self._subscriptions.add(sub)
        return sub

    def add_flush_observer(self, observer: Callable[[FlushReport], None]) -> None:
        """Call ``observer(report)`` after every flush (the sizing policy uses this)."""
        self._flush_observers.append(observer)

    def _deliver(self, stored: list[StoredMessage]) -> None:
        self._messages_stored += len(stored)
        self._events_stored += sum(m.event_count for m in stored)
        for listener in list(self._listeners):
            try:
                listener(stored)
            except Exception:
                self._listener_errors += 1
                logger.exception("listener %r failed", listener)
        for sub in list(self._subscriptions):
            sub.offer(stored)

    # -- statistics --------------------------------------------------------------------------
    def statistics(self) -> BatcherStats:
        """Return a frozen snapshot of the counters."""
        buffer, writer = self._buffer, self._writer
        return BatcherStats(
            state=self._state.value,
            events_emitted=buffer.emitted,
            events_batched=self._events_batched,
            events_saved=self._events_saved,
            batches_created=self._batches_created,
            messages_stored=self._messages_stored,
            events_stored=self._events_stored,
            flushes=dict(self._flushes),
            buffer_depth=len(buffer),
            buffer_high_water=buffer.high_water,
            buffer_capacity=buffer.capacity,
            rejected_full=buffer.rejected_full,
            retries=writer.retries,
            failed_writes=writer.failed_writes,
            dead_lettered_batches=writer.dead_lettered,
            dead_letter_pending=writer.pending,
            rejected_messages=writer.rejected,
            listener_errors=self._listener_errors,
            batch_size=buffer.batch_size,
            batch_timeout_seconds=self._batch_timeout,
            batching_enabled=self._config.batching_enabled,
            batch_size_histogram=self._batch_hist.snapshot(),
            write_latency_histogram=writer.latency.snapshot(),
            events_superseded=self._superseded,
            breaker=None if writer.breaker is None else writer.breaker.statistics(),
        )

    def get_stats(self) -> dict[str, Any]:
        """Return :meth:`statistics` as a JSON-ready dict."""
        return self.statistics().as_dict()


_EVENT_FIELDS = frozenset({"type", "data", "source", "priority", "key"})
