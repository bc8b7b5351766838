"""DemoFarm: a simulated render farm whose events look and arrive like a real one's.

Three workers, side by side, so the dashboard shows what batching does:

- ``thumbnail`` (ThreadWorker, batched): album uploads arrive as clusters of 3-12 images; each
  image is decoded, resized to several sizes, encoded and uploaded in a thread.
- ``overlay`` (AsyncWorker, **use_batching=False**): a steady trickle of video overlays; every one
  of its events is stored and broadcast on its own, immediately.
- ``scheduler`` (AsyncWorker, batched): every few seconds it starts dozens of catalogue re-renders
  at once (the burst batching exists for); :meth:`DemoFarm.burst` asks it for up to 10,000 more.

``rate`` is jobs per second across the farm: half thumbnails, a fifth overlays, the rest scheduled.
About 4% of jobs fail with the errors a render farm really sees (a full disk, a CMYK upload, a
render node that stops answering), as ``JOB_FAILED``. The work is simulated (sleeps), and the
whole farm (work, arrivals, timer) runs ``speed`` times faster than real time: 1 for the
dashboard, more in tests.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from types import TracebackType
from typing import Any, Final

import anyio

from sse_batcher import constants
from sse_batcher.batcher import EventBatcher
from sse_batcher.workers.config import WorkerConfig, WorkerState
from sse_batcher.workers.demo.jobs import JobPlan, album_name, overlay_job, scene_job, thumbnail_job
from sse_batcher.workers.errors import WorkerClosedError
from sse_batcher.workers.flavours import AsyncWorker, ThreadWorker
from sse_batcher.workers.job import AsyncJob, Job, JobIdAllocator
from sse_batcher.workers.worker import Worker

__all__ = ["MAX_BURST", "DemoFarm"]

MAX_BURST: Final = 10_000
_THUMBNAIL_SHARE: Final = 0.5
_OVERLAY_SHARE: Final = 0.2
_SCHEDULER_SHARE: Final = 0.3
_ALBUM_MEAN_IMAGES: Final = 7.5
_SCHEDULER_FIRST_TICK_SECONDS: Final = 2.0
_SCHEDULER_INTERVAL_SECONDS: Final = 5.0


class _Sim:
    """The farm's shared randomness and pace; used on the event loop only."""

    def __init__(self, rate: float, speed: float, failure_rate: float, seed: int | None) -> None:
        self.rate = rate
        self.speed = speed
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)

    def slots(self, share: float, mean_seconds: float, low: int, high: int) -> int:
        """Enough slots for the expected load with headroom for bursts (Little's law, doubled)."""
        return min(high, max(low, math.ceil(2 * share * self.rate * mean_seconds)))

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        await anyio.sleep(seconds / self.speed)


class ThumbnailRenderer(ThreadWorker):
    """Renders thumbnails of uploaded images, in threads; uploads arrive a whole album at a time."""

    def __init__(self, batcher: EventBatcher, sim: _Sim, job_ids: JobIdAllocator) -> None:
        config = WorkerConfig(concurrency=sim.slots(_THUMBNAIL_SHARE, 0.7, 4, 32))
        super().__init__(batcher, "thumbnail", config=config, job_ids=job_ids)
        self._sim = sim
        self._album: deque[JobPlan] = deque()

    async def next_job(self) -> JobPlan | None:
        sim = self._sim
        if not self._album:
            albums_per_second = sim.rate * _THUMBNAIL_SHARE / _ALBUM_MEAN_IMAGES
            if albums_per_second <= 0:
                return None
            await sim.sleep(sim.rng.expovariate(albums_per_second))
            album = album_name(sim.rng)
            self._album.extend(thumbnail_job(sim.rng, sim.failure_rate, album) for _ in range(sim.rng.randint(3, 12)))
        return self._album.popleft()

    def job_name(self, payload: Any) -> str:
        return payload.name if isinstance(payload, JobPlan) else super().job_name(payload)

    def run_job(self, job: Job) -> str:
        plan: JobPlan = job.payload
        for i, (step, seconds) in enumerate(plan.steps):
            job.progress(100 * i / len(plan.steps), step)
            time.sleep(seconds / self._sim.speed)  # the simulated work: this thread is busy meanwhile
            if plan.error is not None and i == plan.fail_at:
                raise plan.error
        return plan.result


