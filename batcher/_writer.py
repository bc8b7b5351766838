"""BatchWriter: get each batch into the store or, failing that, onto disk; in order, never twice.

The flush loop hands every batch here. A write is retried with jittered backoff; a batch that still
fails is appended (fsync'ed) to the dead-letter file, and so is every later batch until the file has
been written back, so order is kept while the store is down. The circuit breaker, when given,
short-cuts the retries while the store is known to be down. Idempotency keys make every rewrite
(a retry after a lost COMMIT answer, a write-back after a crash) harmless.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import anyio

from .breaker import BreakerState, CircuitBreaker
from .deadletter import DeadLetterFile
from .errors import StoreError
from .events import Message, StoredMessage
from .protocols import EventStore, WriteResult
from .stats import LATENCY_BUCKETS, Histogram

__all__ = ["BatchWriter"]

logger = logging.getLogger(__name__)

# The dead-letter file is retried at most this often while the store stays down.
_DEADLETTER_RETRY_MAX_SECONDS = 5.0


class BatchWriter:
    """Store batches through ``store``, hand what committed to ``deliver``, dead-letter the rest.

    Used by one task at a time (the flush loop), so it needs no lock.
    """

    def __init__(
        self,
        store: EventStore,
        deadletter: DeadLetterFile,
        *,
        max_retries: int,
        retry_delay_seconds: float,
        breaker: CircuitBreaker | None,
        deliver: Callable[[list[StoredMessage]], None],
        on_drained: Callable[[], None],
    ) -> None:
        self._store = store
        self._deadletter = deadletter
        self._max_retries = max_retries
        self._retry_delay = retry_delay_seconds
        self._breaker = breaker
        self._deliver = deliver
        self._on_drained = on_drained
        # Kept until handled: if shutdown cancels the write, the batch is dead-lettered, not lost.
        self.inflight: list[Message] | None = None
        self.pending = False  # batches wait in the dead-letter file
        self.retry_at = 0.0  # when to try writing the file back next (time.time())
        self._written = 0  # batches of the file already stored by this process
        self._delay = retry_delay_seconds or 0.1
        self.retries = 0
        self.failed_writes = 0
        self.dead_lettered = 0
        self.rejected = 0
        self.latency = Histogram(LATENCY_BUCKETS)

    @property
    def breaker(self) -> CircuitBreaker | None:
        return self._breaker

    async def load_pending(self) -> None:
        """Notice a dead-letter file left by an earlier run, so it is written back first."""
        self.pending = await anyio.to_thread.run_sync(self._deadletter.pending_batches) > 0

    async def write(self, messages: list[Message], *, closing: bool = False) -> bool:
        """Store ``messages`` and hand them out, or dead-letter them; True when stored.

        ``closing`` (shutdown) allows one attempt only: what fails goes to disk, not lost.
        """
        if self.pending and not await self.drain():
            await self._dead_letter(messages)
            return False
        self.inflight = messages
        result = await self._write_with_retries(messages, closing)
        if result is None:
            await self._dead_letter(messages)
        else:
            await self._handle_result(result)
        self.inflight = None
        return result is not None

    async def _write_with_retries(self, messages: list[Message], closing: bool) -> WriteResult | None:
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            return None  # breaker open: straight to the dead-letter file, no waiting on retries
        # The breaker's probe, like shutdown, gets one attempt.
        attempts = 1 if closing or (breaker is not None and breaker.probing) else self._max_retries + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                result = await self._store.write(messages)
            except StoreError as exc:
                self.failed_writes += 1
                logger.warning("store write failed (attempt %d of %d): %s", attempt + 1, attempts, exc)
            except Exception:
                # Not a store error we know: still never lose the batch. Counted and logged here,
                # at the task boundary.
                self.failed_writes += 1
                logger.exception("store write raised unexpectedly (attempt %d of %d)", attempt + 1, attempts)
            else:
                self.latency.observe(time.perf_counter() - started)
                if breaker is not None:
                    breaker.record_success()
                return result
            if breaker is not None:
                breaker.record_failure()
                if breaker.state is BreakerState.OPEN:
                    return None
            if attempt + 1 < attempts:
                self.retries += 1
                delay = self._retry_delay * (2**attempt)
                await anyio.sleep(delay * random.uniform(0.5, 1.5))
        return None

    async def _handle_result(self, result: WriteResult) -> None:
        if result.rejected:
            self.rejected += len(result.rejected)
            for item in result.rejected:
                logger.error("store refused message %s (%s): %s", item.message.idem_key, item.message.type, item.reason)
            await anyio.to_thread.run_sync(self._deadletter.quarantine, result.rejected)
        if result.stored:
            self._deliver(result.stored)

    async def _dead_letter(self, messages: list[Message]) -> None:
        await anyio.to_thread.run_sync(self._deadletter.append, messages)
        self.dead_lettered += 1
        if not self.pending:
            self.pending = True
            self._delay = self._retry_delay or 0.1
            self.retry_at = time.time() + self._delay

    async def keep_on_disk(self, batches: list[list[Message]]) -> None:
        """Append ``batches`` to the dead-letter file even while being cancelled (shutdown ran out of time)."""
        for batch in batches:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._deadletter.append, batch)
            self.dead_lettered += 1

    async def drain(self) -> bool:
        """Write the dead-letter file back in order; True when it is empty afterwards."""
        breaker = self._breaker
        if breaker is not None and not breaker.allow():
            # Open: do not touch the store; come back when the breaker lets a probe through.
            self.retry_at = time.time() + max(breaker.seconds_until_probe(), 0.01)
            return False
        batches = await anyio.to_thread.run_sync(self._deadletter.batches)
        for batch in batches[self._written :]:
            try:
                result = await self._store.write(batch)
            except Exception as exc:
                if breaker is not None:
                    breaker.record_failure()
                self.failed_writes += 1
                logger.warning("dead-letter write-back failed, will retry: %s", exc)
                self._delay = min(self._delay * 2, _DEADLETTER_RETRY_MAX_SECONDS)
                self.retry_at = time.time() + self._delay
                return False
            if breaker is not None:
                breaker.record_success()
            self._written += 1
            await self._handle_result(result)
        await anyio.to_thread.run_sync(self._deadletter.clear)
        self._written = 0
        self.pending = False
        self._on_drained()
        return True
