"""What a digest pass costs: ingesting stored messages into windows, and closing windows.

Run: ``python -m bench.digests [--messages N] [--sources S] [--groups G]``.

Stores N messages of a digested type (aggregates of 10 events, as flushes store them, over S sources
and G ``group_by`` values), then times one pass that ingests them all (the clock before the windows'
end) and one pass that closes every window (the clock after it). Also the pass with nothing to do,
which every node runs every SSE_DIGEST_INTERVAL_SECONDS. Peer: the same PostgreSQL's plain replay
of those rows (``PostgresStore.replay``), the least any reader of them pays.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import msgspec

from bench._pg import machine, postgres
from sse_batcher.batcher import PostgresStore, StoreConfig, TypeRule
from sse_batcher.batcher.digests.digester import Digester
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate

_T0 = 1_800_000_000.0


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def run(messages: int, sources: int, groups: int) -> None:
    with postgres() as server:
        dsn = server.dsn()
        config = StoreConfig(dsn=dsn)
        rules = {"APPROVAL": TypeRule(digest_seconds=3600, max_items=10, group_by="user_id")}
        clock = _Clock(_T0 + 10)
        async with PostgresStore(config) as store, Digester(config, rules, clock=clock) as digester:
            seq = 0
            batch = []
            for m in range(messages):
                source = f"s{m % sources}"
                events = []
                for _ in range(10):
                    seq += 1
                    data = msgspec.json.encode({"user_id": f"u{(seq * 7919) % groups}", "n": seq})
                    events.append(Event("APPROVAL", source, seq, _T0 + (seq % 3000), msgspec.Raw(data)))
                batch.extend(aggregate(events, f"o{m}"))
                if len(batch) >= 500:
                    await store.write(batch)
                    batch = []
            if batch:
                await store.write(batch)
            started = time.perf_counter()
            replayed = sum([1 async for _ in store.replay(0, types=["APPROVAL"])])
            replay_seconds = time.perf_counter() - started
            started = time.perf_counter()
            ingest = await digester.run_pass()
            ingest_seconds = time.perf_counter() - started
            started = time.perf_counter()
            idle_runs = 20
            for _ in range(idle_runs):
                await digester.run_pass()
            idle_seconds = (time.perf_counter() - started) / idle_runs
            clock.now = _T0 + 3600 + 10
            started = time.perf_counter()
            closing = await digester.run_pass()
            close_seconds = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(f"{messages:,} messages ({messages * 10:,} events), {sources} sources, {groups} groups")
    print("| measurement | time | rate |")
    print("| --- | --- | --- |")
    print(
        f"| peer: replay of the {replayed:,} rows | {replay_seconds * 1000:.0f} ms "
        f"| {replayed / replay_seconds:,.0f} rows/s |"
    )
    print(
        f"| pass ingesting {ingest.rows:,} rows ({ingest.events:,} events) | {ingest_seconds * 1000:.0f} ms | "
        f"{ingest.rows / ingest_seconds:,.0f} rows/s |"
    )
    print(f"| pass with nothing to do | {idle_seconds * 1000:.2f} ms | |")
    print(
        f"| pass closing {len(closing.digests):,} windows | {close_seconds * 1000:.0f} ms | "
        f"{len(closing.digests) / close_seconds:,.0f} digests/s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sources", type=int, default=5)
    parser.add_argument("--groups", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.sources, args.groups))


if __name__ == "__main__":
    main()
