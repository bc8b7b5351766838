"""How old events are when the hub first hands them to a client: the latency people see.

An event's ``ts`` is set when the server accepted it (wall clock, like every ``ts`` on the wire), so
``now - ts`` at fan-out is everything between emit and the client's queue: the batch timeout, the
commit, the log follower's read. The hub reports each message once, the first time it hands the
message's bytes to any client, never once per client, so the cost does not grow with the audience.

Every original event counts once: an aggregate's inner events each add their own age (they were
emitted at different times and waited different lengths), so the percentiles are per event, the
same thing ``sse-batcher loadtest`` measures from its sampled clients.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec

from sse_batcher.batcher import StoredMessage
from sse_batcher.batcher.stats import Histogram, HistogramSnapshot

__all__ = ["DELIVERY_BUCKETS", "DeliveryLatency"]

# Seconds. Dense from 10 ms to 1 s, where a batch timeout (200 ms by default) puts most events:
# a percentile is interpolated inside its bucket, so a coarse bucket there would flatten the p99
# onto the bucket's edge. Finer than a millisecond is pointless (ts has millisecond resolution);
# the tail reaches a minute because a stalled follower or store shows up here.
DELIVERY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25,
    0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60,
)  # fmt: skip


class _Stamp(msgspec.Struct, gc=False):
    ts: float | None = None


class _Stamps(msgspec.Struct, gc=False):
    """Only what the age needs from a payload: msgspec skips every other field without building it."""

    ts: float | None = None
    events: list[_Stamp] | None = None


_DECODER = msgspec.json.Decoder(_Stamps)


class DeliveryLatency:
    """A fixed-bucket histogram of event ages at first hand-off to a client; loop thread only."""

    __slots__ = ("_histogram", "undated")

    def __init__(self, bounds: tuple[float, ...] = DELIVERY_BUCKETS) -> None:
        self._histogram = Histogram(bounds)
        # Payloads without a readable ts (not written by this server): counted, never guessed.
        self.undated = 0

    def observe(self, age_seconds: float) -> None:
        """Record one event ``age_seconds`` old; a negative age (clocks of two nodes) counts as 0."""
        self._histogram.observe(age_seconds if age_seconds > 0.0 else 0.0)

    def observe_messages(self, messages: Iterable[StoredMessage], now: float | None = None) -> None:
        """Record the age of every original event in ``messages``, as of ``now`` (default: the clock)."""
        if now is None:
            now = time.time()
        observe = self.observe
        for message in messages:
            try:
                stamps = _DECODER.decode(message.payload)
            except msgspec.DecodeError:
                self.undated += 1
                continue
            if stamps.events:
                for inner in stamps.events:
                    if inner.ts is None:
                        self.undated += 1
                    else:
                        observe(now - inner.ts)
            elif stamps.ts is not None:
                observe(now - stamps.ts)
            else:
                self.undated += 1

    def statistics(self) -> HistogramSnapshot:
        """Per-bucket counts (last is overflow), sum and count of every age recorded since start."""
        return self._histogram.snapshot()
