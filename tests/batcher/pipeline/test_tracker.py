"""Acknowledged emits, the tracker's side: each waiter resolves to the id of the message its event committed in."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import msgspec

from sse_batcher.batcher import PostgresStore, SSEEventBatcher
from sse_batcher.batcher.rules import AggregationRules, TypeRule
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows


async def test_publish_returns_the_message_ids_of_committed_events_riding_in_one_batch(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_size=1000, batch_timeout_seconds=0.05)) as (batcher, _):
        events = [{"type": "JOB_STARTED", "data": {"job_id": i}, "source": "a" if i % 2 else "b"} for i in range(6)]
        ids = await batcher.publish(events, timeout=10)
        stats = batcher.statistics()
    rows = {row["id"]: row for row in await stored_rows(dsn)}
    assert len(rows) == 2 and stats.messages_stored == 2  # two aggregates, one flush: no commit per event
    for event, message_id in zip(events, ids, strict=True):
        assert rows[message_id]["source"] == event["source"]


async def test_aemit_wait_returns_the_id_and_keeps_order_with_other_events(
    store: PostgresStore, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, collected):
        batcher.emit("T", {"i": 0}, source="x")
        message_id = await batcher.aemit("T", {"i": 1}, source="x", wait=True, timeout=10)
    assert [m.id for m in collected.messages] == [message_id]  # both in one aggregate


async def test_waiters_registered_from_many_threads_all_resolve(store: PostgresStore, tmp_path: Path) -> None:
    results: list[int] = []
    lock = threading.Lock()
    async with running(store, config(tmp_path, batch_size=7, batch_timeout_seconds=0.02)) as (batcher, collected):

        def work(n: int) -> None:
            for i in range(25):
                message_id = batcher.emit("T", {"i": i}, source=f"t{n}", wait=True, timeout=20)
                with lock:
                    results.append(message_id)

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(anyio.to_thread.run_sync, work, n)
        assert batcher.statistics().acks_waiting == 0
    assert len(results) == 100
    assert set(results) <= {m.id for m in collected.messages}


async def test_the_same_key_twice_in_one_batch_stores_one_row_and_both_get_its_id(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with running(store, config(tmp_path, batch_size=1000, batch_timeout_seconds=0.05)) as (batcher, _):
        event = {"type": "T", "data": {"x": 1}, "idempotency_key": "dup"}
        ids = await batcher.publish([event, event], timeout=10)
        again = await batcher.publish([event], timeout=10)
    assert ids[0] == ids[1] == again[0]
    assert len(await stored_rows(dsn)) == 1


async def test_a_write_back_of_an_earlier_run_resolves_none_of_this_runs_waiters(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    # Run 1 keeps an (api, T) event on disk: seq 1 of its own run.
    down = FaultyStore(store, ["fail"] * 50)
    async with running(down, config(tmp_path, max_retries=0)) as (batcher, _):
        batcher.emit("T", {"run": 1}, source="api")
        await batcher.flush(timeout=0.5)
        assert batcher.statistics().kept_on_disk
    # Run 2 registers two waiters (seqs 1 and 2) before the write-back of run 1's file commits.
    gated = FaultyStore(store)
    gated.gate = anyio.Event()
    async with running(gated, config(tmp_path, batch_timeout_seconds=0.05)) as (batcher, _):
        events = [{"type": "T", "data": {"run": 2}, "source": "api"}] * 2
        async with anyio.create_task_group() as tg:
            ids: list[int] = []

            async def publish() -> None:
                ids.extend(await batcher.publish(events, timeout=10))

            tg.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            gated.gate.set()
    rows = await stored_rows(dsn)
    assert [row["event_count"] for row in rows] == [1, 2]
    assert ids == [rows[1]["id"], rows[1]["id"]]


async def test_a_superseded_event_is_answered_with_the_row_of_the_event_that_superseded_it(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    rules = AggregationRules(types={"T": TypeRule(coalesce="key", max_group_size=1)})
    cfg = config(tmp_path, batch_size=1000, batch_timeout_seconds=0.05)
    async with SSEEventBatcher(store, cfg, rules=rules) as batcher:
        keys = ["a", "b", "a"]
        ids = await batcher.publish([{"type": "T", "data": {"i": i}, "key": k} for i, k in enumerate(keys)], timeout=5)
        assert batcher.statistics().acks_waiting == 0
    bodies = {row["id"]: msgspec.json.decode(row["data"]) for row in await stored_rows(dsn)}
    holding = {body.get("events", [body])[0]["data"]["i"]: row_id for row_id, body in bodies.items()}
    assert ids == [holding[2], holding[1], holding[2]]


async def test_a_folded_identical_event_is_answered_with_the_row_it_was_folded_into(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    # x y z x w: the second x folds into the first part (x y) though its seq lies inside the second (z w).
    rules = AggregationRules(types={"T": TypeRule(group_identical=True, max_group_size=2)})
    cfg = config(tmp_path, batch_size=1000, batch_timeout_seconds=0.05)
    async with SSEEventBatcher(store, cfg, rules=rules) as batcher:
        ids = await batcher.publish([{"type": "T", "data": {"v": v}} for v in "xyzxw"], timeout=5)
        assert batcher.statistics().acks_waiting == 0
    first, second = (row["id"] for row in await stored_rows(dsn))
    assert ids == [first, first, second, first, second]
