"""A worker's job queue and dispatcher (``workers/_dispatch.py``): a bounded queue, all or nothing, jobs started in
submit order up to the concurrency, and jobs a worker generates itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_batcher.batcher import SSEEventBatcher
from sse_batcher.workers import AsyncJob, AsyncWorker, JobQueueFullError, WorkerConfig
from tests.collect import Collected
from tests.workers.test_worker import Gated, _idle_batcher


class Generating(AsyncWorker):
    """Generates its own jobs from a list, then stops generating."""

    def __init__(self, *args: Any, plan: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plan = list(plan)
        self.seen: list[str] = []
        self.all_seen = anyio.Event()
        self._expected = len(plan)

    async def next_job(self) -> str | None:
        return self.plan.pop(0) if self.plan else None

    async def run_job(self, job: AsyncJob) -> str:
        self.seen.append(job.payload)
        if len(self.seen) == self._expected:
            self.all_seen.set()
        return str(job.payload)


def test_submit_to_a_full_queue_raises_and_queues_nothing(tmp_path: Path) -> None:
    worker = Gated(_idle_batcher(tmp_path), "thumbnail", config=WorkerConfig(queue_size=3))
    worker.submit_many(["a", "b"])
    with pytest.raises(JobQueueFullError, match="room for 1 more jobs, not 2"):
        worker.submit_many(["c", "d"])
    worker.submit("c")
    with pytest.raises(JobQueueFullError):
        worker.submit("d")
    assert worker.get_stats()["jobs_queued"] == 3


async def test_jobs_run_in_submit_order_up_to_the_concurrency_limit(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    async with Gated(batcher, "scheduler", config=WorkerConfig(concurrency=3)) as worker:
        worker.submit_many(range(5))
        await anyio.wait_all_tasks_blocked()
        stats = worker.get_stats()
        assert (stats["jobs_running"], stats["jobs_queued"], worker.seen) == (3, 2, [0, 1, 2])
        worker.gate.set()
        await worker.wait_idle()
        stats = worker.get_stats()
    assert (stats["jobs_running"], stats["jobs_queued"], stats["jobs_done"], worker.seen) == (0, 0, 5, [0, 1, 2, 3, 4])


async def test_next_job_generates_work_until_it_returns_none(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, collected = env
    async with Generating(batcher, "render", plan=["a", "b", "c"]) as worker:
        with anyio.fail_after(20):
            await worker.all_seen.wait()
        await worker.wait_idle()
        assert await batcher.flush(timeout=20)
    assert worker.seen == ["a", "b", "c"]
    started = [e["data"]["name"] for e in collected.events() if e["type"] == "JOB_STARTED"]
    assert started == ["a", "b", "c"]
