"""What the log follower costs and adds: commit-to-hub latency, and CPU per commit per node.

Run: ``python -m bench.follower [--commits N] [--nodes 1,2,4]``.

1. Latency (idle server): one writer commits a small batch every 20 ms; a follower in the same
   process (the node's own commit, woken by its local poke, as in the server) and one woken only
   by NOTIFY (another node's commit) record the time from ``store.write`` returning to the rows
   reaching their sink. Prints p50 and p99 of each. Goal: p99 <= 5 ms when idle.
2. Cost per commit per node: N follower processes (N nodes) follow a writer that commits
   ``--commits`` batches as fast as it can; prints each follower's CPU seconds per commit, and the
   PostgreSQL server's extra CPU per commit per follower (its CPU with N followers minus with none).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from bench._pg import machine, postgres, postgres_cpu
from sse_batcher.batcher import Message, PostgresStore, StoreConfig, StoredMessage
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.log import LogFollower
from sse_batcher.batcher.pipeline.aggregate import aggregate

ROOT = Path(__file__).resolve().parents[1]


def _batch(origin: str, first: int, n: int = 10) -> list[Message]:
    events = [
        Event("JOB_STARTED", "bench", s, time.time(), msgspec.Raw(b'{"job_id":%d}' % s))
        for s in range(first, first + n)
    ]
    return aggregate(events, origin)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def latency(dsn: str, commits: int) -> dict[str, tuple[float, float]]:
    arrivals: dict[str, dict[int, float]] = {"local": {}, "remote": {}}

    def sink(kind: str) -> object:
        def receive(messages: Sequence[StoredMessage]) -> None:
            now = time.perf_counter()
            for message in messages:
                arrivals[kind][message.id] = now

        return receive

    config = StoreConfig(dsn=dsn)
    written: dict[int, float] = {}
    async with (
        PostgresStore(config) as store,
        LogFollower(config, sink("local"), poll_seconds=5.0) as local,  # type: ignore[arg-type]
        LogFollower(config, sink("remote"), poll_seconds=5.0),  # type: ignore[arg-type]
    ):
        for i in range(commits):
            result = await store.write(_batch("lat", i * 100))
            done = time.perf_counter()
            local.poke(result.stored)  # what the batcher's listener does on this node
            for message in result.stored:
                written[message.id] = done
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
    out = {}
    for kind, seen in arrivals.items():
        lags = [seen[i] - t for i, t in written.items() if i in seen]
        out[kind] = (_pct(lags, 0.5), _pct(lags, 0.99))
    return out


async def _follow_for(dsn: str, target: int) -> None:
    """A node's follower alone in a process: prints its CPU seconds when ready and when done."""
    seen = 0
    done = asyncio.Event()

    def sink(messages: Sequence[StoredMessage]) -> None:
        nonlocal seen
        seen += len(messages)
        if seen >= target:
            done.set()

    async with LogFollower(StoreConfig(dsn=dsn), sink, poll_seconds=5.0):
        print(f"ready {time.process_time()}", flush=True)
        await asyncio.wait_for(done.wait(), 300)
        print(f"done {time.process_time()}", flush=True)
        # Stay connected until told, so the bench can read PostgreSQL's CPU while our backend lives.
        await asyncio.to_thread(sys.stdin.readline)


async def _write(dsn: str, commits: int, origin: str, pgdata: Path) -> tuple[float, float, float]:
    """Commit ``commits`` batches; (seconds, PostgreSQL CPU before, after), read while connected."""
    async with PostgresStore(StoreConfig(dsn=dsn, pool_size=1)) as store:
        await store.write(_batch(origin, -100))  # connect first: the backend's start is not the cost
        before = postgres_cpu(pgdata)
        started = time.perf_counter()
        for i in range(commits):
            await store.write(_batch(origin, i * 100))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(0.5)  # let the followers read the last commits
        return elapsed, before, postgres_cpu(pgdata)


def cost(dsn: str, pgdata: Path, commits: int, nodes: int) -> tuple[float, float, float]:
    """(follower CPU ms per commit per node, PostgreSQL CPU ms per commit in all, commits/s)."""
    followers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.follower", "--role", "follower", "--dsn", dsn, "--target", str(commits)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(nodes)
    ]
    started_cpu = []
    for process in followers:
        assert process.stdout is not None
        word, value = process.stdout.readline().split()
        if word != b"ready":
            raise RuntimeError("a follower did not start")
        started_cpu.append(float(value))
    elapsed, pg_before, pg_after = asyncio.run(_write(dsn, commits, f"cost{nodes}-{time.time_ns()}", pgdata))
    spent = 0.0
    for process, before in zip(followers, started_cpu, strict=True):
        assert process.stdout is not None and process.stdin is not None
        word, value = process.stdout.readline().split()
        process.stdin.close()
        process.wait(timeout=60)
        spent += float(value) - before
    per_node = spent * 1000 / commits / nodes if nodes else 0.0
    return per_node, (pg_after - pg_before) * 1000 / commits, commits / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.follower", description=__doc__)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--nodes", default="0,1,2,4")
    parser.add_argument("--latency-commits", type=int, default=300)
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--target", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "follower":
        asyncio.run(_follow_for(args.dsn, args.target))
        return 0
    print(machine())
    with postgres() as pg:
        dsn = pg.create_database("bench_follower", replace=True)
        lat = asyncio.run(latency(dsn, args.latency_commits))
        print(f"commit -> hub latency, idle ({args.latency_commits} commits, 20 ms apart):")
        print(f"  this node's commit (local poke): p50 {lat['local'][0]:.2f} ms  p99 {lat['local'][1]:.2f} ms")
        print(f"  another node's commit (NOTIFY):  p50 {lat['remote'][0]:.2f} ms  p99 {lat['remote'][1]:.2f} ms")
        print(f"cost per commit ({args.commits} commits of a 10-event aggregate each):")
        print(f"{'nodes':>5} {'commits/s':>10} {'follower CPU ms/commit/node':>28} {'PostgreSQL CPU ms/commit':>25}")
        base_pg = None
        for nodes in [int(n) for n in args.nodes.split(",")]:
            follower_ms, pg_ms, rate = cost(dsn, pg.pgdata, args.commits, nodes)
            if base_pg is None:
                base_pg = pg_ms
            extra = (pg_ms - base_pg) / nodes if nodes else 0.0
            print(f"{nodes:>5} {rate:>10.0f} {follower_ms:>28.3f} {pg_ms:>14.3f} (+{extra:.3f} per node)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
