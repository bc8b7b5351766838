"""Emit throughput: how many events/s ``SSEEventBatcher.emit`` accepts, from 1 and from 4 threads.

Run: ``python -m bench.emit [--events N] [--repeat R] [--buffer-only]``. Prints events/s for a bare
``deque.append`` loop (the physical limit of a Python append under the GIL), for ``emit`` with the
buffer alone from 1 and from 4 threads (the best of ``R`` runs each, interleaved, since the CPU is
shared) and the ratio of the two, and, unless ``--buffer-only``, for ``emit`` while the flush loop
runs and stores into the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from bench._pg import machine, postgres
from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoreConfig

_DATA = {"job_id": 123, "percent": 40, "step": "render tile 4/10"}


def _bare_deque(n: int) -> float:
    q: deque[object] = deque()
    lock = threading.Lock()
    started = time.perf_counter()
    for i in range(n):
        with lock:
            q.append((i, _DATA))
    return n / (time.perf_counter() - started)


def _emit_threads(batcher: SSEEventBatcher, threads: int, per_thread: int) -> float:
    barrier = threading.Barrier(threads + 1)

    def run(index: int) -> None:
        source = f"worker-{index}"
        emit = batcher.emit
        barrier.wait()
        for _ in range(per_thread):
            emit("JOB_PROGRESS", _DATA, source=source, timeout=30)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return threads * per_thread / (time.perf_counter() - started)


async def _with_flush_loop(dsn: str, threads: int, per_thread: int, data_dir: Path) -> tuple[float, float]:
    config = BatcherConfig(batch_size=500, max_buffered_events=200_000, data_dir=data_dir)
    async with PostgresStore(StoreConfig(dsn=dsn)) as store, SSEEventBatcher(store, config) as batcher:
        started = time.perf_counter()
        rate = await asyncio.to_thread(_emit_threads, batcher, threads, per_thread)
        await batcher.flush(timeout=120)
        stored = threads * per_thread / (time.perf_counter() - started)
    return rate, stored


def _order_holds(batcher: SSEEventBatcher, threads: int) -> bool:
    """Whether each thread's events sit in the buffer in the order it emitted them (seqs rising)."""
    last: dict[str, int] = {}
    for event in batcher._buffer.take(len(batcher._buffer)):
        if event.seq <= last.get(event.source, 0):
            return False
        last[event.source] = event.seq
    return len(last) == threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="runs per thread count; the best is printed")
    parser.add_argument("--buffer-only", action="store_true", help="skip the runs that store into PostgreSQL")
    args = parser.parse_args()
    n = args.events
    print(f"machine: {machine()}")
    print(f"events per run: {n:,}")
    print(f"bare deque.append under a lock, 1 thread: {_bare_deque(n):>12,.0f} events/s")
    with tempfile.TemporaryDirectory() as tmp:
        best = dict.fromkeys((1, 4), 0.0)
        for _ in range(args.repeat):
            for threads in (1, 4):
                # Buffer only: the batcher is not started, so this is the cost of emit() itself.
                config = BatcherConfig(max_buffered_events=n + 1, batch_size=500, data_dir=Path(tmp))
                idle = SSEEventBatcher(_NoStore(), config)  # type: ignore[arg-type]
                best[threads] = max(best[threads], _emit_threads(idle, threads, n // threads))
                if not _order_holds(idle, threads):
                    raise SystemExit("per-thread order broken")
        for threads, rate in best.items():
            print(f"emit(), buffer only, {threads} thread(s):      {rate:>12,.0f} events/s")
        print(f"4 threads together / 1 thread:           {best[4] / best[1]:>12.2f}")
        if args.buffer_only:
            return
        with postgres() as server:
            for threads in (1, 4):
                dsn = server.create_database(f"emit_{threads}", replace=True)
                rate, stored = asyncio.run(_with_flush_loop(dsn, threads, n // (2 * threads), Path(tmp)))
                print(
                    f"emit() while flushing to PostgreSQL, {threads} thread(s): {rate:>10,.0f} events/s"
                    f"  (stored end to end: {stored:,.0f} events/s)"
                )


class _NoStore:
    """Never written to: the batcher is not started in the buffer-only measurement."""


if __name__ == "__main__":
    main()
