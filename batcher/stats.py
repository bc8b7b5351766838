"""Statistics snapshots: frozen, cheap to take, rendered as JSON or Prometheus by ``server/``."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BatcherStats", "BreakerStats", "FlushReason", "Histogram", "HistogramSnapshot"]

# Flush reasons, in the order the dashboard lists them.
FlushReason = str
FLUSH_REASONS: tuple[FlushReason, ...] = ("idle", "size", "timeout", "manual", "critical", "bypass", "shutdown")

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Cumulative-free bucket counts: ``counts[i]`` observations <= ``bounds[i]``, last is overflow."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float
    count: int


class Histogram:
    """A fixed-bucket histogram; observations come from the event loop thread only."""

    __slots__ = ("_bounds", "_counts", "_total", "_count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._total = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._total += value
        self._count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self._bounds, tuple(self._counts), self._total, self._count)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStats:
    """A snapshot of the breaker; ``transitions`` counts every state change since it was made."""

    state: str
    transitions: int
    opened: int
    consecutive_failures: int
    short_circuited: int
    probes: int
    failure_threshold: int
    reset_seconds: float
    seconds_until_probe: float | None

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatcherStats:
    """What the batcher did since it started.

    ``events_saved`` is the number of events that did not need a message of their own (an
    aggregate of 3 saves 2); ``events_batched`` counts events that travelled inside aggregates.
    ``dead_lettered_batches`` counts batches appended to the dead-letter file; ``kept_on_disk``
    is True while some of them wait there to be written back. ``held_batches`` counts batches held
    in memory because that file refused them (intake is refused meanwhile), and
    ``dead_letter_error`` names the file and its last error (None once it takes writes again).
    """

    state: str
    events_emitted: int
    events_batched: int
    events_saved: int
    batches_created: int
    messages_stored: int
    events_stored: int
    flushes: dict[str, int]
    buffer_depth: int
    buffer_high_water: int
    buffer_capacity: int
    rejected_full: int
    retries: int
    failed_writes: int
    dead_lettered_batches: int
    kept_on_disk: bool
    rejected_messages: int
    listener_errors: int
    batch_size: int
    batch_timeout_seconds: float
    batching_enabled: bool
    batch_size_histogram: HistogramSnapshot
    write_latency_histogram: HistogramSnapshot
    # Events dropped by key coalescing: only a rule with coalesce = "key" drops any.
    events_superseded: int = 0
    # Acknowledged events (emit(wait=True), POST ?wait=stored) whose commit is still awaited.
    acks_waiting: int = 0
    breaker: BreakerStats | None = None
    held_batches: int = 0
    dead_letter_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)
