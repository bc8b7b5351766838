from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest

from sse_batcher.batcher import (
    BatcherClosedError,
    BatcherConfig,
    BufferFullError,
    EventValidationError,
    Message,
    PostgresStore,
    SSEEventBatcher,
    StoreUnavailableError,
    WriteResult,
)
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.collect import Collected, batcher_config
from tests.pg import started_store


class FaultyStore:
    """The real PostgresStore with faults injected in front of (or after) its writes.

    ``plan`` is consumed one entry per write: "ok", "fail" (refused before reaching PostgreSQL),
    "lost" (committed, but the answer is lost on the way back), "hang" (never answers).
    """

    def __init__(self, real: PostgresStore, plan: Sequence[str] = ()) -> None:
        self.real = real
        self.plan = list(plan)
        self.calls = 0
        self.slow_seconds = 0.0
        self.gate: anyio.Event | None = None

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        self.calls += 1
        step = self.plan.pop(0) if self.plan else "ok"
        if step == "fail":
            raise StoreUnavailableError("injected: connection refused")
        if step == "hang":
            await anyio.sleep_forever()
        if self.gate is not None:
            await self.gate.wait()
        if self.slow_seconds:
            await anyio.sleep(self.slow_seconds)
        result = await self.real.write(messages)
        if step == "lost":
            raise StoreUnavailableError("injected: connection lost during COMMIT")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def config(tmp_path: Path, **overrides: Any) -> BatcherConfig:
    """Small batches, a 30 s timeout (so only what a test causes flushes), quick retries."""
    return batcher_config(tmp_path, **{"batch_size": 10, **overrides})


@asynccontextmanager
async def running(store: Any, cfg: BatcherConfig) -> AsyncIterator[tuple[SSEEventBatcher, Collected]]:
    collected = Collected()
    async with SSEEventBatcher(store, cfg) as batcher:
        batcher.add_listener(collected)
        yield batcher, collected


async def stored_rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        query = "SELECT id, type, source, event_count, data::text AS data FROM sse_events ORDER BY id"
        return list(await conn.fetch(query))
    finally:
        await conn.close()


def stored_seqs(rows: Sequence[asyncpg.Record]) -> list[int]:
    seqs: list[int] = []
    for row in rows:
        body = msgspec.json.decode(row["data"])
        seqs.extend(e["seq"] for e in body["events"]) if "events" in body else seqs.append(body["seq"])
    return seqs


async def test_invalid_event_raises_and_changes_nothing(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path)) as (batcher, _):
        with pytest.raises(EventValidationError, match="type"):
            batcher.emit("job started", {})
        with pytest.raises(EventValidationError, match="data"):
            batcher.emit("JOB_STARTED", {"blob": "x" * 70_000})
        with pytest.raises(EventValidationError, match="priority"):
            batcher.emit("JOB_STARTED", {}, priority="urgent")
        with pytest.raises(EventValidationError, match="type"):
            batcher.emit(["JOB_STARTED"], {})  # type: ignore[arg-type]  # unhashable: still a clear error
        with pytest.raises(EventValidationError, match="source"):
            batcher.emit("JOB_STARTED", {}, source={"a": 1})  # type: ignore[arg-type]
        with pytest.raises(EventValidationError) as err:
            batcher.emit_many([{"type": "OK", "data": {}}, {"type": "OK", "data": [1]}])
        assert getattr(err.value, "index", None) == 1
        assert batcher.statistics().events_emitted == 0


async def test_full_buffer_raises_on_the_loop_and_aemit_waits_for_room(store: PostgresStore, tmp_path: Path) -> None:
    gated = FaultyStore(store)
    gated.gate = anyio.Event()
    cfg = config(tmp_path, batch_size=5, max_buffered_events=5)
    async with running(gated, cfg) as (batcher, collected):
        for i in range(5):
            batcher.emit("T", {"i": i})
        await anyio.wait_all_tasks_blocked()  # the flush loop holds the first 5, in its write
        for i in range(5, 10):
            batcher.emit("T", {"i": i})
        with pytest.raises(BufferFullError):
            batcher.emit("T", {"i": 10})
        assert batcher.statistics().rejected_full == 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(batcher.aemit, "T", {"i": 10})
            await anyio.wait_all_tasks_blocked()
            gated.gate.set()
        assert await batcher.flush(timeout=20)
    assert sorted(e["data"]["i"] for e in collected.events()) == list(range(11))


