from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import asyncpg
import pytest

from sse_batcher.batcher.errors import BatcherClosedError, StoreUnavailableError
from sse_batcher.batcher.events import Message, StoredMessage
from sse_batcher.batcher.log._sql import WRITE_LOCK
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


async def replay_all(store: PostgresStore, after_id: int = 0, **filters: list[str]) -> list[StoredMessage]:
    return [stored async for stored in store.replay(after_id, **filters)]


async def test_write_assigns_increasing_ids_in_message_order(store: PostgresStore) -> None:
    first = await store.write([message(1), message(2), message(3)])
    second = await store.write([message(4)])

    ids = [s.id for s in first.stored + second.stored]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [s.payload for s in first.stored] == [message(i).payload for i in (1, 2, 3)]
    assert first.rejected == [] and second.rejected == []


async def test_rewrite_after_lost_commit_answer_returns_same_ids_and_stores_nothing_twice(
    store: PostgresStore,
) -> None:
    batch = [message(1), message(2), message(3)]
    committed = await store.write(batch)
    # The first commit succeeded but its answer was "lost": the batcher writes the batch again.
    retried = await store.write(batch)

    assert [s.id for s in retried.stored] == [s.id for s in committed.stored]
    assert len(await replay_all(store)) == 3
    stats = store.statistics()
    assert (stats.rows_written, stats.rows_skipped_duplicate, stats.writes) == (3, 3, 2)


async def test_rewrite_of_partly_stored_batch_stores_only_the_missing_rows_after_the_old_ones(
    store: PostgresStore,
) -> None:
    old = await store.write([message(2)])
    result = await store.write([message(1), message(2), message(3)])

    by_key = {m.payload: m.id for m in result.stored}
    assert by_key[message(2).payload] == old.stored[0].id
    assert [s.id for s in result.stored] == sorted(s.id for s in result.stored)
    assert len(await replay_all(store)) == 3


@pytest.mark.parametrize(
    ("bad_payload", "reason"),
    [
        (b'{"text":"\\u0000"}', "UntranslatableCharacterError"),
        (b'{"not json', "InvalidTextRepresentationError"),
        (b'{"bad utf-8":"\xff"}', "CharacterNotInRepertoireError"),
    ],
)
async def test_refused_row_is_rejected_while_rows_around_it_commit_in_order(
    store: PostgresStore, bad_payload: bytes, reason: str
) -> None:
    batch = [message(1), message(2), message(3, payload=bad_payload), message(4), message(5)]
    result = await store.write(batch)

    assert [r.message for r in result.rejected] == [batch[2]]
    assert reason in result.rejected[0].reason
    assert [s.payload for s in result.stored] == [m.payload for m in (batch[0], batch[1], batch[3], batch[4])]
    ids = [s.id for s in result.stored]
    assert ids == sorted(ids)
    assert [s.id for s in await replay_all(store)] == ids
    assert store.statistics().rejected_rows == 1


async def test_row_the_driver_cannot_encode_is_rejected_not_retried(store: PostgresStore) -> None:
    huge = Message(
        idem_key="p1:9",
        type="T",
        event_type="T",
        source="s",
        event_count=2**40,
        first_seq=9,
        last_seq=9,
        ts=0.0,
        payload=b"{}",
    )
    result = await store.write([message(1), huge, message(2)])

    assert [r.message for r in result.rejected] == [huge]
    assert len(result.stored) == 2


async def test_rewrite_of_batch_with_refused_row_is_idempotent(store: PostgresStore) -> None:
    batch = [message(1), message(2, payload=b"nope"), message(3)]
    first = await store.write(batch)
    second = await store.write(batch)

    assert [s.id for s in second.stored] == [s.id for s in first.stored]
    assert len(second.rejected) == 1
    assert len(await replay_all(store)) == 2


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


async def test_store_reconnects_for_reads_after_postgres_restarts(
    pg_server: EmbeddedPostgres, store: PostgresStore
) -> None:
    await store.write([message(1)])
    await anyio.to_thread.run_sync(pg_server.restart)

    await store.ping()
    assert len(await replay_all(store)) == 1


async def test_start_raises_unavailable_when_postgres_cannot_be_reached(tmp_path: Path) -> None:
    store = PostgresStore(store_config(f"postgresql://postgres@/postgres?host={tmp_path}", timeout_seconds=1))
    with pytest.raises(StoreUnavailableError):
        await store.start()


