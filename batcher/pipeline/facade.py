"""SSEEventBatcher: the facade over intake, buffer, flush loop, writer and tracker.

The data flow, each hop one call in one direction::

    emit() -> intake (check, encode) -> buffer -> flush loop -> aggregate -> writer -> store
                                                      |-> tracker (flush() and acknowledged emits)
                                                      '-> listeners (the log follower's wake-up)

The shape is OpenTelemetry's BatchProcessor: ``emit()`` is an O(1) append under a lock that wakes
the flush loop only when there is something to decide; one loop task owns every store write, so ids
follow commit order and exactly one write is in flight. A batch is stored before it is handed on,
so everything a client sees has a durable id. This module holds the ways events enter; the parts
and their lifecycle are :class:`~sse_batcher.batcher.pipeline._core.BatcherCore` (``_core.py``),
and each hop lives in its own module (``intake.py``, ``buffer.py``, ``flush.py``, ``writer.py``,
``tracker.py``, and ``acks.py`` for the emits that wait until they are stored).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from sse_batcher.batcher.errors import BatcherClosedError, BatcherError, BufferFullError
from sse_batcher.batcher.events import NORMAL
from sse_batcher.batcher.lifecycle import State
from sse_batcher.batcher.pipeline._core import BatcherCore
from sse_batcher.batcher.pipeline.acks import put_and_block, put_and_wait
from sse_batcher.batcher.pipeline.flush import FlushReport
from sse_batcher.batcher.pipeline.intake import Item

__all__ = ["FlushReport", "SSEEventBatcher", "State"]


class SSEEventBatcher(BatcherCore):
    """Coalesce events into batches, store each batch in one transaction, hand it to listeners.

    Use as ``async with SSEEventBatcher(store, config) as batcher:`` or ``start()``/``aclose()``.
    ``emit()`` may be called from any thread, before or after ``start()``, until ``aclose()``.
    """

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
            BufferFullError: the buffer is full, or batches are held in memory because the store and
                the dead-letter file both refuse (raised at once then); nothing was accepted.
            BatcherClosedError: the batcher is closing or closed.
            AckTimeoutError: ``wait``: not committed in time (``kept`` says whether it is on disk).
            BatcherError: ``wait`` on the event loop's thread (it would block the flush it waits for).
        """
        if wait:
            if threading.get_ident() == self._buffer.loop_thread:
                raise BatcherError("emit(wait=True) would block the event loop; use await aemit(..., wait=True)")
            if self._refusing or self._writer.refusing:
                raise self._intake_refused()
            item = self._intake.item(type, data, source, priority, key, batched)
            return put_and_block(self._buffer, self._tracker, item, self._wait_limit(timeout))
        if self._refusing or self._writer.refusing:
            raise self._intake_refused()
        return self._buffer.put_item(self._intake.item(type, data, source, priority, key, batched), timeout)

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
            BatcherClosedError: the batcher is closing or closed, or closed while this waited for room.
            AckTimeoutError: ``wait``: not committed within ``timeout`` (default: the shutdown timeout).
        """
        if self._refusing:
            raise BatcherClosedError("batcher is closed; no more events are accepted")
        item = self._intake.item(type, data, source, priority, key, batched)
        buffer = self._buffer
        while True:
            try:
                if not wait:
                    return buffer.put_item(item)
                return (await self._put_and_wait([item], timeout))[0]
            except BufferFullError:
                await buffer.room.wait_async(1, len(item[2]))

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
        if self._refusing or self._writer.refusing:
            raise self._intake_refused()
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

    # -- in two steps, for a caller that must check several batchers before it applies to any ------
    def prepare_many(
        self, events: Sequence[dict[str, Any]], *, default_source: str | None = None, idempotency_key: str | None = None
    ) -> list[Item]:
        """Check events as :meth:`emit_many` would and that they fit now, accepting nothing.

        The split's first step: it applies the items (:meth:`emit_prepared`, :meth:`publish_prepared`)
        only once every arm has said yes.

        Raises:
            EventValidationError: an event is invalid (``index`` names which).
            BufferFullError: they do not all fit now.
            BatcherClosedError: the batcher is closing or closed.
        """
        if self._refusing or self._writer.refusing:
            raise self._intake_refused()
        items = self._intake.items(events, default_source, idempotency_key)
        room = self._buffer.capacity - len(self._buffer)
        if len(items) > room:
            self._refused_early += 1
            raise BufferFullError(f"{len(items)} events do not fit: room for {room} of {self._buffer.capacity}")
        return items

    def emit_prepared(self, items: list[Item]) -> list[int]:
        """Accept items from :meth:`prepare_many`, all or nothing, as :meth:`emit_many` does.

        Raises:
            BufferFullError: they no longer fit (another emitter took the room since); none was accepted.
            BatcherClosedError: the batcher is closing or closed.
        """
        if self._refusing or self._writer.refusing:
            raise self._intake_refused()
        return self._buffer.put_many(items)

    async def publish_prepared(self, items: list[Item], *, timeout: float | None = None) -> list[int]:
        """Accept items from :meth:`prepare_many` and wait until all are committed, as :meth:`publish` does.

        Raises:
            BufferFullError: they no longer fit; none was accepted.
            BatcherClosedError: the batcher is closing or closed.
            StoreRejectedError: PostgreSQL refused one of them.
            AckTimeoutError: not all committed within ``timeout`` (default: the shutdown timeout).
        """
        return await self._put_and_wait(items, timeout)

    async def _put_and_wait(self, items: list[Item], timeout: float | None) -> list[int]:
        if self._refusing or self._writer.refusing:
            raise self._intake_refused()
        return await put_and_wait(self._buffer, self._tracker, items, self._wait_limit(timeout))
