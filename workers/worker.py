"""The Worker lifecycle shared by both flavours: submit from any thread, start, wind down, stop.

Everything that decides (the lifecycle here, the job queue and its dispatcher in ``_dispatch.py``)
lives on the event loop, so it needs no lock and stops cleanly by cancelling a scope; only the job
itself runs elsewhere (a thread for :class:`~sse_batcher.workers.ThreadWorker`, a task for
:class:`~sse_batcher.workers.AsyncWorker`). A submit from another thread hops onto the loop.

Stopping lets the running jobs finish, bounded by a timeout; past it, coroutine jobs are cancelled
(and report ``JOB_FAILED``) and thread jobs are abandoned (a thread cannot be killed), both counted
as ``jobs_abandoned``. Jobs still queued are never started, and are counted as ``jobs_unstarted``.
"""

from __future__ import annotations

import abc
import logging
import threading
import warnings
from collections.abc import Iterable
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, ClassVar, Self

import anyio
import anyio.from_thread
import anyio.lowlevel

from sse_batcher.batcher import BatcherError, EventBatcher
from sse_batcher.workers._dispatch import Dispatcher
from sse_batcher.workers.broadcaster import SSEBroadcaster
from sse_batcher.workers.config import WorkerConfig, WorkerState, WorkerStats
from sse_batcher.workers.errors import WorkerClosedError
from sse_batcher.workers.job import JobIdAllocator, JobSpec, clip_name

__all__ = ["Worker"]

logger = logging.getLogger(__name__)