async def test_two_stores_starting_at_once_both_migrate(dsn: str) -> None:
    stores = [PostgresStore(store_config(dsn)) for _ in range(3)]
    async with anyio.create_task_group() as tg:
        for each in stores:
            tg.start_soon(each.start)
    for each in stores:
        await each.aclose()


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


# A trigger that fails the third row of a batch with an error that is not a row refusal (class XX,
# internal error), or kills the writing backend: either way the rows before it must not stay.
_FAULT_TRIGGER = """
CREATE FUNCTION fail_third_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.idem_key = 'p1:3' THEN
        {action};
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER fail_third_row BEFORE INSERT ON sse_events FOR EACH ROW EXECUTE FUNCTION fail_third_row();
"""


@pytest.mark.parametrize(
    "action",
    [
        "RAISE EXCEPTION 'injected fault' USING ERRCODE = 'XX000'",
        "PERFORM pg_terminate_backend(pg_backend_pid())",
    ],
    ids=["internal-error", "backend-killed"],
)
async def test_a_batch_commits_as_one_transaction_or_not_at_all(store: PostgresStore, dsn: str, action: str) -> None:
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(_FAULT_TRIGGER.format(action=action))
        with pytest.raises(StoreUnavailableError):
            await store.write([message(i) for i in range(1, 6)])
        assert await admin.fetchval("SELECT count(*) FROM sse_events") == 0
        await admin.execute("DROP TRIGGER fail_third_row ON sse_events")
    finally:
        await admin.close()
    # The same batch, retried once the fault is gone, is stored whole.
    result = await store.write([message(i) for i in range(1, 6)])
    assert [s.payload for s in result.stored] == [message(i).payload for i in range(1, 6)]
    assert len(await replay_all(store)) == 5


async def _lock_waiters(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return count


async def test_a_write_waits_while_another_process_holds_the_write_lock(store: PostgresStore, dsn: str) -> None:
    """Another server's write transaction, open and holding the lock: ours must queue behind it."""
    other, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        holder = other.transaction()
        await holder.start()
        await other.execute(WRITE_LOCK)
        their_id = await other.fetchval(
            "INSERT INTO sse_events (idem_key, type, event_type, source, data, event_count) "
            "VALUES ('other:1', 'T', 'T', 's', '{}', 1) RETURNING id"
        )
        written = anyio.Event()
        results = []

        async def write() -> None:
            results.append(await store.write([message(1), message(2)]))
            written.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            # Wait for the write to be queued on the lock; finishing first means it never took it.
            while await _lock_waiters(watcher) == 0:
                assert not written.is_set(), "the write did not wait for the write lock"
                await anyio.sleep(0.01)
            assert not written.is_set()
            assert await watcher.fetchval("SELECT count(*) FROM sse_events") == 0
            await holder.commit()
        [result] = results
    finally:
        await other.close()
        await watcher.close()
    assert all(s.id > their_id for s in result.stored)
    assert [s.id for s in await replay_all(store)] == [their_id, *(s.id for s in result.stored)]


async def test_writers_on_separate_pools_commit_in_id_order_so_a_polling_reader_never_skips(dsn: str) -> None:
    """Three stores (three server processes, as far as PostgreSQL can tell) write at once.

    A reader that follows ``id > last`` must end with every id: an id committed after a larger one
    was read would be skipped by it for good.
    """
    writers, batches, size = 3, 60, 5
    seen: list[int] = []
    done = anyio.Event()
    reader = await asyncpg.connect(dsn)

    async def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            rows = await reader.fetch("SELECT id FROM sse_events WHERE id > $1 ORDER BY id", last)
            seen.extend(row[0] for row in rows)
            last = seen[-1] if seen else last
            if finished:
                return

    async def write(store: PostgresStore, origin: str) -> None:
        for batch in range(batches):
            await store.write([message(batch * size + i, origin=origin) for i in range(size)])

    try:
        async with AsyncExitStack() as stack:
            stores = [await stack.enter_async_context(started_store(dsn)) for _ in range(writers)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                async with anyio.create_task_group() as writing:
                    for n, store in enumerate(stores):
                        writing.start_soon(write, store, f"w{n}")
                done.set()
        stored = [row[0] for row in await reader.fetch("SELECT id FROM sse_events ORDER BY id")]
    finally:
        await reader.close()
    assert len(stored) == writers * batches * size
    assert seen == stored, f"the reader skipped {len(set(stored) - set(seen))} ids committed out of order"
