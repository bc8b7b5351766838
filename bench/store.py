"""Events stored per second end to end, against a peer that INSERTs each event on its own.

Run: ``python -m bench.store [--events N] [--peer-events M] [--batch-size B] [--state on|off]``.

Ours: emit -> buffer -> flush -> aggregate -> one transaction per batch (asyncpg executemany)
-> committed, timed from the first emit until ``flush()`` returns. The peer is what people write
without a batcher: one INSERT in its own transaction per event, on the same PostgreSQL, with the
same payloads. Both run in one process, one after the other, on the same embedded server.

Every event is a job event keyed by its job (``key``), three per job (started, progress, completed),
so ``--state on`` (the default) keeps the latest state of about a third as many keys per batch as
events, closing each job at its ``JOB_COMPLETED``; ``--state off`` (``SSE_STATE_MAX_KEYS=0``) stores
the same events without it. The difference is what the state costs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import asyncpg
import msgspec

from bench._pg import machine, postgres
from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoreConfig

_SOURCES = ("thumbnail", "overlay", "scheduler", "transcoder")
_TYPES = ("JOB_STARTED", "JOB_PROGRESS", "JOB_COMPLETED")


def _event(i: int) -> tuple[str, str, dict[str, object]]:
    return _TYPES[i % 3], _SOURCES[(i // 3) % 4], {"job_id": i // 3, "percent": i % 100, "step": "tile"}


async def ours(dsn: str, events: int, batch_size: int, data_dir: Path, *, state: bool = True) -> tuple[float, float]:
    config = BatcherConfig(batch_size=batch_size, max_buffered_events=max(events, batch_size) + 1, data_dir=data_dir)
    store_config = StoreConfig(dsn=dsn, state_max_keys=100_000 if state else 0)
    async with PostgresStore(store_config) as store, SSEEventBatcher(store, config) as batcher:
        started = time.perf_counter()
        for i in range(events):
            type_, source, data = _event(i)
            batcher.emit(type_, data, source=source, key=str(i // 3))
            if i % 5000 == 4999:
                await asyncio.sleep(0)  # an emitter in the loop's own thread yields now and then
        if not await batcher.flush(timeout=300):
            raise RuntimeError("flush did not finish")
        elapsed = time.perf_counter() - started
        stats = batcher.statistics()
    return events / elapsed, stats.messages_stored / events


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--peer-events", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--state", choices=("on", "off"), default="on", help="keep the latest state per key")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with postgres() as server, tempfile.TemporaryDirectory() as tmp:
        rate, rows = asyncio.run(
            ours(
                server.create_database("store_ours", replace=True),
                args.events,
                args.batch_size,
                Path(tmp),
                state=args.state == "on",
            )
        )
        peer_rate = asyncio.run(peer(server.create_database("store_peer", replace=True), args.peer_events))
        print(
            f"sse-batcher (batch size {args.batch_size}, state {args.state}): {rate:>10,.0f} events/s stored, "
            f"{rows:.4f} rows per event ({args.events:,} events)"
        )
        print(
            f"peer, one INSERT + COMMIT per event:   {peer_rate:>10,.0f} events/s stored, "
            f"1.0000 rows per event ({args.peer_events:,} events)"
        )
        print(f"ratio: {rate / peer_rate:,.1f}x")


if __name__ == "__main__":
    main()
