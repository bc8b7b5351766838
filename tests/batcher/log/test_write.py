"""Writing one batch (``batcher/log/_write.py``): one transaction, ids in commit order, a retry that stores
nothing twice, a refused row left out while the rows around it commit."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import asyncpg
import msgspec
import pytest

from sse_batcher.batcher.errors import StoreUnavailableError
from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log._sql import WRITE_LOCK
from sse_batcher.batcher.log.store import PostgresStore
from tests.batcher.log.test_store import message, replay_all
from tests.pg import started_store


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


def _keyed(seq: int, digest: str) -> Message:
    return msgspec.structs.replace(message(seq), idem_key="k:order-1", idem_digest=digest)


async def test_a_key_stored_with_other_content_is_a_conflict_left_out_and_the_same_content_a_retry(
    store: PostgresStore,
) -> None:
    first = await store.write([_keyed(1, "aaaa")])
    retried = await store.write([_keyed(2, "aaaa")])
    conflicting = await store.write([_keyed(3, "bbbb"), message(4)])
    assert [s.id for s in retried.stored] == [s.id for s in first.stored] and not retried.rejected
    [conflict] = conflicting.rejected
    assert conflict.conflict and conflict.message.idem_digest == "bbbb"
    assert [s.idem_key for s in conflicting.stored] == ["p1:4"]
    assert len(await replay_all(store)) == 2


async def test_a_key_twice_in_one_batch_with_other_content_stores_the_first_and_refuses_the_second(
    store: PostgresStore,
) -> None:
    result = await store.write([_keyed(1, "aaaa"), _keyed(2, "bbbb")])
    [conflict] = result.rejected
    assert conflict.conflict and conflict.message.first_seq == 2
    assert [s.idem_key for s in result.stored] == ["k:order-1"]
    assert len(await replay_all(store)) == 1
