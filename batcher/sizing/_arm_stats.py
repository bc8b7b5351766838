"""What the live A/B measures: each arm's share, sources, counts, age of events at commit, store latency.

Per arm, an :class:`ArmMeter` counts the sources routed to it (up to a bound) and, as a listener
of that arm's batcher, samples the age of each event at commit (from the ``ts`` in the committed
payloads, a bounded sample of the latest ages); /api/stats ``ab`` shows the result as
:class:`ArmStats`. :func:`summed_stats` adds both arms' counters into the one
:class:`~sse_batcher.batcher.stats.BatcherStats` the split reports as a batcher. Apart from
``split.py`` so that module holds the routing alone; ``ArmStats`` is re-exported there.
"""

from __future__ import annotations

import statistics as stats_
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import msgspec

from sse_batcher.batcher.events import StoredMessage
from sse_batcher.batcher.stats import BatcherStats, HistogramSnapshot

__all__ = ["ArmMeter", "ArmStats", "CommitAges", "histogram_quantile_ms", "summed_stats"]

_AGE_SAMPLES = 4096
# Sources remembered per arm at most: enough to count a real deployment's workers, bounded against
# a client that invents a source per event.
_MAX_SOURCES = 100_000


class _Ts(msgspec.Struct):
    ts: float | None = None


class _Payload(msgspec.Struct):
    ts: float | None = None
    events: list[_Ts] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmStats:
    """One arm of the A/B, as /api/stats ``ab.arms[i]`` (its ``strategy`` is added by the server)."""

    share: float
    sources: int
    events: int
    messages: int
    rows: int
    p50_ms: float | None
    p99_ms: float | None
    store_latency_p99_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class CommitAges:
    """The latest ages at commit of one arm's events (a bounded sample), fed by a batcher listener."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ages: deque[float] = deque(maxlen=_AGE_SAMPLES)
        self._decoder = msgspec.json.Decoder(_Payload)

    def __call__(self, messages: Sequence[StoredMessage]) -> None:
        now = self._clock()
        for message in messages[-64:]:  # the newest messages of a commit are a fair sample of it
            try:
                payload = self._decoder.decode(message.payload)
            except msgspec.ValidationError:
                continue
            stamps = [e.ts for e in payload.events] if payload.events else [payload.ts]
            self._ages.extend(now - ts for ts in stamps if ts is not None)

    def quantile_ms(self, q: float) -> float | None:
        ages = list(self._ages)
        if len(ages) < 2:
            return round(ages[0] * 1000, 2) if ages else None
        return round(stats_.quantiles(ages, n=100, method="inclusive")[round(q * 100) - 1] * 1000, 2)


class ArmMeter:
    """What the split measures of one arm: the sources routed to it and, as its listener, the commit ages."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.ages = CommitAges(clock)
        self._sources: set[str] = set()

    def saw(self, source: str) -> None:
        """Count ``source`` as routed to this arm."""
        if len(self._sources) < _MAX_SOURCES:
            self._sources.add(source)

    def stats(self, share: float, batcher: BatcherStats) -> ArmStats:
        """This arm's figures, with the counters of its batcher."""
        return ArmStats(
            share=share,
            sources=len(self._sources),
            events=batcher.events_stored,
            messages=batcher.messages_stored,
            rows=batcher.messages_stored,
            p50_ms=self.ages.quantile_ms(0.50),
            p99_ms=self.ages.quantile_ms(0.99),
            store_latency_p99_ms=histogram_quantile_ms(batcher.write_latency_histogram, 0.99),
        )


def summed_stats(a: BatcherStats, b: BatcherStats) -> BatcherStats:
    """Both arms' counters added up; size, timeout, capacity, state and breaker are arm A's.

    A flag is true when either arm's is (``kept_on_disk`` in arm B is as real as in arm A), and an
    error is either arm's (arm A's first).
    """
    merged: dict[str, Any] = {}
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, bool):
            merged[f.name] = x or y
        elif f.name in ("batch_size", "batch_timeout_seconds", "buffer_capacity"):
            merged[f.name] = x
        elif f.name == "dead_letter_error":
            merged[f.name] = x if x is not None else y
        elif isinstance(x, int):
            merged[f.name] = x + y
        elif isinstance(x, HistogramSnapshot):
            counts = tuple(p + q for p, q in zip(x.counts, y.counts, strict=True))
            merged[f.name] = HistogramSnapshot(x.bounds, counts, x.total + y.total, x.count + y.count)
        elif f.name == "flushes":
            merged[f.name] = {k: x.get(k, 0) + y.get(k, 0) for k in {**x, **y}}
        else:
            merged[f.name] = x
    return BatcherStats(**merged)


def histogram_quantile_ms(h: HistogramSnapshot, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None when empty or in the overflow)."""
    if h.count == 0:
        return None
    rank, seen = q * h.count, 0
    for bound, count in zip(h.bounds, h.counts, strict=False):
        seen += count
        if seen >= rank:
            return bound * 1000
    return None
