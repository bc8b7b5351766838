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
    AggregationRules,
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


async def test_lone_event_is_flushed_by_the_timeout_not_held(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, collected):
        batcher.emit("JOB_STARTED", {"job_id": 1}, source="thumb")
        await collected.wait_for_events(1)
        stats = batcher.statistics()
    assert stats.flushes["timeout"] == 1
    assert stats.flushes["size"] == 0
    assert [m.type for m in collected.messages] == ["JOB_STARTED"]


@pytest.mark.parametrize(
    ("event_type", "rules"),
    [("TICK", AggregationRules(types={})), ("TICK", None), ("JOB_PROGRESS", None)],
    ids=["no-type-timeouts", "batch-timeout", "type-timeout"],
)
async def test_timeout_counts_from_the_oldest_event_so_steady_emits_cannot_hold_a_batch(
    store: PostgresStore, tmp_path: Path, event_type: str, rules: AggregationRules | None
) -> None:
    """Emits every timeout/4 never leave a quiet gap of a whole timeout: a timer restarted on each
    emit would never fire while they go on. Measured from the oldest waiting event, it fires.

    Without any per-type batch timeout the buffer's oldest event sets the deadline; with some (the
    default rules give JOB_PROGRESS one, capped at the batch timeout) a clock per timeout class does:
    all three are checked.
    """
    timeout = 0.2
    cfg = config(tmp_path, batch_size=1000, batch_timeout_seconds=timeout)
    collected = Collected()
    async with SSEEventBatcher(store, cfg, rules=rules) as batcher:
        batcher.add_listener(collected)
        emitted_before_first_flush = None
        for i in range(20 * 4):  # at most 20 timeouts of emitting (a loaded machine); one is enough
            batcher.emit(event_type, {"job_id": 1, "i": i}, source="thumb")
            if collected.messages:
                emitted_before_first_flush = i
                break
            await anyio.sleep(timeout / 4)
        assert emitted_before_first_flush is not None, "no flush while emits kept coming"
        stats = batcher.statistics()
        assert stats.flushes["timeout"] >= 1 and stats.flushes["size"] == 0
        # The flush left while events were still being emitted: the last one emitted is still waiting.
        assert len(collected.events()) <= emitted_before_first_flush
        assert await batcher.flush(timeout=20)
    assert [e["data"]["i"] for e in collected.events()] == list(range(emitted_before_first_flush + 1))


async def test_full_batch_flushes_by_size_as_one_aggregate(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batch_size=3)) as (batcher, collected):
        for job in (1, 2, 3):
            batcher.emit("JOB_STARTED", {"job_id": job}, source="thumb")
        await collected.wait_for_events(3)
        stats = batcher.statistics()
    [message] = collected.messages
    body = msgspec.json.decode(message.payload)
    assert (message.type, body["batch_count"], body["job_ids"]) == ("JOBS_BATCH_STARTED", 3, [1, 2, 3])
    assert stats.flushes["size"] == 1
    assert (stats.events_batched, stats.events_saved, stats.batches_created) == (3, 2, 1)


async def test_critical_event_flushes_at_once(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path)) as (batcher, collected):
        batcher.emit("JOB_STARTED", {"job_id": 1}, source="a")
        batcher.emit("DISK_FULL", {"node": "gpu-3"}, source="a", priority="critical")
        await collected.wait_for_events(2)
        assert batcher.statistics().flushes["critical"] == 1


async def test_flush_stores_and_hands_out_everything_accepted_before_it(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_size=7)) as (batcher, collected):
        seqs = [batcher.emit("JOB_PROGRESS", {"job_id": i % 5, "percent": i}, source=f"w{i % 3}") for i in range(50)]
        assert await batcher.flush(timeout=20)
        assert sorted(e["seq"] for e in collected.events()) == seqs
    ids = [m.id for m in collected.messages]
    assert ids == sorted(ids)
    assert sorted(stored_seqs(await stored_rows(dsn))) == seqs


