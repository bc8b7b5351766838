"""Background workers whose jobs report their lifecycle as events, and the demo render farm.

Subclass :class:`ThreadWorker` (jobs in threads) or :class:`AsyncWorker` (jobs as coroutines);
each worker emits through its own :class:`SSEBroadcaster`, which carries its name and its
``use_batching`` switch. :class:`Worker` is their common base, for type hints and ``isinstance``.
"""

from __future__ import annotations

from .broadcaster import BroadcastStats, SSEBroadcaster
from .config import WorkerConfig, WorkerState, WorkerStats
from .demo import MAX_BURST, DemoFarm
from .errors import JobQueueFullError, WorkerClosedError, WorkerError
from .flavours import AsyncWorker, ThreadWorker
from .job import AsyncJob, Job, JobIdAllocator
from .worker import Worker

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