class Worker(abc.ABC):
    """A named background worker whose jobs report their lifecycle as events.

    Subclass :class:`~sse_batcher.workers.ThreadWorker` (jobs run in threads: CPU-bound or blocking work) or
    :class:`~sse_batcher.workers.AsyncWorker` (jobs are coroutines), not this class. Feed jobs with
    :meth:`submit`, or override :meth:`next_job` to let the worker generate its own.

    Raises:
        EventValidationError: ``name`` is not a valid event source.
    """

    kind: ClassVar[str] = "worker"

    def __init__(
        self,
        batcher: EventBatcher,
        name: str,
        *,
        use_batching: bool = True,
        config: WorkerConfig | None = None,
        job_ids: JobIdAllocator | None = None,
    ) -> None:
        self._config = config = config or WorkerConfig()
        self._broadcaster = SSEBroadcaster(batcher, name, use_batching, config.emit_timeout_seconds)
        self._name = name
        self._job_ids = job_ids or JobIdAllocator()
        self._state = WorkerState.NEW
        # Set when stopping; jobs read it through ``job.stop_requested``, from any thread.
        self._stop = threading.Event()
        self._dispatcher = Dispatcher(name, config.queue_size, config.concurrency)
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._stack: AsyncExitStack | None = None
        self._stopped: anyio.Event | None = None
        self._unstarted = 0

    # -- what subclasses provide -----------------------------------------------------------
    @abc.abstractmethod
    async def _execute(self, spec: JobSpec) -> bool:
        """Run one job with its lifecycle events; True when it completed, False when it failed."""

    async def next_job(self) -> Any | None:
        """Return the payload of the next self-generated job, or None to generate no more.

        Override to let the worker make its own work (a timer, a poll, a simulation); it is called
        again as soon as the job is queued, waits for queue room first, and is cancelled on stop.
        The default generates nothing: the worker runs only what is submitted.
        """
        return None

    def job_name(self, payload: Any) -> str:
        """Name a job on the dashboard; override to describe your payload.

        The default is the payload itself when it is a string, else ``"<worker> job"``.
        """
        return payload if isinstance(payload, str) and payload else f"{self._name} job"

    # -- properties --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def config(self) -> WorkerConfig:
        return self._config

    @property
    def broadcaster(self) -> SSEBroadcaster:
        """The worker's broadcaster: emit your own events through it, under the worker's name."""
        return self._broadcaster

    # -- submitting ------------------------------------------------------------------------
    def submit(self, payload: Any = None, *, name: str | None = None) -> int:
        """Queue one job and return its id. Safe from any thread.

        Raises:
            JobQueueFullError: the queue holds ``queue_size`` jobs; nothing was queued.
            WorkerClosedError: the worker is stopping or stopped.
        """
        return self._on_loop([(payload, name)])[0]

    def submit_many(self, payloads: Iterable[Any]) -> list[int]:
        """Queue several jobs, all or none, and return their ids. Safe from any thread.

        Raises:
            JobQueueFullError: they do not all fit; none was queued.
            WorkerClosedError: the worker is stopping or stopped.
        """
        return self._on_loop([(payload, None) for payload in payloads])

    def _on_loop(self, items: list[tuple[Any, str | None]]) -> list[int]:
        # The queue belongs to the event loop; another thread hops over and waits for the answer.
        if self._state is WorkerState.STOPPING or self._state is WorkerState.STOPPED:
            raise WorkerClosedError(f"worker {self._name!r} is {self._state.value}; no more jobs are accepted")
        if self._token is None or threading.get_ident() == self._loop_thread:
            return self._enqueue(items)
        return anyio.from_thread.run_sync(self._enqueue, items, token=self._token)

    def _enqueue(self, items: list[tuple[Any, str | None]]) -> list[int]:
        if self._state is WorkerState.STOPPING or self._state is WorkerState.STOPPED:
            raise WorkerClosedError(f"worker {self._name!r} is {self._state.value}; no more jobs are accepted")
        # Checked before ids are taken, so a refused submit uses none.
        self._dispatcher.check_room(len(items))
        ids = self._job_ids.allocate_many(len(items)) if items else range(0)
        specs = [
            JobSpec(job_id, clip_name(name or self.job_name(payload)), payload)
            for job_id, (payload, name) in zip(ids, items, strict=True)
        ]
        self._dispatcher.put(specs)
        return list(ids)

    def _accept(self, payload: Any) -> None:
        """Queue a job of the worker's own (from :meth:`next_job`)."""
        self._enqueue([(payload, None)])

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start taking jobs (those submitted before start run first).

        Raises:
            WorkerClosedError: the worker was already started or stopped.
        """
        if self._state is not WorkerState.NEW:
            raise WorkerClosedError(f"cannot start worker {self._name!r}: it is {self._state.value}")
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._dispatcher.open()
        self._stopped = anyio.Event()
        self._stack = AsyncExitStack()
        task_group = await self._stack.enter_async_context(anyio.create_task_group())
        self._state = WorkerState.RUNNING
        task_group.start_soon(
            self._dispatcher.run, self._execute, self.next_job, self._accept, name=f"worker {self._name}"
        )

    def request_stop(self) -> None:
        """Stop taking jobs and tell running ones (``job.stop_requested``), without waiting.

        :meth:`aclose` finishes the stop. Signalling several workers first lets them wind down
        in parallel, then each ``aclose()`` only waits for what is left. Calling it again is harmless.
        """
        if self._state is not WorkerState.RUNNING:
            return
        self._state = WorkerState.STOPPING
        self._stop.set()
        self._dispatcher.stop_intake()

    async def wind_down(self) -> None:
        """Stop taking jobs and wait until the running ones have finished (callable from any task).

        The server's drain uses it so the last JOB_COMPLETED events are emitted before its final
        flush; bound it with a timeout, then :meth:`aclose` stops whatever is left.
        """
        self.request_stop()
        await self._dispatcher.wait_done()

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop: take no more jobs, let running ones finish within ``timeout``, then stop hard.

        ``timeout`` defaults to ``config.stop_timeout_seconds``. Call it from the task that called
        :meth:`start` (``async with`` does), as with any anyio task group. Calling it again is harmless.
        """
        if self._state is WorkerState.STOPPED:
            return
        if self._state is WorkerState.NEW:
            self._state = WorkerState.STOPPED
            self._unstarted = self._dispatcher.queued
            return
        assert self._stopped is not None  # set by start()
        if self._stack is None:  # another aclose() is finishing the stop
            await self._stopped.wait()
            return
        self.request_stop()
        limit = self._config.stop_timeout_seconds if timeout is None else timeout
        with anyio.move_on_after(limit):
            await self._dispatcher.wait_done()
        stack, self._stack = self._stack, None
        try:
            self._dispatcher.cancel_running(limit)
            await stack.aclose()
        finally:
            self._unstarted = self._dispatcher.queued
            if self._unstarted:
                logger.warning("worker %s stopped with %d queued jobs never started", self._name, self._unstarted)
            self._state = WorkerState.STOPPED
            self._dispatcher.close()
            self._stopped.set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # getattr: __init__ may have raised before the state existed (a bad name, say).
        if getattr(self, "_state", None) is WorkerState.RUNNING:
            warnings.warn(f"Unclosed worker {self._name!r}", ResourceWarning, stacklevel=1, source=self)

    async def wait_idle(self) -> None:
        """Return once no job is queued or running (at once when stopped). Waits for ``start()``."""
        await anyio.lowlevel.checkpoint()
        while self._state is not WorkerState.STOPPED and (self._dispatcher.busy or self._token is None):
            await self._dispatcher.wait_quiet()

    def _deliver_failed(self, error: BatcherError, event_type: str, job_id: int) -> None:
        # The broadcaster has counted it; the job's outcome still counts, the worker goes on.
        logger.warning("worker %s: %s of job %d not delivered: %s", self._name, event_type, job_id, error)

    # -- statistics --------------------------------------------------------------------------
    def statistics(self) -> WorkerStats:
        """Return a frozen snapshot of this worker's counters."""
        broadcaster = self._broadcaster
        return WorkerStats(
            name=self._name,
            kind=self.kind,
            use_batching=broadcaster.use_batching and broadcaster.batcher.config.batching_enabled,
            state=self._state.value,
            concurrency=self._config.concurrency,
            events=broadcaster.events_emitted,
            emit_errors=broadcaster.emit_errors,
            jobs_queued=self._dispatcher.queued,
            jobs_running=self._dispatcher.running,
            jobs_done=self._dispatcher.done,
            jobs_failed=self._dispatcher.failed,
            jobs_abandoned=self._dispatcher.abandoned,
            jobs_unstarted=self._unstarted,
        )

    def get_stats(self) -> dict[str, Any]:
        """Return :meth:`statistics` as a JSON-ready dict."""
        return self.statistics().as_dict()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._state.value}>"