class _PlannedAsyncWorker(AsyncWorker):
    """An AsyncWorker that replays :class:`JobPlan` payloads."""

    def __init__(self, batcher: EventBatcher, name: str, sim: _Sim, **kwargs: Any) -> None:
        super().__init__(batcher, name, **kwargs)
        self._sim = sim

    def job_name(self, payload: Any) -> str:
        return payload.name if isinstance(payload, JobPlan) else super().job_name(payload)

    async def run_job(self, job: AsyncJob) -> str:
        plan: JobPlan = job.payload
        for i, (step, seconds) in enumerate(plan.steps):
            await job.progress(100 * i / len(plan.steps), step)
            await self._sim.sleep(seconds)
            if plan.error is not None and i == plan.fail_at:
                raise plan.error
        return plan.result


class OverlayGenerator(_PlannedAsyncWorker):
    """Burns overlays into videos as coroutines; runs with batching off, to show the difference."""

    def __init__(self, batcher: EventBatcher, sim: _Sim, job_ids: JobIdAllocator) -> None:
        config = WorkerConfig(concurrency=sim.slots(_OVERLAY_SHARE, 1.1, 4, 256))
        super().__init__(batcher, "overlay", sim, use_batching=False, config=config, job_ids=job_ids)

    async def next_job(self) -> JobPlan | None:
        sim = self._sim
        per_second = sim.rate * _OVERLAY_SHARE
        if per_second <= 0:
            return None
        await sim.sleep(sim.rng.expovariate(per_second))
        return overlay_job(sim.rng, sim.failure_rate)


class RenderScheduler(_PlannedAsyncWorker):
    """Starts dozens of catalogue re-renders at once on a timer, and bursts on request."""

    def __init__(self, batcher: EventBatcher, sim: _Sim, job_ids: JobIdAllocator) -> None:
        # Room for a full burst on top of a scheduled batch, all started at once.
        config = WorkerConfig(concurrency=MAX_BURST, queue_size=max(constants.SSE_WORKER_QUEUE_SIZE, 2 * MAX_BURST))
        super().__init__(batcher, "scheduler", sim, config=config, job_ids=job_ids)
        self._batch: deque[JobPlan] = deque()
        self._ticks = 0

    async def next_job(self) -> JobPlan | None:
        sim = self._sim
        if not self._batch:
            mean = sim.rate * _SCHEDULER_SHARE * _SCHEDULER_INTERVAL_SECONDS
            if mean <= 0:
                return None
            self._ticks += 1
            await sim.sleep(_SCHEDULER_FIRST_TICK_SECONDS if self._ticks == 1 else _SCHEDULER_INTERVAL_SECONDS)
            count = max(1, round(sim.rng.gauss(mean, math.sqrt(mean))))
            self._batch.extend(scene_job(sim.rng, sim.failure_rate) for _ in range(count))
        return self._batch.popleft()

    def plans(self, count: int) -> list[JobPlan]:
        return [scene_job(self._sim.rng, self._sim.failure_rate) for _ in range(count)]


