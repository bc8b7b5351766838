"""The last five minutes of throughput and latency, kept by the server for a dashboard just opened.

A page draws its charts from what it sees after it loads; without this, "the last five minutes"
would start empty on every load. :class:`StatsHistory` keeps one point a second in a ring of 300
(older points fall off: it is a window, not a log) and ``GET /api/history`` hands the ring over.

Each point says what happened in that second, the way the dashboard computes its own points: events
and messages handed to the hub (every node's, as a subscriber receives them), rows this node stored,
and the p50/p99 of delivery latency and the p99 of a commit from the difference of two cumulative
histograms (interpolated within a bucket, as Prometheus' ``histogram_quantile`` does).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import StoredMessage
from sse_batcher.batcher.stats import HistogramSnapshot
from sse_batcher.server._http import json_response

__all__ = ["HISTORY_SECONDS", "HistoryPoint", "Reading", "StatsHistory", "quantile", "stats_history"]

logger = logging.getLogger(__name__)

HISTORY_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Reading:
    """The cumulative figures one sample reads: this node's stored rows and two latency histograms."""

    messages_stored: int
    delivery: HistogramSnapshot
    commit: HistogramSnapshot


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One second: rates per second, and latencies in milliseconds (None: nothing to measure)."""

    ts: float
    events: float
    messages: float
    rows: float
    p50_ms: float | None
    p99_ms: float | None
    commit_p99_ms: float | None


def _delta(before: HistogramSnapshot, after: HistogramSnapshot) -> list[int] | None:
    if before.bounds != after.bounds:
        return None
    counts = [a - b for a, b in zip(after.counts, before.counts, strict=True)]
    return counts if all(c >= 0 for c in counts) else None


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of per-bucket ``counts`` (one more than ``bounds``: the overflow), or None.

    Above the last bound there is no upper edge, so the last bound is returned (a floor).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * max(0.0, min(1.0, (rank - seen) / count))
        seen += count
    return bounds[-1]


def _ms(bounds: Sequence[float], counts: list[int] | None, q: float) -> float | None:
    value = quantile(bounds, counts, q) if counts is not None else None
    return None if value is None else value * 1000


class StatsHistory:
    """One :class:`HistoryPoint` a second for the last ``seconds``; loop thread only."""

    def __init__(self, *, seconds: int = HISTORY_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self._points: deque[HistoryPoint] = deque(maxlen=seconds)
        self._clock = clock
        self._events = 0
        self._messages = 0
        self._previous: tuple[float, int, int, Reading] | None = None

    def observe(self, messages: Sequence[StoredMessage]) -> None:
        """Count messages on their way to the hub (wrap the follower's sink with :meth:`counting`)."""
        self._messages += len(messages)
        self._events += sum(m.event_count for m in messages)

    def counting(self, sink: Callable[[Sequence[StoredMessage]], None]) -> Callable[[Sequence[StoredMessage]], None]:
        """``sink``, counting what passes through it first."""

        def feed(messages: Sequence[StoredMessage]) -> None:
            self.observe(messages)
            sink(messages)

        return feed

    def sample(self, reading: Reading) -> HistoryPoint | None:
        """Close the interval since the previous sample with ``reading``; return its point (None the first time)."""
        now = self._clock()
        previous, self._previous = self._previous, (now, self._events, self._messages, reading)
        if previous is None or now <= previous[0]:
            return None
        then, events, messages, before = previous
        seconds = now - then
        delivery = _delta(before.delivery, reading.delivery)
        commit = _delta(before.commit, reading.commit)
        point = HistoryPoint(
            ts=now,
            events=(self._events - events) / seconds,
            messages=(self._messages - messages) / seconds,
            rows=max(0, reading.messages_stored - before.messages_stored) / seconds,
            p50_ms=_ms(reading.delivery.bounds, delivery, 0.5),
            p99_ms=_ms(reading.delivery.bounds, delivery, 0.99),
            commit_p99_ms=_ms(reading.commit.bounds, commit, 0.99),
        )
        self._points.append(point)
        return point

    def points(self) -> list[HistoryPoint]:
        """The ring, oldest first."""
        return list(self._points)

    async def run(self, read: Callable[[], Reading], interval_seconds: float = 1.0) -> None:
        """Sample ``read()`` every ``interval_seconds`` until cancelled; a failed read is logged and skipped."""
        while True:
            try:
                self.sample(read())
            except Exception:  # a figure that cannot be read now must not end the history for good
                logger.exception("could not sample the stats history")
            await anyio.sleep(interval_seconds)


async def stats_history(request: Request) -> Response:
    """GET /api/history: ``{"seconds": 300, "points": [...]}``, one point a second, oldest first.

    No points (rather than an error) while the app starts or stops: the charts then start empty.
    """
    runtime = getattr(request.app.state, "runtime", None)
    history: StatsHistory | None = getattr(runtime, "history", None)
    points = history.points() if history is not None else []
    body: dict[str, Any] = {"seconds": HISTORY_SECONDS, "points": [asdict(p) for p in points]}
    return json_response(body)
