"""Limits on what one client may take: a publish rate, open streams per address, a stream's lifetime.

- :class:`RateLimiter` is a token bucket per key (a publish token, or a client address). A request is
  charged for all its events at once, before any is emitted, and refunded when it is refused later,
  so a request is never half-admitted. Buckets live in an insertion-ordered table where the least
  recently used comes first: a bucket idle long enough to have refilled is the same as no bucket, so
  it is dropped, and the table never holds more than ``max_keys`` (a client cycling addresses cannot
  grow it). The monotonic clock drives refills, so a wall-clock step changes nothing.
- :class:`ConnectionCounter` counts open streams per key; a key at zero holds no memory.
- :func:`stream_lifetime` gives a stream its time (the stream ends itself cleanly then), with jitter so
  that the reconnects of streams opened together spread out.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sse_batcher.batcher import ConfigError

__all__ = ["ConnectionCounter", "RateLimiter", "stream_lifetime"]

_T = TypeVar("_T")

# Enough distinct publishers for any real deployment, few enough to stay a few MB.
DEFAULT_MAX_KEYS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets of ``burst`` tokens refilling at ``rate`` per second, one per key.

    Raises:
        ConfigError: ``rate`` is not > 0, or ``burst`` < 1, or ``max_keys`` < 1.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)) or burst < 1 or max_keys < 1:
            raise ConfigError(f"a rate limit needs rate > 0, burst >= 1 and max_keys >= 1; got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """Keys with a bucket that is not full (the others were dropped)."""
        return len(self._buckets)

    def take(self, key: str, cost: int) -> float:
        """Charge ``cost`` tokens to ``key``; 0.0 when granted, else the seconds until it would be.

        A refused request is charged nothing. A ``cost`` over the burst can never be granted:
        the answer is ``math.inf``.
        """
        if cost <= 0:
            return 0.0
        if cost > self.burst:
            return math.inf
        now = self._clock()
        self._prune(now)
        bucket = self._buckets.get(key)
        tokens = self.burst if bucket is None else self._level(bucket, now)
        if tokens < cost:
            return (cost - tokens) / self.rate
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens, now)
            if len(self._buckets) > self._max_keys:
                # Forgetting the least recently used key hands it a full bucket again: a bounded
                # gift to a client that cycles through more keys than the table holds.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens = tokens - cost
        bucket.updated = now
        return 0.0

    def give_back(self, key: str, cost: int) -> None:
        """Refund ``cost`` tokens :meth:`take` charged to ``key`` for a request refused afterwards."""
        bucket = self._buckets.get(key)
        if bucket is not None and cost > 0:
            now = self._clock()
            bucket.tokens = min(self.burst, self._level(bucket, now) + cost)
            bucket.updated = now

    def _level(self, bucket: _Bucket, now: float) -> float:
        return min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)

    def _prune(self, now: float) -> None:
        # The table is in order of last use, so the full (idle) buckets are all at the front:
        # each call drops them in O(dropped).
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if self._level(bucket, now) < self.burst:
                return
            del self._buckets[key]


class ConnectionCounter:
    """Open streams per key, at most ``limit`` each (``None``: counted, never refused)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        """Keys with at least one open stream."""
        return len(self._open)

    def count(self, key: str) -> int:
        """Streams open for ``key``."""
        return self._open.get(key, 0)

    def acquire(self, key: str) -> Callable[[], None] | None:
        """Take a slot for ``key``: its release function (safe to call twice), or None when full."""
        held = self._open.get(key, 0)
        if self.limit is not None and held >= self.limit:
            return None
        self._open[key] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self._open[key] - 1
                if left:
                    self._open[key] = left
                else:
                    del self._open[key]

        return release


def stream_lifetime(
    max_seconds: float | None, expires_at: float | None = None, *, jitter: Callable[[], float] = random.random
) -> float | None:
    """Seconds a new stream may run: ``max_seconds`` plus up to 10% more, and never past ``expires_at``.

    ``expires_at`` is wall time (a stream token's expiry); None for either means no bound from it.
    """
    lifetime = None if max_seconds is None else max_seconds * (1 + 0.1 * jitter())
    if expires_at is not None:
        left = max(0.0, expires_at - time.time())
        lifetime = left if lifetime is None else min(lifetime, left)
    return lifetime