class DemoFarm:
    """The demo render farm: three workers, a timer that starts bursts, and :meth:`burst` on demand.

    Use as ``async with DemoFarm(batcher) as farm:``. ``rate`` is jobs per second across the farm
    (0: only what :meth:`burst` asks for); ``seed`` makes the jobs reproducible; ``speed`` runs the
    whole simulation that many times faster than real time.

    Raises:
        ValueError: ``rate`` is negative, ``speed`` not positive, ``failure_rate`` outside 0..1.
    """

    def __init__(
        self,
        batcher: EventBatcher,
        rate: float | None = None,
        *,
        seed: int | None = None,
        speed: float = 1.0,
        failure_rate: float = 0.04,
        job_ids: JobIdAllocator | None = None,
    ) -> None:
        rate = constants.SSE_DEMO_RATE if rate is None else rate
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate must be a number of jobs per second >= 0, got {rate!r}")
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be > 0, got {speed!r}")
        if not 0 <= failure_rate <= 1:
            raise ValueError(f"failure_rate must be from 0 to 1, got {failure_rate!r}")
        sim = _Sim(rate, speed, failure_rate, seed)
        job_ids = job_ids or JobIdAllocator()
        self._scheduler = RenderScheduler(batcher, sim, job_ids)
        self._workers: tuple[Worker, ...] = (
            ThumbnailRenderer(batcher, sim, job_ids),
            OverlayGenerator(batcher, sim, job_ids),
            self._scheduler,
        )
        self._state = WorkerState.NEW
        self.rate = rate

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The farm's workers: thumbnail, overlay, scheduler."""
        return self._workers

    async def start(self) -> None:
        """Start every worker; if one fails to start, stop those already started.

        Raises:
            WorkerClosedError: the farm was already started or stopped.
        """
        if self._state is not WorkerState.NEW:
            raise WorkerClosedError(f"cannot start a demo farm that is {self._state.value}")
        self._state = WorkerState.RUNNING
        started: list[Worker] = []
        try:
            for worker in self._workers:
                await worker.start()
                started.append(worker)
        except BaseException:
            with anyio.CancelScope(shield=True):
                for worker in reversed(started):
                    await worker.aclose(0)
            self._state = WorkerState.STOPPED
            raise

    async def aclose(self, timeout: float | None = None) -> None:
        """Stop every worker, letting running jobs finish within ``timeout`` overall. Idempotent.

        Every worker is told to stop first, so they wind down in parallel; then each is closed
        with what remains of the timeout (from the task that started the farm).
        """
        if self._state is WorkerState.STOPPED:
            return
        self._state = WorkerState.STOPPING
        limit = constants.SSE_SHUTDOWN_TIMEOUT_SECONDS if timeout is None else timeout
        deadline = anyio.current_time() + limit
        try:
            for worker in self._workers:
                worker.request_stop()
            # Reverse order: each worker's task group was entered inside the previous one's.
            for worker in reversed(self._workers):
                await worker.aclose(max(0.0, deadline - anyio.current_time()))
        finally:
            self._state = WorkerState.STOPPED

    async def __aenter__(self) -> DemoFarm:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def burst(self, count: int) -> int:
        """Have the scheduler start ``count`` jobs at once (POST /api/demo/burst) and return ``count``.

        Raises:
            ValueError: ``count`` is not an integer from 1 to 10,000.
            JobQueueFullError: the scheduler cannot queue that many more right now; none was queued.
            WorkerClosedError: the farm is stopping or stopped.
        """
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BURST:
            raise ValueError(f"count must be an integer from 1 to {MAX_BURST}, got {count!r}")
        self._scheduler.submit_many(self._scheduler.plans(count))
        return count

    async def wind_down(self) -> None:
        """Tell every worker to stop taking jobs, then wait until their running jobs have finished.

        Callable from any task (the server's drain runs it before its final flush); bound it with
        a timeout. :meth:`aclose` stops whatever is left.
        """
        for worker in self._workers:
            worker.request_stop()
        for worker in self._workers:
            await worker.wind_down()

    async def wait_idle(self) -> None:
        """Return once no worker has a job queued or running (useful with ``rate=0``)."""
        for worker in self._workers:
            await worker.wait_idle()

    def worker_stats(self) -> list[dict[str, Any]]:
        """One dict per worker: name, kind, use_batching, events, jobs_running/done/failed and more."""
        return [worker.get_stats() for worker in self._workers]
