"""The sizing policy as a pure function of (size, timeout, signals, now): testable and simulatable.

Direction (issue 6, measured in bench/simulate_sizing.py and bench/adaptive.py): for a fan-out
server the cost of a batch is mostly fixed (one transaction, one encode, one write per client),
so the cost per event falls as batches grow. Under high load or a growing backlog the batch
grows so the server keeps up; when idle, nothing is gained by waiting, so the timeout drops to
its floor and a lone event leaves in milliseconds.

The controller is AIMD, as in Netflix's concurrency-limits, steered by signals the batcher
measures itself first and psutil second:

1. The monitor is failing or stale: go back to the configured size and timeout (no cooldown).
2. A write failed: multiply the size by ``decrease_factor`` (0.9).
3. The flushes' mean store write time missed ``latency_target_seconds``: multiply the size by
   Gradient2's ratio of long-run to recent write time, clamped to [0.5, ``decrease_factor``],
   so a sudden spike halves the size and a drift trims it.
4. The backlog holds two batches or more: jump to a quarter of it (at least one step up), so it
   drains in about ``backlog_drain_flushes`` writes; waiting for additive steps would take
   minutes to cross 5..500.
5. High load (system CPU at or above the high threshold, or loop lag at or above its threshold):
   double the timeout toward the configured one, and grow the size by a step if batches fill.
6. Batches fill (half or more of the flushes were triggered by size): grow by a step.
7. Low load (CPU under the low threshold): the timeout drops to its floor; the size halves
   toward the minimum, but only while batches carry under a quarter of it, so a steady flow
   that fills the halved size does not make it oscillate.

Any change waits ``cooldown_seconds`` after the previous one (except the fallback).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constants

from .config import require_non_negative, require_positive
from .errors import ConfigError
from .load import LoadSample

__all__ = ["Decision", "Signals", "SizingConfig", "SizingController"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingConfig:
    """Bounds, thresholds and pace of adaptive sizing.

    Raises:
        ConfigError: a value is out of range.
    """

    enabled: bool = constants.SSE_DYNAMIC_BATCHING
    min_size: int = constants.SSE_BATCH_SIZE_MIN
    max_size: int = constants.SSE_BATCH_SIZE_MAX
    low_load_percent: float = constants.SSE_LOAD_LOW_PERCENT
    high_load_percent: float = constants.SSE_LOAD_HIGH_PERCENT
    high_loop_lag_seconds: float = constants.SSE_LOAD_LOOP_LAG_HIGH_SECONDS
    sample_seconds: float = constants.SSE_LOAD_SAMPLE_SECONDS
    cooldown_seconds: float = constants.SSE_BATCH_ADJUST_COOLDOWN_SECONDS
    min_timeout_seconds: float = constants.SSE_BATCH_TIMEOUT_MIN_SECONDS
    latency_target_seconds: float = constants.SSE_BATCH_LATENCY_TARGET_SECONDS
    increase_step: int = 5
    decrease_factor: float = 0.9
    backlog_drain_flushes: int = 4
    history_size: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ConfigError(f"need 1 <= min_size <= max_size, got {self.min_size!r} and {self.max_size!r}")
        if not 0 <= self.low_load_percent <= self.high_load_percent <= 100:
            raise ConfigError(
                f"need 0 <= low_load_percent <= high_load_percent <= 100, "
                f"got {self.low_load_percent!r} and {self.high_load_percent!r}"
            )
        for name in ("high_loop_lag_seconds", "sample_seconds", "min_timeout_seconds", "latency_target_seconds"):
            require_positive(name, getattr(self, name))
        require_non_negative("cooldown_seconds", self.cooldown_seconds)
        if self.increase_step < 1 or self.backlog_drain_flushes < 1 or self.history_size < 1:
            raise ConfigError("increase_step, backlog_drain_flushes and history_size must be >= 1")
        if not 0.5 <= self.decrease_factor < 1:
            raise ConfigError(f"decrease_factor must be in [0.5, 1), got {self.decrease_factor!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Signals:
    """What the controller sees at one decision; counts cover the flushes since the last one.

    ``load`` is None when the monitor is failing or stale. ``write_seconds`` is the mean store
    write time of those flushes (None without one); ``long_write_seconds`` its long-run average.
    """

    load: LoadSample | None
    backlog: int
    flushes: int = 0
    full_flushes: int = 0
    events: int = 0
    errors: int = 0
    write_seconds: float | None = None
    long_write_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A change to make: the new size and timeout, and the rule that asked for it."""

    size: int
    timeout_seconds: float
    reason: str


class SizingController:
    """Decide batch size and timeout changes; its only state is the time of the last change.

    Raises:
        ConfigError: ``max_timeout_seconds`` is not positive.
    """

    def __init__(self, config: SizingConfig, *, default_size: int, max_timeout_seconds: float) -> None:
        if max_timeout_seconds <= 0:
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

    def decide(self, size: int, timeout_seconds: float, signals: Signals, now: float) -> Decision | None:
        """Return the change to make now, or None (nothing to change, or still cooling down)."""
        new_size, new_timeout, reason = self.target(size, timeout_seconds, signals)
        if new_size == size and math.isclose(new_timeout, timeout_seconds, rel_tol=1e-9):
            return None
        if reason != "fallback" and not self.ready(now):
            return None
        self._last_change = now
        return Decision(size=new_size, timeout_seconds=new_timeout, reason=reason)

    def target(self, size: int, timeout: float, s: Signals) -> tuple[int, float, str]:
        """Where the rules in the module docstring would take (size, timeout), and which rule did."""
        c = self._config
        load = s.load
        if load is None:
            return self._default_size, self._max_timeout, "fallback"
        if s.errors:
            return self._clamp(size * c.decrease_factor), timeout, "write_errors"
        short, long = s.write_seconds, s.long_write_seconds
        if short is not None and short > c.latency_target_seconds:
            gradient = max(0.5, min(1.0, long / short)) if long else 1.0
            return self._clamp(size * min(gradient, c.decrease_factor)), timeout, "latency"
        busy = load.cpu_percent >= c.high_load_percent or load.loop_lag_seconds >= c.high_loop_lag_seconds
        if s.backlog >= 2 * size:
            return self._clamp(max(size + c.increase_step, s.backlog / c.backlog_drain_flushes)), timeout, "backlog"
        saturated = s.flushes > 0 and 2 * s.full_flushes >= s.flushes
        if busy:
            grown = self._clamp(size + c.increase_step) if saturated else size
            return grown, min(self._max_timeout, timeout * 2), "high_load"
        if saturated:
            return self._clamp(size + c.increase_step), timeout, "saturated"
        if load.cpu_percent < c.low_load_percent:
            mostly_empty = s.flushes == 0 or 4 * s.events <= size * s.flushes
            return (self._clamp(size // 2) if mostly_empty else size), self._min_timeout, "idle"
        return size, timeout, "steady"

    def _clamp(self, size: float) -> int:
        return max(self._config.min_size, min(self._config.max_size, int(size)))
