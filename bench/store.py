"""Events stored per second end to end, against a peer that INSERTs each event on its own.

Run: ``python -m bench.store [--events N] [--peer-events M] [--batch-size B] [--state on|off|both] [--rounds R]``.

Ours: emit -> buffer -> flush -> aggregate -> one transaction per batch (asyncpg executemany)
-> committed, timed from the first emit until ``flush()`` returns. The peer is what people write
without a batcher: one INSERT in its own transaction per event, on the same PostgreSQL, with the
same payloads. Both run in one process, one after the other, on the same embedded server.

Every event is a job event keyed by its job (``key``), three per job (started, progress, completed),
so ``--state on`` (the default) keeps the latest state of about a third as many keys per batch as
events, closing each job at its ``JOB_COMPLETED``; ``--state off`` (``SSE_STATE_MAX_KEYS=0``) stores
the same events without it. The difference is what the state costs.

``--state both`` measures that difference in one process on one PostgreSQL: ``--rounds`` rounds of
off and on, in turn (off first in odd rounds, on first in even ones, so a drift of the machine's
load falls on both), each on a fresh database. Separate runs of this command vary by more than the
cost being measured; rounds side by side do not. Beside events/s it prints the CPU each event cost,
this process's and PostgreSQL's, which the machine's other load does not stretch.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec

from bench._pg import machine, postgres, postgres_cpu
from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoreConfig
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

_SOURCES = ("thumbnail", "overlay", "scheduler", "transcoder")
_TYPES = ("JOB_STARTED", "JOB_PROGRESS", "JOB_COMPLETED")


def _event(i: int) -> tuple[str, str, dict[str, object]]:
    return _TYPES[i % 3], _SOURCES[(i // 3) % 4], {"job_id": i // 3, "percent": i % 100, "step": "tile"}


@dataclass(frozen=True, slots=True)
class Run:
    """One run of ours: events/s, rows per event, and CPU microseconds per event (ours, PostgreSQL's)."""

    rate: float
    rows_per_event: float
    cpu_us: float
    pg_cpu_us: float


async def ours(dsn: str, events: int, batch_size: int, data_dir: Path, pgdata: Path, *, state: bool = True) -> Run:
    config = BatcherConfig(batch_size=batch_size, max_buffered_events=max(events, batch_size) + 1, data_dir=data_dir)
    store_config = StoreConfig(dsn=dsn, state_max_keys=100_000 if state else 0)
    async with PostgresStore(store_config) as store, SSEEventBatcher(store, config) as batcher:
        pg_before, cpu_before = postgres_cpu(pgdata), time.process_time()
        started = time.perf_counter()
        for i in range(events):
            type_, source, data = _event(i)
            batcher.emit(type_, data, source=source, key=str(i // 3))
            if i % 5000 == 4999:
                await asyncio.sleep(0)  # an emitter in the loop's own thread yields now and then
        if not await batcher.flush(timeout=300):
            raise RuntimeError("flush did not finish")
        elapsed = time.perf_counter() - started
        cpu, pg_cpu = time.process_time() - cpu_before, postgres_cpu(pgdata) - pg_before  # the store's backends live
        stats = batcher.statistics()
    return Run(events / elapsed, stats.messages_stored / events, cpu / events * 1e6, pg_cpu / events * 1e6)


async def peer(dsn: str, events: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS peer_events (id bigserial PRIMARY KEY, type text, source text,"
            " data jsonb, created_at timestamptz DEFAULT now())"
        )
        started = time.perf_counter()
        for i in range(events):
            type_, source, data = _event(i)
            await conn.execute(  # autocommit: one transaction per event
                "INSERT INTO peer_events (type, source, data) VALUES ($1, $2, $3)",
                type_,
                source,
                msgspec.json.encode(data).decode(),
            )
        return events / (time.perf_counter() - started)
    finally:
        await conn.close()


def _compare(server: EmbeddedPostgres, events: int, batch_size: int, rounds: int, tmp: Path) -> None:
    """Rounds of state off and on side by side; print each, the medians and what the state costs."""
    runs: dict[bool, list[Run]] = {False: [], True: []}
    for round_ in range(1, rounds + 1):
        for state in (False, True) if round_ % 2 else (True, False):
            dsn = server.create_database("store_ours", replace=True)
            run = asyncio.run(ours(dsn, events, batch_size, tmp / f"{round_}-{state}", server.pgdata, state=state))
            runs[state].append(run)
            print(
                f"round {round_}, state {'on ' if state else 'off'}: {run.rate:>10,.0f} events/s, "
                f"CPU per event {run.cpu_us:.2f} us here + {run.pg_cpu_us:.2f} us PostgreSQL",
                flush=True,
            )
    off, on = runs[False], runs[True]
    rate_off, rate_on = statistics.median(r.rate for r in off), statistics.median(r.rate for r in on)
    cpu_off = statistics.median(r.cpu_us + r.pg_cpu_us for r in off)
    cpu_on = statistics.median(r.cpu_us + r.pg_cpu_us for r in on)
    print(f"median of {rounds} rounds: state off {rate_off:,.0f} events/s, state on {rate_on:,.0f} events/s")
    paired = statistics.median(1 - b.rate / a.rate for a, b in zip(off, on, strict=True))
    print(f"the state's cost: {1 - rate_on / rate_off:.1%} of events/s (target <= 10 %)")
    print(f"the state's cost, median of the rounds' own costs: {paired:.1%} of events/s")
    print(
        f"CPU per event, this process + PostgreSQL: off {cpu_off:.2f} us, on {cpu_on:.2f} us "
        f"({cpu_on / cpu_off - 1:+.1%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--peer-events", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--state", choices=("on", "off", "both"), default="on", help="keep the latest state per key; both: compare"
    )
    parser.add_argument("--rounds", type=int, default=7, help="with --state both: rounds of off and on")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with postgres() as server, tempfile.TemporaryDirectory() as tmp:
        if args.state == "both":
            _compare(server, args.events, args.batch_size, args.rounds, Path(tmp))
            return
        run = asyncio.run(
            ours(
                server.create_database("store_ours", replace=True),
                args.events,
                args.batch_size,
                Path(tmp),
                server.pgdata,
                state=args.state == "on",
            )
        )
        peer_rate = asyncio.run(peer(server.create_database("store_peer", replace=True), args.peer_events))
        print(
            f"sse-batcher (batch size {args.batch_size}, state {args.state}): {run.rate:>10,.0f} events/s stored, "
            f"{run.rows_per_event:.4f} rows per event ({args.events:,} events), "
            f"CPU per event {run.cpu_us:.2f} us + {run.pg_cpu_us:.2f} us PostgreSQL"
        )
        print(
            f"peer, one INSERT + COMMIT per event:   {peer_rate:>10,.0f} events/s stored, "
            f"1.0000 rows per event ({args.peer_events:,} events)"
        )
        print(f"ratio: {run.rate / peer_rate:,.1f}x")


if __name__ == "__main__":
    main()
