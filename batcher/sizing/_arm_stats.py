"""What one arm of a live A/B measured: its counts, the age of its events at commit, its store latency.

Apart from ``split.py`` so that module holds the routing alone; ``ArmStats`` is re-exported there.
"""

from __future__ import annotations

import statistics as stats_
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import msgspec

from sse_batcher.batcher.events import StoredMessage
from sse_batcher.batcher.stats import HistogramSnapshot

__all__ = ["ArmStats", "CommitAges", "histogram_quantile_ms"]

_AGE_SAMPLES = 4096


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
