"""Configuration of the batcher and the store, as frozen dataclasses.

Defaults come from ``constants.py`` (and so from the environment); the batcher itself never reads
the environment, so two batchers in one process can be configured independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sse_batcher import constants
from sse_batcher.batcher.errors import ConfigError

__all__ = [
    "DEFAULT_FINAL_TYPES",
    "STRATEGY_NAMES",
    "BatcherConfig",
    "StoreConfig",
    "require_non_negative",
    "require_positive",
]

# The sizing strategies by name. Here rather than in ``sizing`` because a rule may name one
# (``TypeRule.strategy``), and the rules sit below the sizing in the data flow.
STRATEGY_NAMES: Final[tuple[str, ...]] = ("fixed", "conservative", "balanced", "aggressive", "adaptive", "learned")

# The types whose event closes its key in the latest state (``log/state.py``). The rules' defaults
# say the same (``final = true`` in ``rules.DEFAULT_TYPE_RULES``); a test keeps the two in step.
DEFAULT_FINAL_TYPES: Final[frozenset[str]] = frozenset({"JOB_COMPLETED", "JOB_FAILED"})


def require_positive(name: str, value: float) -> None:
    """Check a configuration value; ``not value > 0`` so NaN is refused too.

    Raises:
        ConfigError: ``value`` is not > 0 (the message names ``name``).
    """
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def require_non_negative(name: str, value: float) -> None:
    """Check a configuration value; NaN is refused too.

    Raises:
        ConfigError: ``value`` is not >= 0 (the message names ``name``).
    """
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatcherConfig:
    """How the batcher buffers, flushes and retries.

    Raises:
        ConfigError: a value is out of range.
    """

    batch_size: int = field(default_factory=lambda: constants.SSE_BATCH_SIZE)
    batch_timeout_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_TIMEOUT_SECONDS)
    max_retries: int = field(default_factory=lambda: constants.SSE_BATCH_MAX_RETRIES)
    retry_delay_seconds: float = field(default_factory=lambda: constants.SSE_BATCH_RETRY_DELAY)
    batching_enabled: bool = field(default_factory=lambda: constants.SSE_BATCHING_ENABLED)
    max_buffered_events: int = field(default_factory=lambda: constants.SSE_MAX_BUFFERED_EVENTS)
    max_event_bytes: int = field(default_factory=lambda: constants.SSE_MAX_EVENT_BYTES)
    shutdown_timeout_seconds: float = field(default_factory=lambda: constants.SSE_SHUTDOWN_TIMEOUT_SECONDS)
    max_message_bytes: int = field(default_factory=lambda: constants.SSE_MAX_MESSAGE_BYTES)
    max_buffered_bytes: int = field(default_factory=lambda: constants.SSE_MAX_BUFFERED_BYTES)
    leading_edge: bool = field(default_factory=lambda: constants.SSE_BATCH_LEADING_EDGE)
    max_batch_size: int = field(default_factory=lambda: constants.SSE_BATCH_SIZE_MAX)
    data_dir: Path = field(default_factory=lambda: Path(constants.SSE_DATA_DIR))
    default_source: str = "app"

    def __post_init__(self) -> None:
        require_positive("batch_size", self.batch_size)
        require_positive("max_batch_size", self.max_batch_size)
        require_positive("batch_timeout_seconds", self.batch_timeout_seconds)
        require_non_negative("max_retries", self.max_retries)
        require_non_negative("retry_delay_seconds", self.retry_delay_seconds)
        require_positive("max_buffered_events", self.max_buffered_events)
        require_positive("max_buffered_bytes", self.max_buffered_bytes)
        require_positive("max_event_bytes", self.max_event_bytes)
        require_positive("max_message_bytes", self.max_message_bytes)
        require_positive("shutdown_timeout_seconds", self.shutdown_timeout_seconds)
        if self.batch_size > self.max_buffered_events:
            raise ConfigError("batch_size must not exceed max_buffered_events")
        if self.max_event_bytes > self.max_buffered_bytes:
            raise ConfigError("max_event_bytes must not exceed max_buffered_bytes: such an event could never fit")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """How the PostgreSQL store connects, pages and retains.

    Raises:
        ConfigError: a value is out of range.
    """

    dsn: str
    pool_size: int = field(default_factory=lambda: constants.SSE_DB_POOL_SIZE)
    timeout_seconds: float = field(default_factory=lambda: constants.SSE_STORE_TIMEOUT_SECONDS)
    replay_page_size: int = field(default_factory=lambda: constants.SSE_REPLAY_PAGE_SIZE)
    retention_seconds: float = field(default_factory=lambda: constants.SSE_RETENTION_SECONDS)
    retention_interval_seconds: float = field(default_factory=lambda: constants.SSE_RETENTION_INTERVAL_SECONDS)
    replay_page_bytes: int = field(default_factory=lambda: constants.SSE_REPLAY_PAGE_BYTES)
    retention_delete_batch: int = 5000
    # The latest-state table: at most this many open keys (0: no state is kept), and the event
    # types that close a key.
    state_max_keys: int = constants.SSE_STATE_MAX_KEYS
    state_final_types: frozenset[str] = DEFAULT_FINAL_TYPES

    def __post_init__(self) -> None:
        if not self.dsn:
            raise ConfigError("dsn must be a PostgreSQL URL")
        require_positive("pool_size", self.pool_size)
        require_positive("timeout_seconds", self.timeout_seconds)
        require_positive("replay_page_size", self.replay_page_size)
        require_positive("replay_page_bytes", self.replay_page_bytes)
        require_positive("retention_seconds", self.retention_seconds)
        require_positive("retention_interval_seconds", self.retention_interval_seconds)
        require_positive("retention_delete_batch", self.retention_delete_batch)
        require_non_negative("state_max_keys", self.state_max_keys)
