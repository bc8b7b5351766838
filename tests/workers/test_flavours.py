from __future__ import annotations

import threading
from typing import Any

import anyio
import msgspec
import pytest

from sse_batcher.batcher import PostgresStore, SSEEventBatcher
from sse_batcher.workers import AsyncJob, AsyncWorker, Job, ThreadWorker, Worker, WorkerConfig
from tests.collect import Collected


class Thumbnailer(ThreadWorker):
    """The guide's example (docs/guide.md), recording the thread each job ran on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[int] = []

    def run_job(self, job: Job) -> str:
        self.threads.append(threading.get_ident())
        for i in range(5):
            job.progress(percent=(i + 1) * 20, step=f"tile {i + 1}/5")
        return "5 tiles"


class Overlayer(AsyncWorker):
    async def run_job(self, job: AsyncJob) -> str:
        for i in range(5):
            await job.progress(percent=(i + 1) * 20, step=f"tile {i + 1}/5")
        return "5 tiles"


class ThreadPlan(ThreadWorker):
    """Runs the payload: "ok", "fail" (raises OSError 28), "bad-percent", or a threading.Event to wait on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saw_stop: list[bool] = []

    def run_job(self, job: Job) -> str:
        return _plan_step(job.payload, job.progress, self.saw_stop, job)

    def job_name(self, payload: Any) -> str:
        return payload if isinstance(payload, str) else "waits"


def _plan_step(payload: Any, progress: Any, saw_stop: list[bool], job: Job) -> str:
    if payload == "fail":
        progress(50, "write tile")
        raise OSError(28, "No space left on device", "/var/cache/thumbs/a_320.webp")
    if payload == "bad-percent":
        progress(140, "nope")
    if isinstance(payload, tuple):
        started, release = payload
        started.set()
        release.wait(20)
        saw_stop.append(job.stop_requested)
    return f"did {job.name}"


class AsyncPlan(AsyncWorker):
    async def run_job(self, job: AsyncJob) -> str:
        payload = job.payload
        if payload == "fail":
            await job.progress(50, "write tile")
            raise OSError(28, "No space left on device", "/var/cache/thumbs/a_320.webp")
        if payload == "bad-percent":
            await job.progress(140, "nope")
        if isinstance(payload, tuple):
            started, release = payload
            started.set()
            await release.wait()
        return f"did {job.name}"

    def job_name(self, payload: Any) -> str:
        return payload if isinstance(payload, str) else "waits"


FLAVOURS = {"thread": ThreadPlan, "async": AsyncPlan}


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


@pytest.mark.parametrize("flavour", [Thumbnailer, Overlayer])
async def test_job_emits_started_progress_and_completed_in_order(
    env: tuple[SSEEventBatcher, Collected], flavour: type[Worker]
) -> None:
    batcher, collected = env
    async with flavour(batcher, "thumbnail") as worker:
        job_id = worker.submit("IMG_2041.jpg")
        await worker.wait_idle()
        assert await batcher.flush(timeout=20)
        stats = worker.get_stats()
    events = collected.of_job(job_id)
    assert _types(events) == ["JOB_STARTED"] + ["JOB_PROGRESS"] * 5 + ["JOB_COMPLETED"]
    assert {e["source"] for e in events} == {"thumbnail"}
    started, *progress, completed = (e["data"] for e in events)
    assert started["name"] == "IMG_2041.jpg"
    assert started["queued_seconds"] >= 0
    assert [(p["percent"], p["step"]) for p in progress] == [(20.0 * (i + 1), f"tile {i + 1}/5") for i in range(5)]
    assert completed["result"] == "5 tiles"
    assert completed["duration_seconds"] >= 0
    assert (stats["jobs_done"], stats["jobs_failed"], stats["jobs_running"], stats["events"]) == (1, 0, 0, 7)
    assert stats["kind"] == flavour.kind


async def test_thread_worker_runs_jobs_off_the_event_loop_thread(env: tuple[SSEEventBatcher, Collected]) -> None:
    batcher, _ = env
    async with Thumbnailer(batcher, "thumbnail", config=WorkerConfig(concurrency=2)) as worker:
        worker.submit_many(["a", "b", "c"])
        await worker.wait_idle()
    assert len(worker.threads) == 3
    assert threading.get_ident() not in worker.threads


@pytest.mark.parametrize("kind", FLAVOURS)
async def test_exception_in_a_job_becomes_job_failed_and_the_worker_goes_on(
    env: tuple[SSEEventBatcher, Collected], kind: str
) -> None:
    batcher, collected = env
    async with FLAVOURS[kind](batcher, "thumbnail") as worker:
        failing = worker.submit("fail")
        following = worker.submit("ok")
        await worker.wait_idle()
        assert await batcher.flush(timeout=20)
        stats = worker.get_stats()
    failed = collected.of_job(failing)
    assert _types(failed) == ["JOB_STARTED", "JOB_PROGRESS", "JOB_FAILED"]
    data = failed[-1]["data"]
    assert data["error_type"] == "OSError"
    assert data["error_message"] == "[Errno 28] No space left on device: '/var/cache/thumbs/a_320.webp'"
    assert data["duration_seconds"] >= 0
    assert _types(collected.of_job(following)) == ["JOB_STARTED", "JOB_COMPLETED"]
    assert (stats["jobs_done"], stats["jobs_failed"]) == (1, 1)


