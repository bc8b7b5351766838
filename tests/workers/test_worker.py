from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from sse_batcher.batcher import SSEEventBatcher
from sse_batcher.workers import (
    AsyncJob,
    AsyncWorker,
    JobIdAllocator,
    Worker,
    WorkerClosedError,
    WorkerState,
)
from tests.collect import Collected, batcher_config

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


def _idle_batcher(tmp_path: Path) -> SSEEventBatcher:
    return SSEEventBatcher(store=None, config=batcher_config(tmp_path))  # type: ignore[arg-type]


def test_jobs_get_unique_ids_across_workers_sharing_an_allocator(tmp_path: Path) -> None:
    batcher = _idle_batcher(tmp_path)
    ids = JobIdAllocator(start=100)
    a, b = Gated(batcher, "a", job_ids=ids), Gated(batcher, "b", job_ids=ids)
    assert [a.submit(), b.submit(), *a.submit_many(["x", "y"]), b.submit()] == [100, 101, 102, 103, 104]


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


async def test_stats_have_the_keys_the_dashboard_reads(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    worker: Worker = Gated(batcher, "overlay", use_batching=False)
    stats = worker.get_stats()
    assert DASHBOARD_KEYS <= stats.keys()
    assert (stats["name"], stats["kind"], stats["use_batching"], stats["state"]) == ("overlay", "async", False, "new")
