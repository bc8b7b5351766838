"""sse-batcher's core: emit events from any thread, store them in batches, hand them out in order.

No HTTP here: this package works in any asyncio program. The data flow runs through its
sub-packages one way:

- :mod:`.pipeline`: emit -> intake -> buffer -> flush -> aggregate -> writer, behind
  :class:`SSEEventBatcher`;
- :mod:`.log`: the PostgreSQL store the writer commits to, the dead-letter file, and the log
  follower that reads the commits back in id order for the server's hub;
- :mod:`.rules`: per-type aggregation rules, which the pipeline applies;
- :mod:`.digests`: digest windows over the stored log;
- :mod:`.sizing`: the load monitor and the strategies that pick the batch size.

This module re-exports what an application needs; everything else is imported from its sub-package.
"""

from __future__ import annotations

from sse_batcher.batcher.config import BatcherConfig, StoreConfig
from sse_batcher.batcher.errors import (
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
from sse_batcher.batcher.events import CRITICAL, NORMAL, Event, Message, StoredMessage
from sse_batcher.batcher.lifecycle import State
from sse_batcher.batcher.log import PostgresStore, StoreStats
from sse_batcher.batcher.pipeline import FlushReport, SSEEventBatcher
from sse_batcher.batcher.protocols import EventBatcher, EventStore, Rejected, WriteResult
from sse_batcher.batcher.rules import AggregationRules, TypeRule
from sse_batcher.batcher.stats import BatcherStats

__all__ = [
    "CRITICAL",
    "NORMAL",
    "AckTimeoutError",
    "AggregationRules",
    "BatcherClosedError",
    "BatcherConfig",
    "BatcherError",
    "BatcherStats",
    "BufferFullError",
    "ConfigError",
    "Event",
    "EventBatcher",
    "EventStore",
    "EventValidationError",
    "FlushReport",
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
    "TypeRule",
    "WriteResult",
]
