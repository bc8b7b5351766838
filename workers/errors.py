"""The errors the workers package raises.

Event delivery errors come from ``sse_batcher.batcher`` (:class:`~sse_batcher.batcher.BufferFullError` and friends); the
errors here are about jobs and the worker lifecycle::

    WorkerError
    ├── WorkerClosedError           start() twice, or submit() to a worker that is stopping or stopped
    └── JobQueueFullError           submit() found the worker's job queue full (back-pressure)

An exception raised *inside* a job is never one of these: it becomes a ``JOB_FAILED`` event and
the worker goes on with the next job.
"""

from __future__ import annotations

__all__ = ["JobQueueFullError", "WorkerClosedError", "WorkerError"]


class WorkerError(Exception):
    """Base class of the errors raised by workers."""


class WorkerClosedError(WorkerError):
    """The worker cannot do that in its current state (started twice, or stopping/stopped)."""


class JobQueueFullError(WorkerError):
    """The job queue is full; nothing was queued. Retry later or raise ``queue_size``."""
