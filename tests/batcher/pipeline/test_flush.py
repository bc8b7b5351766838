"""The flush loop (``batcher/pipeline/flush.py``): when a batch leaves (size, batch timeout, critical,
bypass, shutdown), on monotonic deadlines, and one write in flight so commits reach listeners in id order."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec
import pytest

from sse_batcher.batcher import AggregationRules, PostgresStore, SSEEventBatcher
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows, stored_seqs
from tests.collect import Collected


async def test_lone_event_is_flushed_by_the_timeout_not_held(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05, leading_edge=False)) as (
        batcher,
        collected,
    ):
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
    cfg = config(tmp_path, batch_size=1000, batch_timeout_seconds=timeout, leading_edge=False)
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


async def test_slow_commits_still_deliver_in_id_order(store: PostgresStore, dsn: str, tmp_path: Path) -> None:
    faulty = FaultyStore(store)
    faulty.slow_seconds = 0.05
    async with running(faulty, config(tmp_path, batch_size=3, batch_timeout_seconds=0.01)) as (batcher, collected):
        seqs = [batcher.emit("T", {"i": i}, source=f"s{i % 2}") for i in range(30)]
        assert await batcher.flush(timeout=20)
    assert [m.id for m in collected.messages] == sorted(m.id for m in collected.messages)
    assert sorted(stored_seqs(await stored_rows(dsn))) == seqs


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
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05, leading_edge=False)) as (
        batcher,
        collected,
    ):
        batcher.emit("T", {}, source="s")
        await collected.wait_for_events(1, timeout=10)
        assert batcher.statistics().flushes["timeout"] == 1


async def test_a_lone_event_on_an_idle_writer_leaves_at_once_not_after_its_timeout(
    store: PostgresStore, tmp_path: Path
) -> None:
    """The leading edge: with a 30 s timeout, the event is stored long before the timeout could fire
    (the test's own timeout bounds the wait), and the flush is counted as ``idle``."""
    async with running(store, config(tmp_path, batch_timeout_seconds=30)) as (batcher, collected):
        batcher.emit("JOB_STARTED", {"job_id": 1}, source="thumb")
        await collected.wait_for_events(1, timeout=10)
        stats = batcher.statistics()
    assert stats.flushes["idle"] == 1
    assert stats.flushes["timeout"] == 0


async def test_a_burst_of_50_emits_from_one_thread_in_one_source_leaves_in_at_most_3_messages(
    store: PostgresStore, tmp_path: Path
) -> None:
    """Coalescing survives the leading edge: the first emit may leave alone, what comes while it is
    written forms the next batch, and that batch may take all the rest (up to the largest batch)."""
    async with running(store, config(tmp_path, batch_timeout_seconds=30)) as (batcher, collected):

        def burst() -> None:
            for i in range(50):
                batcher.emit("JOB_PROGRESS", {"job_id": 1, "i": i}, source="render")

        await anyio.to_thread.run_sync(burst)
        await collected.wait_for_events(50, timeout=10)
    assert [e["data"]["i"] for e in collected.events()] == list(range(50))
    assert len(collected.messages) <= 3


async def test_a_backlog_drains_in_as_few_transactions_as_the_largest_batch_allows(
    store: PostgresStore, tmp_path: Path
) -> None:
    """250 events queued behind a batch size of 10 leave in three writes of at most 100, not 25 of 10."""
    cfg = config(tmp_path, batch_size=10, max_batch_size=100, batch_timeout_seconds=30, leading_edge=False)
    async with running(store, cfg) as (batcher, collected):
        for i in range(250):
            batcher.emit("JOB_PROGRESS", {"job_id": 1, "i": i}, source="render")
        await collected.wait_for_events(250, timeout=10)
        stats = batcher.statistics()
    assert [e["data"]["i"] for e in collected.events()] == list(range(250))
    assert len(collected.messages) == 3
    assert stats.flushes["size"] == 3


async def test_events_soon_after_a_write_wait_for_their_batch_instead_of_leaving_one_by_one(
    store: PostgresStore, tmp_path: Path
) -> None:
    """The writer is idle only when no write ended within the timeout: a steady flow right after a
    write leaves on its size (or timeout), in one commit, not one commit per event."""
    async with running(store, config(tmp_path, batch_size=10, batch_timeout_seconds=30)) as (batcher, collected):
        batcher.emit("JOB_PROGRESS", {"i": 0}, source="render")
        await collected.wait_for_events(1, timeout=10)
        for i in range(1, 11):
            batcher.emit("JOB_PROGRESS", {"i": i}, source="render")
            await anyio.wait_all_tasks_blocked()  # the loop runs, and would write now if it took every event
        await collected.wait_for_events(11, timeout=10)
        stats = batcher.statistics()
    assert [e["data"]["i"] for e in collected.events()] == list(range(11))
    assert len(collected.messages) == 2
    assert (stats.flushes["idle"], stats.flushes["size"]) == (1, 1)
