"""StoreRetries: one batch into the store, retried with jittered backoff, short-cut by the circuit breaker.

The writer (``writer.py``) decides where a batch goes when the store did not take it (the
dead-letter file, or held in memory); this module only tries the store, as many times as allowed,
and counts what it tried. The breaker, when given, short-cuts the retries while the store is known
to be down: an open breaker means no attempt at all, and its probe, like a write at shutdown, gets
one attempt only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from sse_batcher.batcher.errors import StoreError
from sse_batcher.batcher.events import Message
from sse_batcher.batcher.pipeline.breaker import BreakerState, CircuitBreaker
from sse_batcher.batcher.protocols import EventStore, WriteResult
from sse_batcher.batcher.stats import LATENCY_BUCKETS, Histogram

__all__ = ["StoreRetries"]

logger = logging.getLogger(__name__)


class StoreRetries:
    """Write batches to ``store``, retrying each up to ``max_retries`` times; count the attempts.

    Used by one task at a time (the writer's), so it needs no lock. ``sleep`` (``anyio.sleep``) and
    ``jitter`` (a factor in [0.5, 1.5)) are for tests.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        max_retries: int,
        retry_delay_seconds: float,
        breaker: CircuitBreaker | None,
        sleep: Callable[[float], Awaitable[None]],
        jitter: Callable[[], float],
    ) -> None:
        self.store = store
        self.breaker = breaker
        self._max_retries = max_retries
        self._retry_delay = retry_delay_seconds
        self._sleep = sleep
        self._jitter = jitter
        self.retries = 0
        self.failed_writes = 0
        self.latency = Histogram(LATENCY_BUCKETS)

    async def write(self, messages: list[Message], *, closing: bool) -> WriteResult | None:
        """The store's answer for ``messages``; None when every allowed attempt failed or the breaker is open.

        ``closing`` (shutdown) allows one attempt only.
        """
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            return None  # breaker open: straight to the dead-letter file, no waiting on retries
        # The breaker's probe, like shutdown, gets one attempt.
        attempts = 1 if closing or (breaker is not None and breaker.probing) else self._max_retries + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                result = await self.store.write(messages)
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
                await self._sleep(self._retry_delay * (2**attempt) * self._jitter())
        return None
