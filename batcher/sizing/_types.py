"""The inputs and outputs every sizing strategy shares: its config, the signals of one period, a decision.

Apart from ``sse_batcher.batcher.sizing.strategies`` so that module holds the policies alone; re-exported there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sse_batcher import constants
from sse_batcher.batcher.config import STRATEGY_NAMES, require_non_negative, require_positive
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.sizing.load import LoadSample

__all__ = ["Decision", "Signals", "SizingConfig", "Target"]

Target = tuple[int, float, str]
# What a rule proposes before the bounds are applied: the size may be fractional.
_Proposal = tuple[float, float, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SizingConfig:
    """Which strategy sizes batches, its bounds, thresholds and pace.

    ``age_target_seconds`` is the age at commit the ``learned`` strategy keeps events under;
    ``learned_min_samples`` the decision periods it needs, per arrival-rate band, before it
    stops deferring to ``adaptive``; ``seed`` makes its exploration repeatable. ``strategy_b``
    names the strategy of a live A/B's second arm (None: no A/B), which gets ``ab_split`` of the
    sources (``sse_batcher.batcher.sizing.split``).

    Raises:
        ConfigError: a value is out of range, or the strategy is unknown (the choices are named).
    """

    enabled: bool = field(default_factory=lambda: constants.SSE_DYNAMIC_BATCHING)
    strategy: str = field(default_factory=lambda: constants.SSE_BATCH_STRATEGY)
    min_size: int = field(default_factory=lambda: constants.SSE_BATCH_SIZE_MIN)
    max_size: int = field(default_factory=lambda: constants.SSE_BATCH_SIZE_MAX)
    low_load_percent: float = field(default_factory=lambda: constants.SSE_LOAD_LOW_PERCENT)
    high_load_percent: float = field(default_factory=lambda: constants.SSE_LOAD_HIGH_PERCENT)
    high_loop_lag_seconds: float = field(default_factory=lambda: constants.SSE_LOAD_LOOP_LAG_HIGH_SECONDS)
    sample_seconds: float = field(default_factory=lambda: constants.SSE_LOAD_SAMPLE_SECONDS)
    cooldown_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_ADJUST_COOLDOWN_SECONDS)
    min_timeout_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_TIMEOUT_MIN_SECONDS)
    latency_target_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_LATENCY_TARGET_SECONDS)
    age_target_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_AGE_TARGET_SECONDS)
    increase_step: int = 5
    decrease_factor: float = 0.9
    backlog_flushes: int = 4
    history_size: int = 50
    learned_min_samples: int = 8
    learned_explore: float = 0.15
    seed: int | None = None
    strategy_b: str | None = field(default_factory=lambda: constants.SSE_BATCH_STRATEGY_B)
    ab_split: float = field(default_factory=lambda: constants.SSE_AB_SPLIT)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGY_NAMES:
            raise ConfigError(f"strategy must be one of {', '.join(STRATEGY_NAMES)}, got {self.strategy!r}")
        if self.strategy_b is not None and self.strategy_b not in STRATEGY_NAMES:
            raise ConfigError(f"strategy_b must be one of {', '.join(STRATEGY_NAMES)}, got {self.strategy_b!r}")
        if not 0 <= self.ab_split <= 1:
            raise ConfigError(f"ab_split must be in [0, 1], got {self.ab_split!r}")
        if not 1 <= self.min_size <= self.max_size:
            raise ConfigError(f"need 1 <= min_size <= max_size, got {self.min_size!r} and {self.max_size!r}")
        if not 0 <= self.low_load_percent <= self.high_load_percent <= 100:
            raise ConfigError(
                f"need 0 <= low_load_percent <= high_load_percent <= 100, "
                f"got {self.low_load_percent!r} and {self.high_load_percent!r}"
            )
        for name in (
            "high_loop_lag_seconds",
            "sample_seconds",
            "min_timeout_seconds",
            "latency_target_seconds",
            "age_target_seconds",
        ):
            require_positive(name, getattr(self, name))
        require_non_negative("cooldown_seconds", self.cooldown_seconds)
        if min(self.increase_step, self.backlog_flushes, self.history_size, self.learned_min_samples) < 1:
            raise ConfigError("increase_step, backlog_flushes, history_size and learned_min_samples must be >= 1")
        if not 0.5 <= self.decrease_factor < 1:
            raise ConfigError(f"decrease_factor must be in [0.5, 1), got {self.decrease_factor!r}")
        if not 0 <= self.learned_explore <= 1:
            raise ConfigError(f"learned_explore must be in [0, 1], got {self.learned_explore!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Signals:
    """What a strategy sees at one decision; counts cover the flushes since the last one.

    ``load`` is None when the monitor is failing or stale. ``write_seconds`` is the mean store
    write time of those flushes (None without one); ``long_write_seconds`` its long-run average.
    ``period_seconds`` and ``cpu_seconds`` are how long the period lasted and how much CPU this
    process used in it (None when unknown); the learned strategy's reward is built from them.
    """

    load: LoadSample | None
    backlog: int
    flushes: int = 0
    full_flushes: int = 0
    events: int = 0
    errors: int = 0
    write_seconds: float | None = None
    long_write_seconds: float | None = None
    period_seconds: float | None = None
    cpu_seconds: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """A change to make: the new size and timeout, the rule that asked for it, and the load it saw.

    ``load`` travels with the decision so whoever applies it can record what it was based on.
    """

    size: int
    timeout_seconds: float
    reason: str
    load: LoadSample | None = None
