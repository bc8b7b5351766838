"""The two worker flavours: jobs in threads (blocking or CPU-bound work) or as coroutines.

Both share :class:`~sse_batcher.workers.Worker`'s queue and lifecycle and differ only in how one job runs.
A ThreadWorker's job, and every event it emits, runs on a worker thread, so a slow render never
blocks the event loop; its emits wait for buffer room like any worker thread's. An AsyncWorker's
job awaits room instead. Either way an exception inside a job becomes ``JOB_FAILED`` and the slot
goes on to the next job: a worker never dies of a bad job.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from typing import Any, ClassVar

import anyio
import anyio.to_thread

from sse_batcher.batcher import BatcherError
from sse_batcher.workers.config import WorkerState
from sse_batcher.workers.job import (
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_STARTED,
    AsyncJob,
    Job,
    JobSpec,
    completed_data,
    failed_data,
    started_data,
)
from sse_batcher.workers.worker import Worker

__all__ = ["AsyncWorker", "ThreadWorker"]

logger = logging.getLogger(__name__)


def _log_failure(worker: str, spec: JobSpec, error: Exception) -> None:
    # One line per failed job; the traceback only when debugging, or a 4% failure rate floods the log.
    logger.warning(
        "worker %s: job %d (%s) failed: %s: %s",
        worker,
        spec.job_id,
        spec.name,
        type(error).__name__,
        error,
        exc_info=logger.isEnabledFor(logging.DEBUG),
    )


class ThreadWorker(Worker):
    """A worker whose jobs run in threads, up to ``config.concurrency`` at once.

    Subclass it and implement :meth:`run_job`; call ``job.progress(percent, step)`` as you go and
    return a short summary, which ``JOB_COMPLETED`` carries as ``result``.
    """

    kind: ClassVar[str] = "thread"
    _limiter: anyio.CapacityLimiter

    @abc.abstractmethod
    def run_job(self, job: Job) -> str | None:
        """Do one job, on a worker thread. Raise to fail it (the worker goes on)."""

    async def start(self) -> None:
        """Start taking jobs (those submitted before start run first).

        Raises:
            WorkerClosedError: the worker was already started or stopped.
        """
        if self._state is WorkerState.NEW:
            # Our own limiter: long jobs must not take the default pool's tokens from the rest of the app.
            self._limiter = anyio.CapacityLimiter(self._config.concurrency)
        await super().start()

    async def _execute(self, spec: JobSpec) -> bool:
        # abandon_on_cancel: past the stop timeout the thread is left to finish on its own.
        return await anyio.to_thread.run_sync(self._run_in_thread, spec, abandon_on_cancel=True, limiter=self._limiter)

    def _run_in_thread(self, spec: JobSpec) -> bool:
        thread = threading.current_thread()
        pool_name, thread.name = thread.name, f"{self._name}-job-{spec.job_id}"
        try:
            job = Job(spec, self._broadcaster, self._stop)
            started = time.monotonic()
            self._emit(JOB_STARTED, started_data(spec), spec)
            try:
                result = self.run_job(job)
            except Exception as exc:
                _log_failure(self._name, spec, exc)
                data = failed_data(spec, time.monotonic() - started, type(exc).__name__, str(exc))
                self._emit(JOB_FAILED, data, spec)
                return False
            self._emit(JOB_COMPLETED, completed_data(spec, time.monotonic() - started, result), spec)
            return True
        finally:
            thread.name = pool_name

    def _emit(self, event_type: str, data: dict[str, Any], spec: JobSpec) -> None:
        try:
            self._broadcaster.emit(event_type, data, key=str(spec.job_id))
        except BatcherError as exc:
            self._deliver_failed(exc, event_type, spec.job_id)


class AsyncWorker(Worker):
    """A worker whose jobs are coroutines on the event loop, up to ``config.concurrency`` at once.

    Subclass it and implement :meth:`run_job`; ``await job.progress(percent, step)`` as you go and
    return a short summary. Never block in a job: use ``anyio.to_thread`` or a ThreadWorker.
    """

    kind: ClassVar[str] = "async"

    @abc.abstractmethod
    async def run_job(self, job: AsyncJob) -> str | None:
        """Do one job, as a coroutine. Raise to fail it (the worker goes on)."""

    async def _execute(self, spec: JobSpec) -> bool:
        job = AsyncJob(spec, self._broadcaster, self._stop)
        started = time.monotonic()
        await self._aemit(JOB_STARTED, started_data(spec), spec)
        try:
            result = await self.run_job(job)
        except anyio.get_cancelled_exc_class():
            # Stopped past its timeout: say so, without awaiting (we are being cancelled), so the
            # dashboard does not show the job running forever.
            data = failed_data(
                spec, time.monotonic() - started, "JobCancelled", "the worker stopped before the job finished"
            )
            try:
                self._broadcaster.emit(JOB_FAILED, data, key=str(spec.job_id))
            except BatcherError as exc:
                self._deliver_failed(exc, JOB_FAILED, spec.job_id)
            raise
        except Exception as exc:
            _log_failure(self._name, spec, exc)
            data = failed_data(spec, time.monotonic() - started, type(exc).__name__, str(exc))
            await self._aemit(JOB_FAILED, data, spec)
            return False
        await self._aemit(JOB_COMPLETED, completed_data(spec, time.monotonic() - started, result), spec)
        return True

    async def _aemit(self, event_type: str, data: dict[str, Any], spec: JobSpec) -> None:
        try:
            await self._broadcaster.aemit(event_type, data, key=str(spec.job_id))
        except BatcherError as exc:
            self._deliver_failed(exc, event_type, spec.job_id)
