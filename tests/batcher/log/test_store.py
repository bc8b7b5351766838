from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import asyncpg
import pytest

from sse_batcher.batcher.errors import BatcherClosedError, StoreUnavailableError
from sse_batcher.batcher.events import Message, StoredMessage
from sse_batcher.batcher.log.store import PostgresStore
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.pg import started_store, store_config


def message(
    seq: int,
    *,
    type: str = "JOB_STARTED",
    source: str = "thumbnail",
    payload: bytes | None = None,
    origin: str = "p1",
) -> Message:
    body = {"type": type, "source": source, "seq": seq, "ts": 1.5, "data": {"job_id": seq}}
    return Message(
        idem_key=f"{origin}:{seq}",
        type=type,
        event_type=type,
        source=source,
        event_count=1,
        first_seq=seq,
        last_seq=seq,
        ts=1.5,
        payload=json.dumps(body, separators=(",", ":")).encode() if payload is None else payload,
    )


async def replay_all(
    store: PostgresStore, after_id: int = 0, *, types: list[str] | None = None, sources: list[str] | None = None
) -> list[StoredMessage]:
    return [stored async for stored in store.replay(after_id, types=types, sources=sources)]


async def test_write_assigns_increasing_ids_in_message_order(store: PostgresStore) -> None:
    first = await store.write([message(1), message(2), message(3)])
    second = await store.write([message(4)])

    ids = [s.id for s in first.stored + second.stored]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [s.payload for s in first.stored] == [message(i).payload for i in (1, 2, 3)]
    assert first.rejected == [] and second.rejected == []


async def test_replayed_payload_is_the_same_json_value_read_without_parsing(store: PostgresStore) -> None:
    payload = '{"z":1,"a":{"nested":[1,2.5,"é"]},"big":12345678901234567890}'.encode()
    await store.write([message(1, payload=payload)])

    (replayed,) = await replay_all(store)
    assert isinstance(replayed.payload, bytes)
    assert json.loads(replayed.payload) == json.loads(payload)


async def test_replay_pages_through_rows_and_applies_filters(dsn: str) -> None:
    async with started_store(dsn, replay_page_size=7) as store:
        batch = [
            message(i, type=("JOB_STARTED", "JOB_DONE", "LOG")[i % 3], source=("a", "b")[i % 2]) for i in range(1, 51)
        ]
        stored = (await store.write(batch)).stored
        ids = [s.id for s in stored]

        assert [s.id for s in await replay_all(store)] == ids
        assert [s.id for s in await replay_all(store, ids[19])] == ids[20:]
        assert [s.id for s in await replay_all(store, types=["LOG"])] == [s.id for s in stored if s.event_type == "LOG"]
        assert [s.id for s in await replay_all(store, types=["LOG", "JOB_DONE"], sources=["a"])] == [
            s.id for s in stored if s.event_type in ("LOG", "JOB_DONE") and s.source == "a"
        ]
        assert await replay_all(store, types=["NONE"]) == []
        assert store.statistics().replays == 5


async def test_replay_continues_into_rows_written_after_it_started(dsn: str) -> None:
    async with started_store(dsn, replay_page_size=2) as store:
        await store.write([message(1), message(2), message(3)])
        replay = store.replay(0)
        seen = [await anext(replay), await anext(replay)]
        await store.write([message(4)])
        seen += [s async for s in replay]

    assert [json.loads(s.payload)["seq"] for s in seen] == [1, 2, 3, 4]


async def test_bounds_are_none_when_empty_then_first_and_last_id(store: PostgresStore) -> None:
    assert await store.bounds() == (None, None)
    stored = (await store.write([message(1), message(2), message(3)])).stored

    assert await store.bounds() == (stored[0].id, stored[-1].id)


async def test_delete_expired_deletes_old_rows_in_batches_oldest_first(dsn: str) -> None:
    async with started_store(dsn, retention_seconds=3600, retention_delete_batch=4) as store:
        stored = (await store.write([message(i) for i in range(1, 21)])).stored
        ids = [s.id for s in stored]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE sse_events SET created_at = now() - interval '2 hours' WHERE id <= $1", ids[10])
        finally:
            await conn.close()

        assert await store.delete_expired() == 11
        assert await store.bounds() == (ids[11], ids[-1])
        assert await store.delete_expired() == 0
        assert store.statistics().retention_deleted == 11


async def test_delete_expired_removes_a_prefix_of_ids_so_no_gap_is_left(dsn: str) -> None:
    async with started_store(dsn, retention_seconds=3600) as store:
        ids = [s.id for s in (await store.write([message(i) for i in range(1, 6)])).stored]
        conn = await asyncpg.connect(dsn)
        try:
            # Row 3 is not expired, but an older-by-id neighbour of an expired one.
            await conn.execute("UPDATE sse_events SET created_at = now() - interval '3 hours' WHERE id < $1", ids[2])
            await conn.execute("UPDATE sse_events SET created_at = now() - interval '2 hours' WHERE id = $1", ids[3])
        finally:
            await conn.close()

        assert await store.delete_expired() == 4
        assert [s.id for s in await replay_all(store)] == [ids[4]]


