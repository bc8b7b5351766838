"""Jobs: what a worker's ``run_job`` receives, how ids are handed out, and the lifecycle events.

A running job emits, under its worker's name as ``source``::

    JOB_STARTED    {"job_id", "name", "queued_seconds"}
    JOB_PROGRESS   {"job_id", "percent", "step"}                       0 <= percent <= 100
    JOB_COMPLETED  {"job_id", "name", "duration_seconds", "result"}    result: a short summary
    JOB_FAILED     {"job_id", "name", "duration_seconds", "error_type", "error_message"}

Texts are cut to a bounded length so a huge result or traceback message can never make an event
too large for the batcher to accept (which would lose the job's last word).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sse_batcher.batcher import BatcherError

__all__ = ["AsyncJob", "Job", "JobIdAllocator"]

if TYPE_CHECKING:
    from sse_batcher.workers.broadcaster import SSEBroadcaster

logger = logging.getLogger(__name__)

JOB_STARTED: Final = "JOB_STARTED"
JOB_PROGRESS: Final = "JOB_PROGRESS"
JOB_COMPLETED: Final = "JOB_COMPLETED"
JOB_FAILED: Final = "JOB_FAILED"

_MAX_NAME_CHARS: Final = 120
_MAX_STEP_CHARS: Final = 120
_MAX_RESULT_CHARS: Final = 200
_MAX_ERROR_CHARS: Final = 500


class JobIdAllocator:
    """Hands out job ids, unique among the workers that share one allocator. Thread-safe.

    Pass one allocator to every worker of a process so a job id names one job on the dashboard,
    whichever worker ran it. ``start`` lets a restarted process continue past ids it used before.

    Raises:
        ValueError: ``start`` is below 1.
    """

    def __init__(self, start: int = 1) -> None:
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start!r}")
        self._ids = itertools.count(start)
        self._lock = threading.Lock()

    def allocate(self) -> int:
        """Return the next id."""
        with self._lock:
            return next(self._ids)

    def allocate_many(self, count: int) -> range:
        """Return ``count`` consecutive ids (a burst takes one lock, not thousands)."""
        with self._lock:
            first = next(self._ids)
            if count > 1:
                self._ids = itertools.count(first + count)
        return range(first, first + count)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A queued job: its id, its dashboard name and the caller's payload."""

    job_id: int
    name: str
    payload: Any
    queued_at: float = field(default_factory=time.monotonic)


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _progress_data(job_id: int, percent: float, step: str) -> dict[str, Any]:
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent):
        raise ValueError(f"percent must be a number from 0 to 100, got {percent!r}")
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be from 0 to 100, got {percent!r}")
    return {"job_id": job_id, "percent": round(float(percent), 1), "step": clip(str(step), _MAX_STEP_CHARS)}


def started_data(spec: JobSpec) -> dict[str, Any]:
    """The data of ``JOB_STARTED``."""
    queued = max(0.0, time.monotonic() - spec.queued_at)
    return {"job_id": spec.job_id, "name": spec.name, "queued_seconds": round(queued, 3)}


def completed_data(spec: JobSpec, duration: float, result: object) -> dict[str, Any]:
    """The data of ``JOB_COMPLETED``; ``result`` is summarised as text."""
    summary = "" if result is None else clip(str(result), _MAX_RESULT_CHARS)
    return {"job_id": spec.job_id, "name": spec.name, "duration_seconds": round(duration, 3), "result": summary}


def failed_data(spec: JobSpec, duration: float, error_type: str, error_message: str) -> dict[str, Any]:
    """The data of ``JOB_FAILED``: usually the exception's class name and message."""
    return {
        "job_id": spec.job_id,
        "name": spec.name,
        "duration_seconds": round(duration, 3),
        "error_type": error_type,
        "error_message": clip(error_message, _MAX_ERROR_CHARS),
    }


def clip_name(name: str) -> str:
    """Cut a job name to the length the dashboard shows."""
    return clip(name, _MAX_NAME_CHARS)


class _JobBase:
    __slots__ = ("_broadcaster", "_spec", "_stop", "_lost")

    def __init__(self, spec: JobSpec, broadcaster: SSEBroadcaster, stop: threading.Event) -> None:
        self._spec = spec
        self._broadcaster = broadcaster
        self._stop = stop
        self._lost = 0

    def _progress_lost(self, error: BatcherError) -> None:
        # Progress is advisory: a render must not fail because the dashboard's buffer is full.
        # The broadcaster has counted the error; log the first per job so a flood stays readable.
        self._lost += 1
        if self._lost == 1:
            logger.warning("job %d on %s: progress not delivered: %s", self.id, self.worker_name, error)

    @property
    def id(self) -> int:
        """The job id, as sent in every event of the job."""
        return self._spec.job_id

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def payload(self) -> Any:
        """Whatever was given to ``submit()`` or returned by ``next_job()``."""
        return self._spec.payload

    @property
    def worker_name(self) -> str:
        return self._broadcaster.worker_name

    @property
    def stop_requested(self) -> bool:
        """True once the worker is stopping: a long job may wind down early (it is not forced to)."""
        return self._stop.is_set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.name!r} on {self.worker_name!r}>"


class Job(_JobBase):
    """A job running on a :class:`~sse_batcher.workers.ThreadWorker`'s thread."""

    __slots__ = ()

    def progress(self, percent: float, step: str = "") -> None:
        """Emit ``JOB_PROGRESS``. On a full buffer, waits up to the broadcaster's emit timeout.

        An event that still cannot be delivered is counted and logged, and the job goes on.

        Raises:
            ValueError: ``percent`` is not a number from 0 to 100.
        """
        data = _progress_data(self.id, percent, step)
        try:
            self._broadcaster.emit(JOB_PROGRESS, data, key=str(self.id))
        except BatcherError as exc:
            self._progress_lost(exc)


class AsyncJob(_JobBase):
    """A job running as a coroutine on an :class:`~sse_batcher.workers.AsyncWorker`."""

    __slots__ = ()

    async def progress(self, percent: float, step: str = "") -> None:
        """Emit ``JOB_PROGRESS``, awaiting room in a full buffer up to the emit timeout.

        An event that still cannot be delivered is counted and logged, and the job goes on.

        Raises:
            ValueError: ``percent`` is not a number from 0 to 100.
        """
        data = _progress_data(self.id, percent, step)
        try:
            await self._broadcaster.aemit(JOB_PROGRESS, data, key=str(self.id))
        except BatcherError as exc:
            self._progress_lost(exc)