async def test_concurrent_emit_from_eight_threads_is_stored_once_in_per_source_order(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_size=200, batch_timeout_seconds=0.05)) as (batcher, coll):

        def emitter(n: int) -> None:
            for i in range(1000):
                batcher.emit("JOB_PROGRESS", {"job_id": n, "i": i}, source=f"w{n}", timeout=10)

        threads = [threading.Thread(target=emitter, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        await anyio.to_thread.run_sync(lambda: [t.join() for t in threads])
        assert await batcher.flush(timeout=30)
    events = coll.events()
    assert len(events) == 8000
    assert sorted(e["seq"] for e in events) == list(range(1, 8001))
    for n in range(8):
        assert [e["data"]["i"] for e in events if e["source"] == f"w{n}"] == list(range(1000))
    assert len(stored_seqs(await stored_rows(dsn))) == 8000


@pytest.mark.parametrize("plan", [["fail"], ["fail", "fail"], ["lost"], ["lost", "fail"]])
async def test_retried_writes_lose_nothing_and_store_nothing_twice(
    store: PostgresStore, dsn: str, tmp_path: Path, plan: list[str]
) -> None:
    faulty = FaultyStore(store, plan)
    async with running(faulty, config(tmp_path, batch_size=5)) as (batcher, collected):
        seqs = [batcher.emit("JOB_STARTED", {"job_id": i}, source="s") for i in range(5)]
        assert await batcher.flush(timeout=20)
        stats = batcher.statistics()
    assert stats.retries == len(plan)
    assert stats.failed_writes == len(plan)
    assert stored_seqs(await stored_rows(dsn)) == seqs
    assert sorted(e["seq"] for e in collected.events()) == seqs


async def test_batch_failing_past_retries_is_dead_lettered_then_written_back_in_order(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    faulty = FaultyStore(store, ["fail", "fail", "fail", "fail"])
    async with running(faulty, config(tmp_path, batch_size=3, max_retries=2)) as (batcher, collected):
        first = [batcher.emit("A", {"i": i}, source="s") for i in range(3)]  # 3 failures -> dead letter
        await anyio.wait_all_tasks_blocked()
        second = [batcher.emit("B", {"i": i}, source="s") for i in range(3)]  # queued behind the file
        assert await batcher.flush(timeout=20)
        stats = batcher.statistics()
    assert stats.dead_lettered_batches >= 1
    assert not stats.kept_on_disk
    assert stored_seqs(await stored_rows(dsn)) == first + second
    assert [e["seq"] for e in collected.events()] == first + second
    assert DeadLetterFile(tmp_path / "deadletter").count_batches() == 0


async def test_postgres_stopped_and_started_mid_stream_loses_and_duplicates_nothing(
    pg_server: EmbeddedPostgres, dsn: str, tmp_path: Path
) -> None:
    async with started_store(dsn, timeout_seconds=1.0) as store:
        cfg = config(tmp_path, batch_size=20, batch_timeout_seconds=0.02, max_retries=1)
        async with running(store, cfg) as (batcher, collected):
            dead_lettered = anyio.Event()
            batcher.add_flush_observer(lambda report: None if report.stored else dead_lettered.set())
            seqs = [batcher.emit("JOB_PROGRESS", {"i": i}, source="s") for i in range(100)]
            assert await batcher.flush(timeout=20)
            await anyio.to_thread.run_sync(pg_server.stop)
            try:
                seqs += [batcher.emit("JOB_PROGRESS", {"i": i}, source="s") for i in range(100, 300)]
                with anyio.fail_after(20):
                    await dead_lettered.wait()
                seqs += [batcher.emit("JOB_PROGRESS", {"i": i}, source="s") for i in range(300, 400)]
            finally:
                await anyio.to_thread.run_sync(pg_server.start_again)
            with anyio.fail_after(30):
                while not await batcher.flush(timeout=5):
                    pass
            stats = batcher.statistics()
    assert stats.dead_lettered_batches >= 1
    assert stored_seqs(await stored_rows(dsn)) == seqs
    delivered = [e["seq"] for e in collected.events()]
    assert delivered == seqs


async def test_emits_before_start_are_flushed_once_started(store: PostgresStore, tmp_path: Path) -> None:
    batcher = SSEEventBatcher(store, config(tmp_path, batch_timeout_seconds=0.01))
    batcher.emit("JOB_STARTED", {"job_id": 1})
    collected = Collected()
    batcher.add_listener(collected)
    async with batcher:
        await collected.wait_for_events(1)


@pytest.mark.parametrize("wait", [False, True])
async def test_aemit_waiting_for_room_raises_batcher_closed_when_closed(
    store: PostgresStore, tmp_path: Path, wait: bool
) -> None:
    hung = FaultyStore(store, ["hang"])
    batcher = SSEEventBatcher(hung, config(tmp_path, batch_size=2, max_buffered_events=2))
    outcome: list[str] = []

    async def waiter() -> None:
        with pytest.raises(BatcherClosedError):
            await batcher.aemit("T", {"i": 4}, wait=wait, timeout=60)
        outcome.append("closed")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await batcher.start()  # its task group nests in this one, so aclose() below may end it
            for i in range(2):
                batcher.emit("T", {"i": i})
            await anyio.wait_all_tasks_blocked()  # the flush loop holds these two in its hung write
            for i in range(2, 4):
                batcher.emit("T", {"i": i})  # now the buffer is full
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await batcher.aclose(timeout=0.2)
    assert outcome == ["closed"]
    with pytest.raises(BatcherClosedError):
        await batcher.aemit("T", {"i": 5}, wait=wait)
