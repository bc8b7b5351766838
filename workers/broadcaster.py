"""SSEBroadcaster: one worker's handle on the batcher, with its name, batching switch and counts.

A worker never talks to the batcher directly: the broadcaster stamps every event with the
worker's name as ``source``, applies its ``use_batching`` choice, and picks the right way to wait
when the buffer is full (a worker thread waits up to ``emit_timeout_seconds``, a coroutine awaits
room without blocking the loop). Counting here, rather than in the batcher, is what lets the
dashboard show events and errors per worker.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio

from sse_batcher import constants
from sse_batcher.batcher import NORMAL, BatcherError, BufferFullError, EventBatcher
from sse_batcher.batcher.events import check_source

__all__ = ["BroadcastStats", "SSEBroadcaster"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BroadcastStats:
    """What one broadcaster emitted, plus the batcher-wide batching figures.

    ``use_batching`` is the effective setting: False when the worker asked for no batching or when
    batching is off for the whole batcher (SSE_BATCHING_ENABLED=false).
    """

    worker_name: str
    use_batching: bool
    events_emitted: int
    events_by_type: dict[str, int] = field(default_factory=dict)
    emit_errors: int
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    batcher_events_batched: int
    batcher_events_saved: int
    batcher_batches_created: int

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class SSEBroadcaster:
    """Emit events on behalf of one worker, from any thread or coroutine.

    With ``use_batching=False`` every event bypasses aggregation: it is stored and broadcast on its
    own, immediately, and still takes its place in the global id order.

    Raises:
        EventValidationError: ``worker_name`` is not a valid source (letters, digits, ``-_.``).
        ValueError: ``emit_timeout_seconds`` is negative.
    """

    def __init__(
        self,
        batcher: EventBatcher,
        worker_name: str,
        use_batching: bool = True,
        emit_timeout_seconds: float | None = None,
    ) -> None:
        if emit_timeout_seconds is None:  # the setting's value, read on use
            emit_timeout_seconds = constants.SSE_EMIT_TIMEOUT_SECONDS
        # Checked here so a bad name fails at construction, not at the first event of a job.
        check_source(worker_name)
        if emit_timeout_seconds < 0:
            raise ValueError(f"emit_timeout_seconds must be >= 0, got {emit_timeout_seconds!r}")
        self._batcher = batcher
        self._name = worker_name
        self._use_batching = use_batching
        self._emit_timeout = emit_timeout_seconds
        # Worker threads emit concurrently; a Counter update is not atomic, so one lock guards all.
        self._lock = threading.Lock()
        self._by_type: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._emitted = 0

    @property
    def worker_name(self) -> str:
        return self._name

    @property
    def use_batching(self) -> bool:
        """The worker's own choice (the batcher may still have batching off for everything)."""
        return self._use_batching

    @property
    def batcher(self) -> EventBatcher:
        return self._batcher

    @property
    def events_emitted(self) -> int:
        """Events accepted so far (cheaper than :meth:`statistics`)."""
        return self._emitted

    @property
    def emit_errors(self) -> int:
        """Events that could not be accepted so far."""
        with self._lock:
            return sum(self._errors.values())

    def emit(self, type: str, data: dict[str, Any], *, priority: str = NORMAL, key: str | None = None) -> int:
        """Emit one event as this worker and return its seq. Safe from any thread.

        On a worker thread a full buffer is waited on for up to ``emit_timeout_seconds``; on the
        event loop's thread it fails at once (waiting there would stall the flush that frees room).

        Raises:
            BufferFullError: still no room after the timeout; nothing was accepted.
            BatcherClosedError: the batcher is closing or closed.
            EventValidationError: a field broke its rule.
        """
        try:
            seq = self._batcher.emit(
                type,
                data,
                source=self._name,
                priority=priority,
                key=key,
                batched=self._use_batching,
                timeout=self._emit_timeout,
            )
        except BatcherError as exc:
            self._count_error(exc)
            raise
        self._count_emitted(type)
        return seq

    async def aemit(self, type: str, data: dict[str, Any], *, priority: str = NORMAL, key: str | None = None) -> int:
        """Emit one event as this worker from a coroutine, awaiting room in a full buffer.

        Raises:
            BufferFullError: no room within ``emit_timeout_seconds``; nothing was accepted.
            BatcherClosedError: the batcher is closing or closed.
            EventValidationError: a field broke its rule.
        """
        try:
            with anyio.fail_after(self._emit_timeout):
                seq = await self._batcher.aemit(
                    type, data, source=self._name, priority=priority, key=key, batched=self._use_batching
                )
        except TimeoutError:
            error = BufferFullError(f"buffer still full after waiting {self._emit_timeout:g} s; retry later")
            self._count_error(error)
            raise error from None
        except BatcherError as exc:
            self._count_error(exc)
            raise
        self._count_emitted(type)
        return seq

    def _count_emitted(self, type: str) -> None:
        with self._lock:
            self._by_type[type] += 1
            self._emitted += 1

    def _count_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors[type(exc).__name__] += 1

    def statistics(self) -> BroadcastStats:
        """Return a frozen snapshot of this worker's counts and the batcher's batching figures."""
        batcher = self._batcher.statistics()
        with self._lock:
            by_type = dict(self._by_type)
            errors = dict(self._errors)
        return BroadcastStats(
            worker_name=self._name,
            use_batching=self._use_batching and batcher.batching_enabled,
            events_emitted=sum(by_type.values()),
            events_by_type=by_type,
            emit_errors=sum(errors.values()),
            errors_by_kind=errors,
            batcher_events_batched=batcher.events_batched,
            batcher_events_saved=batcher.events_saved,
            batcher_batches_created=batcher.batches_created,
        )

    def get_broadcast_stats(self) -> dict[str, Any]:
        """Return :meth:`statistics` as a JSON-ready dict (the API docs/guide.md shows)."""
        return self.statistics().as_dict()

    def __repr__(self) -> str:
        return f"<SSEBroadcaster {self._name!r} use_batching={self._use_batching}>"