async def test_close_flushes_everything_and_rejects_later_emits(store: PostgresStore, dsn: str, tmp_path: Path) -> None:
    batcher = SSEEventBatcher(store, config(tmp_path, batch_size=1000))
    await batcher.start()
    seqs = [batcher.emit("JOB_STARTED", {"job_id": i}, source="thumb") for i in range(2500)]
    await batcher.aclose()
    await batcher.aclose()  # idempotent
    assert sorted(stored_seqs(await stored_rows(dsn))) == seqs
    assert batcher.statistics().flushes["shutdown"] >= 1
    with pytest.raises(BatcherClosedError, match="closed"):
        batcher.emit("JOB_STARTED", {"job_id": 1})


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


async def test_slow_commits_still_deliver_in_id_order(store: PostgresStore, dsn: str, tmp_path: Path) -> None:
    faulty = FaultyStore(store)
    faulty.slow_seconds = 0.05
    async with running(faulty, config(tmp_path, batch_size=3, batch_timeout_seconds=0.01)) as (batcher, collected):
        seqs = [batcher.emit("T", {"i": i}, source=f"s{i % 2}") for i in range(30)]
        assert await batcher.flush(timeout=20)
    assert [m.id for m in collected.messages] == sorted(m.id for m in collected.messages)
    assert sorted(stored_seqs(await stored_rows(dsn))) == seqs


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


async def test_dead_letter_file_left_behind_is_written_back_at_start(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    hung = FaultyStore(store, ["hang"])
    batcher = SSEEventBatcher(hung, config(tmp_path, batch_size=1000))
    await batcher.start()
    seqs = [batcher.emit("JOB_STARTED", {"job_id": i}, source="s") for i in range(10)]
    await batcher.aclose(timeout=0.2)  # the store hangs: shutdown gives up and keeps it on disk
    assert DeadLetterFile(tmp_path / "deadletter").count_batches() >= 1
    assert await stored_rows(dsn) == []

    async with running(store, config(tmp_path)) as (second, collected):
        await collected.wait_for_events(10)
        assert await second.flush(timeout=10)
    assert stored_seqs(await stored_rows(dsn)) == seqs
    assert DeadLetterFile(tmp_path / "deadletter").count_batches() == 0


async def test_emits_before_start_are_flushed_once_started(store: PostgresStore, tmp_path: Path) -> None:
    batcher = SSEEventBatcher(store, config(tmp_path, batch_timeout_seconds=0.01))
    batcher.emit("JOB_STARTED", {"job_id": 1})
    collected = Collected()
    batcher.add_listener(collected)
    async with batcher:
        await collected.wait_for_events(1)


async def test_start_twice_is_a_clear_error(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path)) as (batcher, _):
        with pytest.raises(BatcherClosedError, match="running"):
            await batcher.start()


async def test_batching_switched_off_sends_every_event_alone_and_at_once(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batching_enabled=False)) as (batcher, collected):
        for i in range(3):
            batcher.emit("JOB_STARTED", {"job_id": i}, source="s")
        await collected.wait_for_events(3)  # a 30 s timeout: only the bypass can have sent them
        stats = batcher.statistics()
    assert [(m.type, m.event_count) for m in collected.messages] == [("JOB_STARTED", 1)] * 3
    assert stats.flushes["timeout"] == 0 and stats.flushes["bypass"] >= 1
    assert stats.events_saved == 0


async def test_close_flushes_bypass_and_batched_events_alike(store: PostgresStore, dsn: str, tmp_path: Path) -> None:
    batcher = SSEEventBatcher(store, config(tmp_path, batch_size=1000))
    batched = [batcher.emit("A", {"i": i}, source="s") for i in range(5)]
    alone = [batcher.emit("B", {"i": i}, source="t", batched=False) for i in range(5)]
    await batcher.start()
    await batcher.aclose()
    assert sorted(stored_seqs(await stored_rows(dsn))) == batched + alone


async def test_a_wall_clock_step_neither_stalls_nor_hurries_the_timeout(
    store: PostgresStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deadlines are monotonic: an event stamped an hour in the future (the clock stepped) still
    leaves after the batch timeout, not an hour later."""
    import time as time_module

    import sse_batcher.batcher.pipeline.buffer as buffer_module

    monkeypatch.setattr(buffer_module, "_now", lambda: time_module.time() + 3600.0)
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, collected):
        batcher.emit("T", {}, source="s")
        await collected.wait_for_events(1, timeout=10)
        assert batcher.statistics().flushes["timeout"] == 1
