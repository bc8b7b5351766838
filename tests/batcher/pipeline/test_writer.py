"""BatchWriter: retries back off, the writer reports what it did, and a cancelled write is never lost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import msgspec
import pytest

from sse_batcher.batcher import (
    BufferFullError,
    Message,
    PostgresStore,
    SSEEventBatcher,
    StoreUnavailableError,
    WriteResult,
)
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.log._sql import WRITE_LOCK
from sse_batcher.batcher.log.deadletter import DeadLetterFile
from sse_batcher.batcher.pipeline.aggregate import aggregate
from sse_batcher.batcher.pipeline.writer import BatchWriter
from tests.batcher.pipeline.test_facade import FaultyStore, config, running, stored_rows, stored_seqs
from tests.server.live import until


def batch(first_seq: int, n: int = 3) -> list[Message]:
    events = [Event("T", "s", seq, 1.0, msgspec.Raw(b'{"i":%d}' % seq)) for seq in range(first_seq, first_seq + n)]
    return aggregate(events, "origin")


class FailingStore:
    """The real store, refusing the first ``failures`` writes before they reach PostgreSQL."""

    def __init__(self, real: PostgresStore, failures: int) -> None:
        self.real = real
        self.failures = failures

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailableError("injected: connection refused")
        return await self.real.write(messages)


class FakeTime:
    """A clock that only moves when the writer sleeps: backoff is measured, never waited for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_retries_back_off_exponentially_with_jitter(store: PostgresStore, tmp_path: Path) -> None:
    fake = FakeTime()
    jitters = iter([0.5, 1.5, 1.0])
    writer = BatchWriter(
        FailingStore(store, failures=3),  # type: ignore[arg-type]
        DeadLetterFile(tmp_path),
        max_retries=3,
        retry_delay_seconds=0.2,
        breaker=None,
        clock=fake.clock,
        sleep=fake.sleep,
        jitter=lambda: next(jitters),
    )
    written = await writer.write(batch(1))
    assert fake.sleeps == pytest.approx([0.2 * 0.5, 0.4 * 1.5, 0.8 * 1.0])
    assert len(written.stored) == 1 and not written.kept
    assert writer.retries == 3


async def test_a_batch_failing_past_its_retries_is_reported_kept_and_the_file_is_due_later(
    store: PostgresStore, tmp_path: Path
) -> None:
    fake = FakeTime()
    writer = BatchWriter(
        FailingStore(store, failures=10),  # type: ignore[arg-type]
        DeadLetterFile(tmp_path),
        max_retries=1,
        retry_delay_seconds=0.5,
        breaker=None,
        clock=fake.clock,
        sleep=fake.sleep,
        jitter=lambda: 1.0,
    )
    messages = batch(1)
    written = await writer.write(messages)
    assert written.kept == messages and not written.stored
    assert writer.on_disk
    assert writer.next_write_back_at == pytest.approx(fake.now + 0.5)  # monotonic, owned by the writer


async def test_a_write_cancelled_while_the_file_is_written_back_keeps_its_batch(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    """Shutdown that runs out of time during a write-back must still find the new batch."""
    deadletter = DeadLetterFile(tmp_path)
    deadletter.append(batch(1))  # left by an earlier run
    writer = BatchWriter(store, deadletter, max_retries=0, retry_delay_seconds=0.01, breaker=None)
    await writer.load_dead_letter()
    blocker = await asyncpg.connect(dsn)
    try:
        # Another writer holds the cross-process write lock: the write-back blocks inside PostgreSQL.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(WRITE_LOCK)
        new = batch(10)
        with anyio.move_on_after(0.5):
            await writer.write(new)
        assert writer.take_unwritten() == [new]
        await transaction.rollback()
    finally:
        await blocker.close()


@asynccontextmanager
async def store_and_disk_refusing(
    store: PostgresStore, tmp_path: Path
) -> AsyncIterator[tuple[SSEEventBatcher, FaultyStore]]:
    """A running batcher whose store fails every write and whose dead-letter directory is a file,
    with events 1 and 2 emitted: one batch of two, which neither takes. ``down.plan.clear()`` brings
    the store back; removing ``tmp_path / "deadletter"`` brings the disk back."""
    down = FaultyStore(store, ["fail"] * 10_000)
    cfg = config(tmp_path, max_retries=0, batch_size=2, retry_delay_seconds=0.01)
    async with running(down, cfg) as (batcher, _):
        (tmp_path / "deadletter").write_text("a file where the dead-letter directory should be")
        batcher.emit("T", {"i": 1}, source="s")
        batcher.emit("T", {"i": 2}, source="s")
        yield batcher, down


async def test_a_dead_letter_file_that_cannot_be_written_holds_the_batch_and_refuses_intake_until_it_can(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "deadletter"
    async with store_and_disk_refusing(store, tmp_path) as (batcher, down):
        assert not await batcher.flush(timeout=0.5)
        stats = batcher.statistics()
        assert stats.dead_letter_error is not None and str(blocker) in stats.dead_letter_error
        assert (stats.held_batches, stats.kept_on_disk) == (1, False)
        with pytest.raises(BufferFullError, match="dead-letter"):
            batcher.emit("T", {"i": 3}, source="s")
        with pytest.raises(BufferFullError):
            await batcher.publish([{"type": "T", "data": {"i": 3}}], timeout=1)
        blocker.unlink()  # the disk is back, the store is not: the held batch goes to the file
        await until(lambda: batcher.statistics().kept_on_disk)
        assert (batcher.statistics().dead_letter_error, batcher.statistics().held_batches) == (None, 0)
        batcher.emit("T", {"i": 3}, source="s")
        down.plan.clear()
        assert await batcher.flush(timeout=10)
    assert stored_seqs(await stored_rows(dsn)) == [1, 2, 3]


async def test_a_batch_held_in_memory_is_stored_once_the_store_answers_though_the_disk_still_refuses(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    async with store_and_disk_refusing(store, tmp_path) as (batcher, down):
        assert not await batcher.flush(timeout=0.3)
        down.plan.clear()
        assert await batcher.flush(timeout=10)
        assert batcher.statistics().dead_letter_error is None
        batcher.emit("T", {"i": 3}, source="s")
    assert stored_seqs(await stored_rows(dsn)) == [1, 2, 3]


async def test_a_file_where_the_dead_letter_directory_should_be_at_start_stops_nothing_while_the_store_answers(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    (tmp_path / "deadletter").write_text("not a directory")
    async with running(store, config(tmp_path)) as (batcher, _):
        batcher.emit("T", {"i": 1}, source="s")
        assert await batcher.flush(timeout=10)
        assert batcher.statistics().dead_letter_error is None
    assert stored_seqs(await stored_rows(dsn)) == [1]


async def test_aemit_waits_while_batches_are_held_and_is_accepted_once_the_disk_takes_them(
    store: PostgresStore, dsn: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "deadletter"
    async with store_and_disk_refusing(store, tmp_path) as (batcher, down):
        await until(lambda: batcher.statistics().held_batches == 1)
        seqs: list[int] = []

        async def emit(wait: bool) -> None:
            seqs.append(await batcher.aemit("T", {"i": 3}, source="s", wait=wait, timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(emit, False)
            await anyio.wait_all_tasks_blocked()
            assert (seqs, batcher.backlog) == ([], 0)  # waiting, not accepted
            blocker.unlink()
        down.plan.clear()
        await emit(True)
        assert await batcher.flush(timeout=10)
    assert stored_seqs(await stored_rows(dsn)) == [1, 2, 3, 4]