async def test_retention_loop_deletes_expired_rows_at_once_and_again_each_interval(dsn: str) -> None:
    async with started_store(dsn, retention_seconds=1, retention_interval_seconds=3600) as store:
        await store.write([message(1), message(2)])
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("UPDATE sse_events SET created_at = now() - interval '1 hour'")
        finally:
            await conn.close()

        async with anyio.create_task_group() as tg:
            await tg.start(store.run_retention)
            assert store.statistics().retention_deleted == 2
            tg.cancel_scope.cancel()

    assert store.statistics().retention_errors == 0


async def test_retention_loop_counts_a_failed_pass_and_carries_on(pg_server: EmbeddedPostgres, dsn: str) -> None:
    async with started_store(dsn, retention_interval_seconds=3600) as store:
        await anyio.to_thread.run_sync(pg_server.stop)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(store.run_retention)
                tg.cancel_scope.cancel()
        finally:
            await anyio.to_thread.run_sync(pg_server.start_again)

    assert store.statistics().retention_errors == 1


async def test_retention_loop_ends_when_the_store_is_closed(dsn: str) -> None:
    async with started_store(dsn) as store:
        pass
    with anyio.fail_after(5):
        await store.run_retention()


async def test_write_while_postgres_is_stopped_raises_unavailable_and_next_write_after_start_succeeds(
    pg_server: EmbeddedPostgres, store: PostgresStore
) -> None:
    before = (await store.write([message(1)])).stored
    await anyio.to_thread.run_sync(pg_server.stop)
    try:
        with pytest.raises(StoreUnavailableError):
            await store.write([message(2)])
        with pytest.raises(StoreUnavailableError):
            await store.ping()
        stats = store.statistics()
        assert stats.write_errors == 1 and not stats.connected
    finally:
        await anyio.to_thread.run_sync(pg_server.start_again)

    after = (await store.write([message(2)])).stored
    assert after[0].id > before[0].id
    assert store.statistics().connected
    assert [s.id for s in await replay_all(store)] == [before[0].id, after[0].id]


async def test_concurrent_writes_get_distinct_ids_each_batch_ascending(store: PostgresStore) -> None:
    results = []

    async def write(origin: str) -> None:
        results.append(await store.write([message(i, origin=origin) for i in range(10)]))

    async with anyio.create_task_group() as tg:
        for origin in ("a", "b", "c"):
            tg.start_soon(write, origin)

    all_ids = [s.id for r in results for s in r.stored]
    assert len(set(all_ids)) == 30
    for result in results:
        assert [s.id for s in result.stored] == sorted(s.id for s in result.stored)


async def test_closed_store_refuses_work_and_closes_twice(dsn: str) -> None:
    store = PostgresStore(store_config(dsn))
    with pytest.raises(BatcherClosedError):
        await store.write([message(1)])
    await store.start()
    with pytest.raises(BatcherClosedError):
        await store.start()
    await store.aclose()
    await store.aclose()
    with pytest.raises(BatcherClosedError):
        await store.write([message(1)])
    with pytest.raises(BatcherClosedError):
        await store.ping()


async def test_empty_write_is_a_no_op(store: PostgresStore) -> None:
    result = await store.write([])
    assert (result.stored, result.rejected) == ([], [])
    assert store.statistics().writes == 0


async def test_a_replay_page_stops_at_the_byte_bound_and_a_larger_row_goes_alone(dsn: str) -> None:
    async with started_store(dsn, replay_page_size=500, replay_page_bytes=25_000) as store:
        blob = "x" * 10_000
        sizes = [1, 1, 1, 4, 1, 1, 1, 1]  # in blobs of 10 KB: the fourth row alone is over the bound
        batch = [message(i, payload=json.dumps({"blob": blob * n}).encode()) for i, n in enumerate(sizes, 1)]
        ids = [s.id for s in (await store.write(batch)).stored]
        pages: list[list[int]] = []

        @asynccontextmanager
        async def page_permit() -> AsyncIterator[None]:
            pages.append([])
            yield

        async for replayed in store.replay(0, page_permit=page_permit):
            pages[-1].append(replayed.id)
    # A row is in a page while the bytes before it in the page are under the bound: three rows of
    # 10 KB, then the 40 KB row alone (it starts a page). After a page cut by bytes the next asks
    # for twice as many rows as fitted (two), then a page runs to the end.
    assert pages == [ids[0:3], ids[3:4], ids[4:6], ids[6:8]]
