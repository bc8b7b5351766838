"""Sizing strategies: named policies over (size, timeout, signals, now), testable and simulatable.

Every strategy sees the same inputs (:class:`Signals`: the load sample, the backlog, the store
write time and how full the flushes of the last period were) and returns the batch size and
timeout to use next; :class:`SizingStrategy` supplies what they share: the bounds, the cooldown
between two changes and the fallback to the configured size and timeout when the load monitor is
failing or stale (no cooldown for that one). Nor does a growth step wait for the cooldown while
a backlog (more than one batch) is waiting: a burst would otherwise drain at the old size.
``SSE_BATCH_STRATEGY`` picks one by name:

``fixed``
    The configured size and timeout, always.
``conservative``
    Latency first: the timeout stays at its floor, batches grow by a step only while they fill,
    never past a quarter of the maximum, and a backlog is cleared in eight flushes, not four.
``balanced``
    Between the two: the timeout is the geometric mean of its floor and the configured one (the
    floor when idle), batches grow by half while they fill and shrink by a quarter while mostly
    empty.
``aggressive``
    Throughput first: the configured timeout, batches double while they fill and never shrink for
    being empty (the timeout bounds the wait); a backlog is cleared in two flushes.
``adaptive`` (the default)
    :class:`AdaptiveStrategy`, load-driven AIMD, described on the class.
``learned``
    :class:`sse_batcher.batcher.sizing.learned.LearnedStrategy`, a bandit that learns from the server's own history.

All of them back off the same way when a write fails (size x ``decrease_factor``) or the store
misses ``latency_target_seconds`` (Gradient2's ratio of long-run to recent write time, clamped
to [0.5, ``decrease_factor``]); only ``fixed`` ignores both. How they compare: bench/strategies.py
(figures in bench/RESULTS.md, 'Named sizing strategies').
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.sizing._types import Decision, Signals, SizingConfig, Target, _Proposal
from sse_batcher.batcher.sizing.load import LoadSample

__all__ = [
    "AdaptiveStrategy",
    "AggressiveStrategy",
    "BalancedStrategy",
    "ConservativeStrategy",
    "Decision",
    "FixedStrategy",
    "Signals",
    "SizingConfig",
    "SizingStrategy",
    "Target",
]


class SizingStrategy:
    """What every strategy shares: bounds, cooldown, fallback; subclasses write :meth:`_target`.

    Its only state (learned's excepted) is the time of the last change.

    Raises:
        ConfigError: ``max_timeout_seconds`` is not positive.
    """

    name: ClassVar[str] = ""

    def __init__(self, config: SizingConfig, *, default_size: int, max_timeout_seconds: float) -> None:
        if not max_timeout_seconds > 0:
            raise ConfigError(f"max_timeout_seconds must be > 0, got {max_timeout_seconds!r}")
        self._config = config
        self._default_size = self._clamp(default_size)
        self._max_timeout = max_timeout_seconds
        self._min_timeout = min(config.min_timeout_seconds, max_timeout_seconds)
        self._last_change: float | None = None

    @property
    def config(self) -> SizingConfig:
        return self._config

    def ready(self, now: float) -> bool:
        """True when the cooldown since the last change has passed."""
        last = self._last_change
        return last is None or now - last >= self._config.cooldown_seconds

    @staticmethod
    def backlogged(size: int, backlog: int) -> bool:
        """True when more than one batch is waiting: growth then takes no cooldown."""
        return backlog > size

    def decide(self, size: int, timeout_seconds: float, signals: Signals, now: float) -> Decision | None:
        """Learn from the period that ended, then return the change to make now, or None."""
        self.learn(size, timeout_seconds, signals)
        new_size, new_timeout, reason = self.target(size, timeout_seconds, signals)
        if new_size == size and math.isclose(new_timeout, timeout_seconds, rel_tol=1e-9):
            return None
        growing_through_backlog = new_size > size and self.backlogged(size, signals.backlog)
        if reason != "fallback" and not growing_through_backlog and not self.ready(now):
            return None
        self._last_change = now
        return Decision(size=new_size, timeout_seconds=new_timeout, reason=reason, load=signals.load)

    def learn(self, size: int, timeout_seconds: float, signals: Signals) -> None:
        """Take in the period that ran under (size, timeout); only ``learned`` keeps anything."""

    def target(self, size: int, timeout: float, signals: Signals) -> Target:
        """Where the strategy would take (size, timeout), and which rule did; always within bounds."""
        load = signals.load
        if load is None:
            return self._default_size, self._max_timeout, "fallback"
        new_size, new_timeout, reason = self._target(size, timeout, signals, load)
        return self._clamp(new_size), max(self._min_timeout, min(self._max_timeout, new_timeout)), reason

    def _target(self, size: int, timeout: float, s: Signals, load: LoadSample) -> _Proposal:
        raise NotImplementedError

    def pinned_timeout(self) -> float | None:
        """The batch timeout a rule naming this strategy gets: its timeout when busy; None when it follows the load."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the strategy has learned, for /api/stats ``sizing.strategy_state``; empty by default."""
        return {}

    def _backoff(self, size: int, timeout: float, s: Signals) -> Target | None:
        """The shared back-off on a failed write or a missed store latency target, else None."""
        c = self._config
        if s.errors:
            return self._clamp(size * c.decrease_factor), timeout, "write_errors"
        short, long = s.write_seconds, s.long_write_seconds
        if short is not None and short > c.latency_target_seconds:
            gradient = max(0.5, min(1.0, long / short)) if long else 1.0
            return self._clamp(size * min(gradient, c.decrease_factor)), timeout, "latency"
        return None

    def _busy(self, load: LoadSample) -> bool:
        c = self._config
        return load.pressure >= c.high_load_percent or load.loop_lag_seconds >= c.high_loop_lag_seconds

    def _clamp(self, size: float) -> int:
        return max(self._config.min_size, min(self._config.max_size, int(size)))


class FixedStrategy(SizingStrategy):
    """The configured size and timeout, whatever happens: the baseline every other one is measured by."""

    name = "fixed"

    def _target(self, size: int, timeout: float, s: Signals, load: LoadSample) -> _Proposal:
        return self._default_size, self._max_timeout, "fixed"

    def pinned_timeout(self) -> float | None:
        return self._max_timeout


class AdaptiveStrategy(SizingStrategy):
    """Load-driven AIMD in the manner of Netflix's concurrency-limits, rules in order.

    For a fan-out server the cost of a batch is mostly fixed (one transaction, one encode, one
    write per client), so the batch grows under load and the timeout drops when idle:

    1. A write failed, or the store missed its latency target: the shared back-off.
    2. The backlog holds two batches or more: jump to a quarter of it (at least one step up), so it
       is cleared in about ``backlog_flushes`` writes.
    3. High load (CPU at or above the high threshold, or loop lag at or above its threshold):
       double the timeout toward the configured one, and grow by a step if batches fill.
    4. Batches fill (half or more of the flushes were triggered by size): grow by a step.
    5. Low load (CPU under the low threshold): the timeout drops to its floor; the size halves
       toward the minimum, but only while batches carry under a quarter of it, so a steady flow
       that fills the halved size does not make it oscillate.
    """

    name = "adaptive"

    def _target(self, size: int, timeout: float, s: Signals, load: LoadSample) -> _Proposal:
        c = self._config
        backoff = self._backoff(size, timeout, s)
        if backoff is not None:
            return backoff
        if s.backlog >= 2 * size:
            return max(size + c.increase_step, s.backlog / c.backlog_flushes), timeout, "backlog"
        saturated = s.flushes > 0 and 2 * s.full_flushes >= s.flushes
        if self._busy(load):
            return (size + c.increase_step if saturated else size), timeout * 2, "high_load"
        if saturated:
            return size + c.increase_step, timeout, "saturated"
        if load.pressure < c.low_load_percent:
            mostly_empty = s.flushes == 0 or 4 * s.events <= size * s.flushes
            return (size // 2 if mostly_empty else size), self._min_timeout, "idle"
        return size, timeout, "steady"


class _ProfileStrategy(SizingStrategy):
    """Fill-driven sizing shaped by a profile: how fast to grow and shrink, how far, which timeout.

    Rules in order: the shared back-off; a backlog of two batches or more jumps the size so it
    is cleared in ``backlog_flushes`` writes; batches at least half full grow the size by ``grow``
    (plus at least one step); batches under a quarter full shrink it by ``shrink``. The size never
    passes ``ceiling`` of the maximum; the timeout is :meth:`_timeout`.
    """

    grow: ClassVar[float] = 1.0
    shrink: ClassVar[float] = 1.0
    ceiling: ClassVar[float] = 1.0
    backlog_flushes: ClassVar[int] = 4

    def _target(self, size: int, timeout: float, s: Signals, load: LoadSample) -> _Proposal:
        c = self._config
        timeout = self._timeout(load)
        top = max(c.min_size, int(c.max_size * self.ceiling))
        backoff = self._backoff(size, timeout, s)
        if backoff is not None:
            return min(backoff[0], top), timeout, backoff[2]
        if s.backlog >= 2 * size:
            return min(top, max(size + c.increase_step, s.backlog / self.backlog_flushes)), timeout, "backlog"
        fill = s.events / (size * s.flushes) if s.flushes else 0.0
        if fill >= 0.5:
            return min(top, max(size + c.increase_step, size * self.grow)), timeout, "saturated"
        if fill < 0.25:
            return min(top, math.ceil(size * self.shrink)), timeout, "idle"
        return min(top, size), timeout, "steady"

    def _timeout(self, load: LoadSample) -> float:
        raise NotImplementedError


class ConservativeStrategy(_ProfileStrategy):
    """Latency first: the timeout at its floor, additive growth up to a quarter of the maximum."""

    name = "conservative"
    grow = 1.0  # the step alone
    shrink = 0.5
    ceiling = 0.25
    backlog_flushes = 8

    def _timeout(self, load: LoadSample) -> float:
        return self._min_timeout

    def pinned_timeout(self) -> float | None:
        return self._min_timeout


class BalancedStrategy(_ProfileStrategy):
    """Between the two: a middle timeout (the floor when idle), growth by half, shrinking by a quarter."""

    name = "balanced"
    grow = 1.5
    shrink = 0.75
    ceiling = 1.0
    backlog_flushes = 4

    def _middle(self) -> float:
        return math.sqrt(self._min_timeout * self._max_timeout)

    def _timeout(self, load: LoadSample) -> float:
        return self._min_timeout if load.pressure < self._config.low_load_percent else self._middle()

    def pinned_timeout(self) -> float | None:
        return self._middle()


class AggressiveStrategy(_ProfileStrategy):
    """Throughput first: the configured timeout, doubling while batches fill, never shrinking for emptiness."""

    name = "aggressive"
    grow = 2.0
    shrink = 1.0
    ceiling = 1.0
    backlog_flushes = 2

    def _timeout(self, load: LoadSample) -> float:
        return self._max_timeout

    def pinned_timeout(self) -> float | None:
        return self._max_timeout
