"""Background workers whose jobs report their lifecycle as events, and the demo render farm.

Subclass :class:`ThreadWorker` (jobs in threads) or :class:`AsyncWorker` (jobs as coroutines);
each worker emits through its own :class:`SSEBroadcaster`, which carries its name and its
``use_batching`` switch. :class:`Worker` is their common base, for type hints and ``isinstance``.
"""

from __future__ import annotations

from sse_batcher.workers.broadcaster import BroadcastStats, SSEBroadcaster
from sse_batcher.workers.config import WorkerConfig, WorkerState, WorkerStats
from sse_batcher.workers.demo.farm import MAX_BURST, DemoFarm
from sse_batcher.workers.errors import JobQueueFullError, WorkerClosedError, WorkerError
from sse_batcher.workers.flavours import AsyncWorker, ThreadWorker
from sse_batcher.workers.job import AsyncJob, Job, JobIdAllocator
from sse_batcher.workers.worker import Worker

__all__ = [
    "MAX_BURST",
    "AsyncJob",
    "AsyncWorker",
    "BroadcastStats",
    "DemoFarm",
    "Job",
    "JobIdAllocator",
    "JobQueueFullError",
    "SSEBroadcaster",
    "ThreadWorker",
    "Worker",
    "WorkerClosedError",
    "WorkerConfig",
    "WorkerError",
    "WorkerState",
    "WorkerStats",
]
