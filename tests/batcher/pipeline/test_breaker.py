from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import msgspec
import pytest

from sse_batcher.batcher import BatcherConfig, Message, PostgresStore, SSEEventBatcher, WriteResult
from sse_batcher.batcher.errors import ConfigError
from sse_batcher.batcher.pipeline.breaker import BreakerState, CircuitBreaker
from sse_batcher.batcher.pipeline.facade import FlushReport
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.pg import started_store


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_configured_consecutive_failures_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=3, reset_seconds=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.statistics().short_circuited == 1


def test_after_the_reset_period_exactly_one_probe_decides() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, reset_seconds=10, clock=clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    assert breaker.seconds_until_probe() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN and breaker.probing
    assert not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    stats = breaker.statistics()
    assert (stats.transitions, stats.opened, stats.probes) == (5, 2, 2)
    assert stats.as_dict()["state"] == "closed"


def test_a_probe_that_never_reports_is_replaced_after_another_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, reset_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()  # the probe's write is then cancelled: no outcome
    clock.now += 5
    assert breaker.allow()


def test_invalid_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="failures"):
        CircuitBreaker(failures=0)
    with pytest.raises(ConfigError, match="reset_seconds"):
        CircuitBreaker(reset_seconds=0)


class CountingStore:
    """The real store, counting the writes that reach it."""

    def __init__(self, real: PostgresStore) -> None:
        self.real = real
        self.writes = 0

    async def write(self, messages: Sequence[Message]) -> WriteResult:
        self.writes += 1
        return await self.real.write(messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class Reports:
    """Flush reports, awaited one by one."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[FlushReport](100)

    def __call__(self, report: FlushReport) -> None:
        self.send.send_nowait(report)

    async def next(self) -> FlushReport:
        with anyio.fail_after(20):
            return await self.receive.receive()


async def stored_seqs(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT data::text AS data FROM sse_events ORDER BY id")
    finally:
        await conn.close()
    seqs: list[int] = []
    for row in rows:
        body = msgspec.json.decode(row["data"])
        seqs.extend(e["seq"] for e in body["events"]) if "events" in body else seqs.append(body["seq"])
    return seqs


async def test_breaker_opens_on_a_stopped_postgres_probes_and_closes_when_it_is_back(
    pg_server: EmbeddedPostgres, dsn: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=2, reset_seconds=10, clock=clock)
    cfg = BatcherConfig(
        batch_size=10, batch_timeout_seconds=30.0, max_retries=2, retry_delay_seconds=0.01, data_dir=tmp_path
    )
    reports = Reports()
    seqs: list[int] = []

    def emit_batch() -> None:
        seqs.extend(batcher.emit("JOB_PROGRESS", {"i": len(seqs)}, source="w") for _ in range(10))

    async with started_store(dsn, timeout_seconds=1.0) as real:
        store = CountingStore(real)
        async with SSEEventBatcher(store, cfg, breaker=breaker) as batcher:
            batcher.add_flush_observer(reports)
            emit_batch()
            assert (await reports.next()).stored
            await anyio.to_thread.run_sync(pg_server.stop)
            try:
                # Two failed attempts open the breaker; the third attempt is never made.
                emit_batch()
                assert not (await reports.next()).stored
                assert breaker.state is BreakerState.OPEN
                assert store.writes == 3
                # While open, batches go straight to the dead-letter file: no store round trip.
                for _ in range(3):
                    emit_batch()
                    assert not (await reports.next()).stored
                assert store.writes == 3
                # After the reset period one probe goes out; the server is still down: open again.
                clock.now += 10
                emit_batch()
                assert not (await reports.next()).stored
                assert store.writes == 4
                assert breaker.state is BreakerState.OPEN
            finally:
                await anyio.to_thread.run_sync(pg_server.start_again)
            clock.now += 10
            emit_batch()
            assert (await reports.next()).stored  # the probe wrote the dead-letter file back, then this
            assert breaker.state is BreakerState.CLOSED
            stats = batcher.statistics()
    assert stats.breaker is not None
    assert (stats.breaker.state, stats.breaker.opened, stats.breaker.probes) == ("closed", 2, 2)
    assert stats.breaker.transitions == 5  # closed>open>half_open>open>half_open>closed
    assert stats.dead_lettered_batches == 5
    assert await stored_seqs(dsn) == seqs  # nothing lost, nothing twice, in order