@pytest.mark.parametrize("kind", FLAVOURS)
async def test_progress_outside_0_to_100_fails_the_job_with_value_error(
    env: tuple[SSEEventBatcher, Collected], kind: str
) -> None:
    batcher, collected = env
    async with FLAVOURS[kind](batcher, "thumbnail") as worker:
        job_id = worker.submit("bad-percent")
        await worker.wait_idle()
        assert await batcher.flush(timeout=20)
    failed = collected.of_job(job_id)[-1]["data"]
    assert (failed["error_type"], failed["error_message"]) == ("ValueError", "percent must be from 0 to 100, got 140")


async def test_stop_lets_the_running_thread_job_finish_and_leaves_queued_ones(
    env: tuple[SSEEventBatcher, Collected],
) -> None:
    batcher, collected = env
    started, release = threading.Event(), threading.Event()
    worker = ThreadPlan(batcher, "thumbnail")

    async def release_once_stopping() -> None:
        await anyio.wait_all_tasks_blocked()  # aclose() is waiting for the job
        assert worker.state.value == "stopping"
        release.set()

    async with anyio.create_task_group() as tg:
        await worker.start()
        running = worker.submit((started, release))
        queued = worker.submit("ok")
        await anyio.to_thread.run_sync(started.wait, 20)
        tg.start_soon(release_once_stopping)
        await worker.aclose()
    assert worker.state.value == "stopped"
    assert worker.saw_stop == [True]
    assert await batcher.flush(timeout=20)
    assert _types(collected.of_job(running)) == ["JOB_STARTED", "JOB_COMPLETED"]
    assert collected.of_job(queued) == []
    stats = worker.get_stats()
    assert (stats["jobs_done"], stats["jobs_unstarted"], stats["jobs_abandoned"]) == (1, 1, 0)


async def test_stop_past_the_timeout_cancels_an_async_job_and_reports_it_failed(
    env: tuple[SSEEventBatcher, Collected],
) -> None:
    batcher, collected = env
    started, never = anyio.Event(), anyio.Event()
    worker = AsyncPlan(batcher, "overlay")
    await worker.start()
    job_id = worker.submit((started, never))
    await started.wait()
    await worker.aclose(timeout=0.01)
    assert await batcher.flush(timeout=20)
    failed = collected.of_job(job_id)[-1]
    assert (failed["type"], failed["data"]["error_type"]) == ("JOB_FAILED", "JobCancelled")
    stats = worker.get_stats()
    assert (stats["jobs_abandoned"], stats["jobs_running"], stats["state"]) == (1, 0, "stopped")


async def test_stop_past_the_timeout_abandons_a_thread_job_which_still_reports_later(
    env: tuple[SSEEventBatcher, Collected],
) -> None:
    batcher, collected = env
    started, release = threading.Event(), threading.Event()
    worker = ThreadPlan(batcher, "thumbnail", use_batching=False)  # so its events arrive without a flush
    await worker.start()
    job_id = worker.submit((started, release))
    await anyio.to_thread.run_sync(started.wait, 20)
    await worker.aclose(timeout=0.01)
    assert worker.get_stats()["jobs_abandoned"] == 1
    release.set()  # a thread cannot be killed: the abandoned job finishes on its own and says so
    await collected.wait_until(lambda: len(collected.of_job(job_id)) == 2)
    assert _types(collected.of_job(job_id)) == ["JOB_STARTED", "JOB_COMPLETED"]


@pytest.mark.parametrize("kind", FLAVOURS)
async def test_every_job_event_is_keyed_by_its_job_id_so_the_state_holds_the_running_jobs(
    env: tuple[SSEEventBatcher, Collected], store: PostgresStore, kind: str
) -> None:
    batcher, collected = env
    new_event: Any = threading.Event if kind == "thread" else anyio.Event
    gate = (new_event(), new_event())
    async with FLAVOURS[kind](batcher, "thumbnail", config=WorkerConfig(concurrency=4)) as worker:
        done = worker.submit("ok")
        failed = worker.submit("fail")
        await worker.wait_idle()
        running = worker.submit(gate)
        if kind == "thread":
            assert await anyio.to_thread.run_sync(gate[0].wait, 20)
        else:
            await gate[0].wait()
        assert await batcher.flush(timeout=20)
        snapshot = await store.snapshot()
        gate[1].set()
        await worker.wait_idle()
    for job_id in (done, failed, running):
        assert {e.get("key") for e in collected.of_job(job_id)} == {str(job_id)}
    body = msgspec.json.decode(snapshot.body)
    assert [(e["key"], e["type"]) for e in body["events"]] == [(str(running), "JOB_STARTED")]
