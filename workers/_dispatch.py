"""A worker's bounded job queue, and the dispatcher that starts each queued job in a free slot.

Apart from ``worker.py`` so that module holds the lifecycle alone (submit from any thread, start,
stop), while this one holds what happens to a job between being accepted and being finished: it
is **queued** (accepted, not started), then running in one of ``concurrency`` slots, then done or
failed. New jobs come from ``submit()`` or from the worker's own ``next_job()``.

Everything here lives on the event loop and needs no lock. A job is taken from the queue
synchronously, between two awaits, and handed to its task at once, so stopping (which cancels the
intake) can never lose one in flight: a job is either still queued or running.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from sse_batcher.workers.errors import JobQueueFullError
from sse_batcher.workers.job import JobSpec

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)

# Runs one job and says whether it completed (True) or failed (False).
Execute = Callable[[JobSpec], Awaitable[bool]]
# Makes the payload of a job of the worker's own, or None for no more.
NextJob = Callable[[], Awaitable[Any | None]]
# Queues such a payload as a job.
Accept = Callable[[Any], object]

# After next_job() raises, wait this long before asking again, so a broken generator cannot spin.
_GENERATOR_BACKOFF_SECONDS = 1.0


class Dispatcher:
    """Queued jobs, at most ``size``, started in submit order in up to ``concurrency`` slots at once.

    Use it on the event loop only. ``running``, ``done``, ``failed`` and ``abandoned`` count jobs
    as they move on.
    """

    def __init__(self, worker_name: str, size: int, concurrency: int) -> None:
        self._name = worker_name
        self._size = size
        self._concurrency = concurrency
        self._queued: deque[JobSpec] = deque()
        self._job_queued: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._quiet: anyio.Event | None = None
        self._intake_scope: anyio.CancelScope | None = None
        self._jobs_scope: anyio.CancelScope | None = None
        self._jobs_done: anyio.Event | None = None
        self.running = 0
        self.done = 0
        self.failed = 0
        self.abandoned = 0

    # -- the queue -------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        """How many jobs are queued (accepted, not started)."""
        return len(self._queued)

    @property
    def busy(self) -> bool:
        """True while a job is queued or running."""
        return bool(self._queued) or self.running > 0

    def check_room(self, count: int) -> None:
        """Check that ``count`` more jobs fit, before their ids are taken.

        Raises:
            JobQueueFullError: they do not all fit.
        """
        room = self._size - len(self._queued)
        if count > room:
            raise JobQueueFullError(f"worker {self._name!r} has room for {room} more jobs, not {count}; retry later")

    def put(self, specs: list[JobSpec]) -> None:
        """Queue ``specs``, all or none, and wake the dispatcher.

        Raises:
            JobQueueFullError: they do not all fit; none was queued.
        """
        self.check_room(len(specs))
        self._queued.extend(specs)
        if self._queued:
            if self._quiet is not None and self._quiet.is_set():
                self._quiet = None
            if self._job_queued is not None:
                self._job_queued.set()

    async def wait_quiet(self) -> None:
        """Return the next time nothing is found queued or running, or :meth:`close` is called."""
        if self._quiet is None or self._quiet.is_set():
            self._quiet = anyio.Event()
        await self._quiet.wait()

    def close(self) -> None:
        """Release every :meth:`wait_quiet`: the worker has stopped, and nothing more will start."""
        if self._quiet is not None:
            self._quiet.set()

    # -- running jobs ----------------------------------------------------------------------
    def open(self) -> None:
        """Make the parts bound to the event loop; call it on the loop, before :meth:`run`."""
        self._intake_scope = anyio.CancelScope()
        self._jobs_done = anyio.Event()

    async def run(self, execute: Execute, next_job: NextJob, accept: Accept) -> None:
        """Run jobs until :meth:`stop_intake` and the running jobs end, or :meth:`cancel_running`."""
        assert self._jobs_done is not None  # set by open()
        try:
            async with anyio.create_task_group() as jobs:
                self._jobs_scope = jobs.cancel_scope
                jobs.start_soon(self._intake, jobs, execute, next_job, accept, name=f"worker {self._name} intake")
        finally:
            self._jobs_done.set()

    def stop_intake(self) -> None:
        """Start no more jobs and generate none; those running go on."""
        assert self._intake_scope is not None  # set by open()
        self._intake_scope.cancel()

    async def wait_done(self) -> None:
        """Return once the intake has stopped and every running job has ended (at once before open())."""
        if self._jobs_done is not None:
            await self._jobs_done.wait()

    def cancel_running(self, after_seconds: float) -> None:
        """Cancel the jobs still running ``after_seconds`` into a stop; they count as abandoned."""
        if self._jobs_done is None or self._jobs_done.is_set() or self._jobs_scope is None:
            return
        self.abandoned += self.running
        logger.warning(
            "worker %s: %d jobs still running after %.1f s; stopping them", self._name, self.running, after_seconds
        )
        self._jobs_scope.cancel()

    async def _intake(self, jobs: anyio.abc.TaskGroup, execute: Execute, next_job: NextJob, accept: Accept) -> None:
        """Generate jobs (next_job) and dispatch queued ones to free slots, until the intake stops."""
        assert self._intake_scope is not None
        with self._intake_scope:
            async with anyio.create_task_group() as intake:
                intake.start_soon(self._generate, next_job, accept, name=f"worker {self._name} next_job")
                await self._dispatch(jobs, execute)

    async def _generate(self, next_job: NextJob, accept: Accept) -> None:
        assert self._intake_scope is not None
        while True:
            # A next_job() that never awaits must still let the jobs it makes run, and stop.
            await anyio.lowlevel.checkpoint()
            try:
                payload = await next_job()
            except Exception:
                logger.exception(
                    "worker %s: next_job() failed; asking again in %.0f s", self._name, _GENERATOR_BACKOFF_SECONDS
                )
                await anyio.sleep(_GENERATOR_BACKOFF_SECONDS)
                continue
            if payload is None or self._intake_scope.cancel_called:
                return
            while len(self._queued) >= self._size:
                if self._room is None:
                    self._room = anyio.Event()
                await self._room.wait()
            accept(payload)

    async def _dispatch(self, jobs: anyio.abc.TaskGroup, execute: Execute) -> None:
        slots = anyio.Semaphore(self._concurrency)
        while True:
            await slots.acquire()
            try:
                while not self._queued:
                    self._set_quiet_if_idle()
                    self._job_queued = anyio.Event()
                    await self._job_queued.wait()
            except BaseException:
                slots.release()
                raise
            # No await between taking the job and handing it to its task: stop cannot lose it.
            spec = self._queued.popleft()
            self.running += 1
            if self._room is not None:
                self._room.set()
                self._room = None
            jobs.start_soon(self._run_job, spec, slots, execute, name=f"worker {self._name} job {spec.job_id}")

    async def _run_job(self, spec: JobSpec, slots: anyio.Semaphore, execute: Execute) -> None:
        completed = False
        try:
            completed = await execute(spec)
        except Exception:
            # Job exceptions are handled by execute; reaching here is a bug in the bookkeeping.
            logger.exception("worker %s: job %d raised past its handler", self._name, spec.job_id)
        else:
            if completed:
                self.done += 1
            else:
                self.failed += 1
        finally:
            self.running -= 1
            slots.release()
            self._set_quiet_if_idle()

    def _set_quiet_if_idle(self) -> None:
        if not self._queued and not self.running and self._quiet is not None:
            self._quiet.set()
