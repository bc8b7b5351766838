"""Acknowledged emits, the caller's side (``batcher/pipeline/acks.py``): a worker thread blocks until its
event is committed, and a wait that runs out says whether the events are buffered or kept on disk."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest

from sse_batcher.batcher import AckTimeoutError, BatcherError, PostgresStore, SSEEventBatcher
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows


async def test_emit_wait_from_a_worker_thread_blocks_until_committed(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, _):
        ids = await anyio.to_thread.run_sync(
            lambda: [batcher.emit("T", {"i": i}, source="w", wait=True, timeout=10) for i in range(3)]
        )
        with pytest.raises(BatcherError, match="would block the event loop"):
            batcher.emit("T", {}, source="w", wait=True)
    stored = {row["id"] for row in await stored_rows(dsn)}
    assert set(ids) <= stored


async def test_not_committed_in_time_says_kept(store: PostgresStore, tmp_path: Path) -> None:
    faulty = FaultyStore(store, ["fail"] * 50)
    async with running(faulty, config(tmp_path, max_retries=0, batch_timeout_seconds=0.02)) as (batcher, _):
        with pytest.raises(AckTimeoutError) as caught:
            await batcher.publish([{"type": "T", "data": {}}], timeout=1.0)
    assert caught.value.state == "kept"
    assert caught.value.kept is True
    assert caught.value.ids == [None]


async def test_not_committed_in_time_while_still_buffered_is_not_kept(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=30, leading_edge=False)) as (batcher, _):
        with pytest.raises(AckTimeoutError) as caught:
            await batcher.publish([{"type": "T", "data": {}}], timeout=0.1)
    assert (caught.value.state, caught.value.kept) == ("buffered", False)


async def test_events_kept_on_disk_at_shutdown_are_answered_kept(store: PostgresStore, tmp_path: Path) -> None:
    hung = FaultyStore(store, ["hang"])
    batcher = SSEEventBatcher(hung, config(tmp_path, batch_size=1))
    errors: list[AckTimeoutError] = []

    async def publish(i: int) -> None:
        with pytest.raises(AckTimeoutError) as caught:
            await batcher.publish([{"type": "T", "data": {"i": i}}], timeout=30)
        errors.append(caught.value)

    async with anyio.create_task_group() as tg:
        await batcher.start()  # inside the task group: its own scope closes first
        tg.start_soon(publish, 0)  # its batch hangs in the write
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(publish, 1)  # stays in the buffer
        await anyio.wait_all_tasks_blocked()
        await batcher.aclose(timeout=0.2)
    assert [(e.state, e.kept) for e in errors] == [("kept", True), ("kept", True)]
    assert DeadLetterFile(tmp_path / "deadletter").count_batches() == 2


async def test_emit_wait_keeps_one_deadline_for_room_and_commit_together(store: PostgresStore, tmp_path: Path) -> None:
    limit = 2.0
    gated = FaultyStore(store, ["ok", "hang"])  # the first write waits for the gate, the second never answers
    gated.gate = anyio.Event()
    batcher = SSEEventBatcher(gated, config(tmp_path, batch_size=2, max_buffered_events=2))
    await batcher.start()
    try:
        for i in range(2):
            batcher.emit("T", {"i": i})
        await anyio.wait_all_tasks_blocked()  # the flush loop holds these two at the gate
        for i in range(2, 4):
            batcher.emit("T", {"i": i})  # now the buffer is full
        outcome: list[BaseException] = []
        elapsed: list[float] = []

        def emitter() -> None:
            started = time.monotonic()
            try:
                batcher.emit("T", {"i": 4}, wait=True, timeout=limit)
            except Exception as exc:
                outcome.append(exc)
            elapsed.append(time.monotonic() - started)

        thread = threading.Thread(target=emitter)
        thread.start()
        # Room comes late in the limit (this wait is the scenario, not a synchronisation): most of
        # the limit is spent waiting for room, and the event then sits behind a write that hangs.
        await anyio.sleep(limit * 0.75)
        gated.gate.set()
        await anyio.to_thread.run_sync(thread.join)
    finally:
        await batcher.aclose(timeout=0.2)
    assert len(outcome) == 1 and isinstance(outcome[0], AckTimeoutError)
    # One limit for the whole call: spending it twice would take 1.75 limits here.
    assert elapsed[0] < limit * 1.4


async def test_end_waits_answers_a_waiting_publish_at_once_and_a_late_commit_still_stores_it(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=30, leading_edge=False)) as (batcher, _):
        errors: list[AckTimeoutError] = []

        async def publish() -> None:
            with pytest.raises(AckTimeoutError) as caught:
                await batcher.publish([{"type": "T", "data": {"m": "waited"}}], timeout=30)
            errors.append(caught.value)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                await anyio.wait_all_tasks_blocked()
                batcher.end_waits()
        with anyio.fail_after(5), pytest.raises(AckTimeoutError, match="stopped waiting"):
            await batcher.publish([{"type": "T", "data": {"m": "late"}}], timeout=30)  # answered at once
        assert await batcher.flush(5)
    assert [(e.state, e.kept, e.ids) for e in errors] == [("buffered", False, [None])]
    stored = " ".join(row["data"] for row in await stored_rows(dsn))
    assert "waited" in stored and "late" in stored
