from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_batcher.batcher import ConfigError, PostgresStore, SSEEventBatcher
from sse_batcher.workers import (
    AsyncJob,
    AsyncWorker,
    JobIdAllocator,
    JobQueueFullError,
    Worker,
    WorkerClosedError,
    WorkerConfig,
    WorkerState,
)
from tests.collect import Collected, batcher_config, running_batcher

DASHBOARD_KEYS = {"name", "use_batching", "kind", "events", "jobs_running", "jobs_done", "jobs_failed"}


class Gated(AsyncWorker):
    """Each job waits for ``gate``; ``seen`` records payloads in the order they ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = anyio.Event()
        self.seen: list[Any] = []

    async def run_job(self, job: AsyncJob) -> str:
        self.seen.append(job.payload)
        await self.gate.wait()
        return "ok"


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


@pytest.fixture
async def env(store: PostgresStore, tmp_path: Path) -> AsyncIterator[tuple[SSEEventBatcher, Collected]]:
    async with running_batcher(store, tmp_path) as running:
        yield running


def _idle_batcher(tmp_path: Path) -> SSEEventBatcher:
    return SSEEventBatcher(store=None, config=batcher_config(tmp_path))  # type: ignore[arg-type]


def test_jobs_get_unique_ids_across_workers_sharing_an_allocator(tmp_path: Path) -> None:
    batcher = _idle_batcher(tmp_path)
    ids = JobIdAllocator(start=100)
    a, b = Gated(batcher, "a", job_ids=ids), Gated(batcher, "b", job_ids=ids)
    assert [a.submit(), b.submit(), *a.submit_many(["x", "y"]), b.submit()] == [100, 101, 102, 103, 104]


def test_submit_to_a_full_queue_raises_and_queues_nothing(tmp_path: Path) -> None:
    worker = Gated(_idle_batcher(tmp_path), "thumbnail", config=WorkerConfig(queue_size=3))
    worker.submit_many(["a", "b"])
    with pytest.raises(JobQueueFullError, match="room for 1 more jobs, not 2"):
        worker.submit_many(["c", "d"])
    worker.submit("c")
    with pytest.raises(JobQueueFullError):
        worker.submit("d")
    assert worker.get_stats()["jobs_queued"] == 3


async def test_start_twice_and_submit_after_stop_raise_worker_closed(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    worker = Gated(batcher, "thumbnail")
    await worker.start()
    with pytest.raises(WorkerClosedError, match="running"):
        await worker.start()
    await worker.aclose()
    await worker.aclose()  # harmless twice
    assert worker.state is WorkerState.STOPPED
    with pytest.raises(WorkerClosedError, match="stopped"):
        worker.submit("late")


async def test_close_before_start_counts_queued_jobs_as_unstarted(tmp_path: Path) -> None:
    worker = Gated(_idle_batcher(tmp_path), "thumbnail")
    worker.submit_many(["a", "b"])
    await worker.aclose()
    assert (worker.state, worker.get_stats()["jobs_unstarted"]) == (WorkerState.STOPPED, 2)


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


async def test_submit_from_another_thread_queues_on_the_loop(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    async with Gated(batcher, "thumbnail") as worker:
        worker.gate.set()
        job_ids: list[int] = []

        def submit_from_thread() -> None:
            job_ids.append(worker.submit("from a thread"))

        thread = threading.Thread(target=submit_from_thread)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
        await worker.wait_idle()
    assert len(job_ids) == 1
    assert worker.seen == ["from a thread"]


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


async def test_stats_have_the_keys_the_dashboard_reads(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    worker: Worker = Gated(batcher, "overlay", use_batching=False)
    stats = worker.get_stats()
    assert DASHBOARD_KEYS <= stats.keys()
    assert (stats["name"], stats["kind"], stats["use_batching"], stats["state"]) == ("overlay", "async", False, "new")


def test_config_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        WorkerConfig(concurrency=0)
    with pytest.raises(ConfigError, match="queue_size"):
        WorkerConfig(queue_size=0)
    with pytest.raises(ValueError, match="stop_timeout_seconds"):
        WorkerConfig(stop_timeout_seconds=-1)
