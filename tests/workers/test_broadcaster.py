from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from sse_batcher.batcher import BufferFullError, EventValidationError, PostgresStore, SSEEventBatcher
from sse_batcher.workers import SSEBroadcaster
from tests.collect import batcher_config, running_batcher


async def test_events_carry_the_worker_name_as_source_and_are_counted_per_type(
    store: PostgresStore, tmp_path: Path
) -> None:
    async with running_batcher(store, tmp_path) as (batcher, collected):
        thumbnail = SSEBroadcaster(batcher, worker_name="thumbnail")

        def work() -> None:
            for job_id in (1, 2, 3):
                thumbnail.emit("JOB_STARTED", {"job_id": job_id})
            thumbnail.emit("JOB_PROGRESS", {"job_id": 1, "percent": 50.0, "step": "resize"})

        await anyio.to_thread.run_sync(work)
        assert await batcher.flush(timeout=20)
    assert {e["source"] for e in collected.events()} == {"thumbnail"}
    assert [m.type for m in collected.messages] == ["JOBS_BATCH_STARTED", "JOB_PROGRESS"]
    stats = thumbnail.get_broadcast_stats()
    assert stats["events_emitted"] == 4
    assert stats["events_by_type"] == {"JOB_STARTED": 3, "JOB_PROGRESS": 1}
    assert stats["emit_errors"] == 0


async def test_unbatched_events_are_stored_alone_and_at_once_while_batched_ones_aggregate(
    store: PostgresStore, tmp_path: Path
) -> None:
    # A 30 s batch timeout and a batch size of 1000: only an unbatched event can leave early, and
    # it leaves alone: the batched worker's events stay buffered until their own batch is due.
    async with running_batcher(store, tmp_path) as (batcher, collected):
        overlay = SSEBroadcaster(batcher, worker_name="overlay", use_batching=False)
        thumbnail = SSEBroadcaster(batcher, worker_name="thumbnail", use_batching=True)
        for job_id in range(1, 6):
            thumbnail.emit("JOB_STARTED", {"job_id": job_id})
        for expected, job_id in enumerate(range(100, 104), start=1):
            overlay.emit("JOB_STARTED", {"job_id": job_id})
            await collected.wait_for_events(expected, source="overlay", timeout=10)
        assert batcher.backlog == 5  # the thumbnail events were not dragged out
        assert [m.source for m in collected.messages] == ["overlay"] * 4
        assert await batcher.flush(timeout=10)
        flushes = batcher.statistics().flushes
        assert (flushes["bypass"], flushes["timeout"], flushes["manual"]) == (4, 0, 1)
    overlay_messages = [m for m in collected.messages if m.source == "overlay"]
    assert [(m.type, m.event_count) for m in overlay_messages] == [("JOB_STARTED", 1)] * 4
    [thumbnails] = [b for b in collected.bodies() if b["source"] == "thumbnail"]
    assert (thumbnails["type"], thumbnails["job_ids"]) == ("JOBS_BATCH_STARTED", [1, 2, 3, 4, 5])


async def test_broadcast_stats_add_up_across_workers(store: PostgresStore, tmp_path: Path) -> None:
    async with running_batcher(store, tmp_path) as (batcher, collected):
        a = SSEBroadcaster(batcher, "a")
        b = SSEBroadcaster(batcher, "b")
        solo = SSEBroadcaster(batcher, "solo", use_batching=False)
        for i in range(7):
            a.emit("JOB_PROGRESS", {"job_id": i, "percent": 10.0, "step": "x"})
        for i in range(4):
            b.emit("JOB_COMPLETED", {"job_id": i})
        for i in range(2):
            solo.emit("JOB_STARTED", {"job_id": 50 + i})
        assert await batcher.flush(timeout=20)
        stats = [x.get_broadcast_stats() for x in (a, b, solo)]
        batcher_stats = batcher.statistics()
    assert sum(s["events_emitted"] for s in stats) == batcher_stats.events_emitted == 13
    for s in stats:
        assert s["batcher_events_batched"] == batcher_stats.events_batched == 11
        assert s["batcher_batches_created"] == batcher_stats.batches_created == 2
        assert s["batcher_events_saved"] == batcher_stats.events_saved == 13 - len(collected.messages) == 9
    assert [s["use_batching"] for s in stats] == [True, True, False]


async def test_use_batching_reports_false_when_batching_is_off_for_everything(
    store: PostgresStore, tmp_path: Path
) -> None:
    async with running_batcher(store, tmp_path, batching_enabled=False) as (batcher, collected):
        thumbnail = SSEBroadcaster(batcher, "thumbnail")
        thumbnail.emit("JOB_STARTED", {"job_id": 1})
        thumbnail.emit("JOB_STARTED", {"job_id": 2})
        await collected.wait_until(lambda: len(collected.messages) == 2, timeout=10)
        assert thumbnail.use_batching is True
        assert thumbnail.get_broadcast_stats()["use_batching"] is False


async def test_full_buffer_waits_on_a_worker_thread_then_raises_and_is_counted(
    store: PostgresStore, tmp_path: Path
) -> None:
    # Not started: nothing flushes the buffer, so it stays full.
    batcher = SSEEventBatcher(store, batcher_config(tmp_path, batch_size=2, max_buffered_events=2))
    worker = SSEBroadcaster(batcher, "thumbnail", emit_timeout_seconds=0.05)
    worker.emit("JOB_STARTED", {"job_id": 1})
    worker.emit("JOB_STARTED", {"job_id": 2})
    waited = threading.Event()

    def emit_from_thread() -> None:
        with pytest.raises(BufferFullError, match="after waiting"):
            worker.emit("JOB_STARTED", {"job_id": 3})
        waited.set()

    await anyio.to_thread.run_sync(emit_from_thread)
    assert waited.is_set()
    with pytest.raises(BufferFullError):
        await worker.aemit("JOB_STARTED", {"job_id": 4})
    stats = worker.get_broadcast_stats()
    assert (stats["events_emitted"], stats["emit_errors"], stats["errors_by_kind"]) == (2, 2, {"BufferFullError": 2})
    await batcher.aclose()


async def test_async_emit_carries_the_worker_name(store: PostgresStore, tmp_path: Path) -> None:
    async with running_batcher(store, tmp_path) as (batcher, collected):
        overlay = SSEBroadcaster(batcher, "overlay", use_batching=False)
        seq = await overlay.aemit("JOB_STARTED", {"job_id": 9})
        await collected.wait_until(lambda: len(collected.messages) == 1, timeout=10)
    [event] = collected.events()
    assert (event["source"], event["seq"], event["data"]) == ("overlay", seq, {"job_id": 9})


def test_invalid_worker_name_is_refused_at_construction(tmp_path: Path) -> None:
    batcher = SSEEventBatcher(store=None, config=batcher_config(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(EventValidationError, match="source"):
        SSEBroadcaster(batcher, "thumb nail")
    with pytest.raises(ValueError, match="emit_timeout_seconds"):
        SSEBroadcaster(batcher, "thumbnail", emit_timeout_seconds=-1)
