"""BatcherCore (``batcher/pipeline/_core.py``): start once, flush() on request, and a close that stores
what is held or keeps it in the dead-letter file for the next start."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import msgspec
import pytest

from sse_batcher.batcher import BatcherClosedError, PostgresStore, SSEEventBatcher
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows, stored_seqs


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


async def test_start_twice_is_a_clear_error(store: PostgresStore, tmp_path: Path) -> None:
    async with running(store, config(tmp_path)) as (batcher, _):
        with pytest.raises(BatcherClosedError, match="running"):
            await batcher.start()


def kept_seqs(directory: Path) -> list[int]:
    """The seqs of every event in the dead-letter file under ``directory``."""
    seqs: list[int] = []
    for batch in DeadLetterFile(directory / "deadletter").batches():
        for message in batch:
            body = msgspec.json.decode(message.payload)
            seqs.extend(e["seq"] for e in body["events"]) if "events" in body else seqs.append(body["seq"])
    return seqs


async def test_close_during_a_hung_write_loses_no_event_of_threads_waiting_for_room(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    hung = FaultyStore(store, ["hang"])
    batcher = SSEEventBatcher(hung, config(tmp_path, batch_size=2, max_buffered_events=2))
    await batcher.start()
    accepted = [batcher.emit("T", {"i": i}, source="s") for i in range(2)]
    await anyio.wait_all_tasks_blocked()  # the flush loop holds these two in its hung write
    accepted += [batcher.emit("T", {"i": i}, source="s") for i in range(2, 4)]  # now the buffer is full
    outcomes: list[int | BaseException] = []

    def emitter(n: int) -> None:
        try:
            outcomes.append(batcher.emit("T", {"n": n}, source=f"w{n}", timeout=5))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    with anyio.fail_after(10):
        # The threads block in a Condition: there is no event to await, so look until all four wait.
        while batcher._buffer.room.waiting < len(threads):  # noqa: ASYNC110
            await anyio.sleep(0.005)
    await batcher.aclose(timeout=0.2)  # the write still hangs: what is held goes to the dead-letter file
    await anyio.to_thread.run_sync(lambda: [t.join() for t in threads])

    accepted += [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if not isinstance(o, int)]
    assert sorted(stored_seqs(await stored_rows(dsn)) + kept_seqs(tmp_path)) == sorted(accepted)
    assert all(isinstance(o, BatcherClosedError) for o in refused), refused


async def test_close_of_a_never_started_batcher_stores_what_was_emitted(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    batcher = SSEEventBatcher(store, config(tmp_path))
    seqs = [batcher.emit("T", {"i": i}, source="s") for i in range(5)]
    await batcher.aclose()
    assert stored_seqs(await stored_rows(dsn)) == seqs
    with pytest.raises(BatcherClosedError):
        batcher.emit("T", {"i": 5})


async def test_close_of_a_never_started_batcher_keeps_on_disk_what_the_store_does_not_take(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    batcher = SSEEventBatcher(FaultyStore(store, ["hang"]), config(tmp_path))
    seqs = [batcher.emit("T", {"i": i}, source="s") for i in range(5)]
    await batcher.aclose(timeout=0.2)
    assert await stored_rows(dsn) == []
    assert sorted(kept_seqs(tmp_path)) == seqs
