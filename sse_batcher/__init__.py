"""sse-batcher: coalesce bursts of worker events, store them in PostgreSQL, stream them over SSE.

The names the first example needs are here; the rest lives in the sub-packages:
:mod:`sse_batcher.batcher` (the core, no HTTP), :mod:`sse_batcher.workers` (workers and their
broadcasters), :mod:`sse_batcher.server` (the HTTP server and a client) and
:mod:`sse_batcher.constants` (every setting and its default).
"""

from __future__ import annotations

from sse_batcher.batcher import (
    BatcherConfig,
    BatcherError,
    EventValidationError,
    PostgresStore,
    SSEEventBatcher,
    StoreConfig,
)
from sse_batcher.server.nodes.database import embedded_database
from sse_batcher.workers import AsyncJob, AsyncWorker, Job, SSEBroadcaster, ThreadWorker

__all__ = [
    "AsyncJob",
    "AsyncWorker",
    "BatcherConfig",
    "BatcherError",
    "EventValidationError",
    "Job",
    "PostgresStore",
    "SSEBroadcaster",
    "SSEEventBatcher",
    "StoreConfig",
    "ThreadWorker",
    "embedded_database",
]
