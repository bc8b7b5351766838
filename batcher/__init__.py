"""sse-batcher core: emit events from any thread, store them in batches, hand them out in order.

No HTTP here: this package works in any asyncio program. See README.md for a tour.
"""

from __future__ import annotations

from ._named import make_strategy
from .aggregate import aggregate, aggregate_type
from .batcher import FlushReport, SSEEventBatcher
from .breaker import BreakerState, BreakerStats, CircuitBreaker
from .config import BatcherConfig, StoreConfig
from .deadletter import DeadLetterFile
from .digester import Digester, DigesterStats
from .errors import (
    AckTimeoutError,
    BatcherClosedError,
    BatcherError,
    BufferFullError,
    ConfigError,
    EventValidationError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from .events import CRITICAL, NORMAL, Event, Message, StoredMessage
from .follower import FollowerStats, LogFollower
from .lifecycle import Service, State
from .load import LoadSample, ServerLoadMonitor
from .protocols import EventStore, Rejected, WriteResult
from .rules import AggregationRules, TypeRule
from .sizing import BatchSizer, SizingStats
from .split import EventBatcher, SplitBatcher
from .stats import BatcherStats, HistogramSnapshot
from .store import PostgresStore, StoreStats
from .strategies import STRATEGY_NAMES, SizingConfig, SizingStrategy

__all__ = [
    "AckTimeoutError",
    "AggregationRules",
    "BatchSizer",
    "BatcherClosedError",
    "BatcherConfig",
    "BatcherError",
    "BatcherStats",
    "BreakerState",
    "BreakerStats",
    "BufferFullError",
    "CRITICAL",
    "CircuitBreaker",
    "ConfigError",
    "DeadLetterFile",
    "Digester",
    "DigesterStats",
    "Event",
    "EventBatcher",
    "EventStore",
    "EventValidationError",
    "FlushReport",
    "FollowerStats",
    "HistogramSnapshot",
    "LoadSample",
    "LogFollower",
    "Message",
    "NORMAL",
    "PostgresStore",
    "Rejected",
    "SSEEventBatcher",
    "STRATEGY_NAMES",
    "ServerLoadMonitor",
    "Service",
    "SizingConfig",
    "SizingStats",
    "SizingStrategy",
    "SplitBatcher",
    "State",
    "StoreConfig",
    "StoreError",
    "StoreRejectedError",
    "StoreStats",
    "StoreUnavailableError",
    "StoredMessage",
    "TypeRule",
    "WriteResult",
    "aggregate",
    "aggregate_type",
    "make_strategy",
]
