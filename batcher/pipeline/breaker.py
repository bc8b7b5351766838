"""A circuit breaker in front of the store, so a dead PostgreSQL costs nothing per batch.

Without it every batch waits out its retries (and each retry may wait out the store timeout)
before it reaches the dead-letter file; while the store is down that is seconds per batch, and
the buffer backs up behind it. After ``failures`` consecutive failed writes the breaker opens:
batches go straight to the dead-letter file. After ``reset_seconds`` it lets exactly one write
through (half-open) as a probe; its outcome closes the breaker or opens it for another period::

    CLOSED --N failures--> OPEN --reset_seconds--> HALF_OPEN --success--> CLOSED
                             ^                        |
                             +-------failure----------+

The breaker holds no task and no lock: the batcher's single flush loop is its only caller.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable

from sse_batcher import constants
from sse_batcher.batcher.config import require_positive
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.stats import BreakerStats

__all__ = ["BreakerState", "CircuitBreaker"]

logger = logging.getLogger(__name__)


class BreakerState(enum.Enum):
    """Whether writes reach the store: CLOSED yes, OPEN no, HALF_OPEN one probe."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Count consecutive store failures; past ``failures`` of them, stop writing for ``reset_seconds``.

    Raises:
        ConfigError: ``failures`` < 1 or ``reset_seconds`` <= 0.
    """

    def __init__(
        self,
        failures: int | None = None,
        reset_seconds: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # None: the setting's value, read now rather than at import (constants are read on use).
        failures = constants.SSE_BREAKER_FAILURES if failures is None else failures
        reset_seconds = constants.SSE_BREAKER_RESET_SECONDS if reset_seconds is None else reset_seconds
        if failures < 1:
            raise ConfigError(f"failures must be >= 1, got {failures!r}")
        require_positive("reset_seconds", reset_seconds)
        self._threshold = failures
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self._transitions = 0
        self._opened = 0
        self._short_circuited = 0
        self._probes = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def probing(self) -> bool:
        """True while the one write allowed in HALF_OPEN is under way; it gets no retries."""
        return self._state is BreakerState.HALF_OPEN

    def allow(self) -> bool:
        """Return whether a write may go to the store now; counts the writes it turns away.

        In OPEN, the first call after ``reset_seconds`` moves to HALF_OPEN and returns True: that
        write is the probe, and the caller must report its outcome. A probe never reported (its
        write was cancelled) is replaced after another ``reset_seconds``, so the breaker cannot
        stay half-open forever.
        """
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now - self._opened_at >= self._reset_seconds:
                self._move(BreakerState.HALF_OPEN)
                self._start_probe(now)
                return True
        elif self._probe_started is not None and now - self._probe_started >= self._reset_seconds:
            self._start_probe(now)
            return True
        self._short_circuited += 1
        return False

    def record_success(self) -> None:
        """A write reached the store: close (from HALF_OPEN) and forget earlier failures."""
        self._consecutive = 0
        self._probe_started = None
        if self._state is not BreakerState.CLOSED:
            logger.info("store answered again; circuit breaker closed")
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A write failed: open after ``failures`` in a row, or at once when it was the probe."""
        self._consecutive += 1
        self._probe_started = None
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self._consecutive >= self._threshold
        ):
            logger.warning(
                "store failed %d writes in a row; circuit breaker open for %.1f s",
                self._consecutive,
                self._reset_seconds,
            )
            self._opened_at = self._clock()
            self._opened += 1
            self._move(BreakerState.OPEN)

    def seconds_until_probe(self) -> float:
        """How long until a write will be let through again (0 when it would be now)."""
        if self._state is BreakerState.CLOSED:
            return 0.0
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._reset_seconds - self._clock())
        if self._probe_started is None:
            return 0.0
        return max(0.0, self._probe_started + self._reset_seconds - self._clock())

    def statistics(self) -> BreakerStats:
        """Return a frozen snapshot of the state and the counters."""
        return BreakerStats(
            state=self._state.value,
            transitions=self._transitions,
            opened=self._opened,
            consecutive_failures=self._consecutive,
            short_circuited=self._short_circuited,
            probes=self._probes,
            failure_threshold=self._threshold,
            reset_seconds=self._reset_seconds,
            seconds_until_probe=None if self._state is BreakerState.CLOSED else self.seconds_until_probe(),
        )

    def _start_probe(self, now: float) -> None:
        self._probe_started = now
        self._probes += 1

    def _move(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self._transitions += 1
