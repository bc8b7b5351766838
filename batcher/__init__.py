"""sse-batcher core: emit events from any thread, store them in batches, hand them out in order.

No HTTP here: this package works in any asyncio program. See README.md for a tour.
"""

from __future__ import annotations

from .aggregate import aggregate, aggregate_type
from .batcher import FlushReport, SSEEventBatcher, State
from .config import BatcherConfig, StoreConfig
from .deadletter import DeadLetterFile
from .errors import (
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
from .protocols import EventStore, Rejected, WriteResult
from .stats import BatcherStats, HistogramSnapshot
from .store import PostgresStore, StoreStats
from .subscription import Subscription

__all__ = [
    "CRITICAL",
    "NORMAL",
    "BatcherClosedError",
    "BatcherConfig",
    "BatcherError",
    "BatcherStats",
    "BufferFullError",
    "ConfigError",
    "DeadLetterFile",
    "Event",
    "EventStore",
    "EventValidationError",
    "FlushReport",
    "HistogramSnapshot",
    "Message",
    "PostgresStore",
    "Rejected",
    "SSEEventBatcher",
    "State",
    "StoreConfig",
    "StoreError",
    "StoreRejectedError",
    "StoreStats",
    "StoreUnavailableError",
    "StoredMessage",
    "Subscription",
    "WriteResult",
    "aggregate",
    "aggregate_type",
]
