"""Lone-event latency on an idle server: one client, single events a few per second.

Target: p50 <= 5 ms and p99 <= 15 ms from publish to client on an idle sse-batcher. An event with
nothing to batch with shows what the batching delay costs when there is no load to amortise.

Coalescing must survive a fast path for lone events, so for sse-batcher it then sends a crowd:
``--crowd`` single-event POSTs at once from 10 connections, and prints how many stored messages
they became (messages per event; the target is at most 12 for 60).

For each server (sse-batcher on a database of one embedded PostgreSQL; the probe and nchan for
reference: the probe ticks every 50 ms, so its own floor is about 25 ms on average) and each rate,
the server starts, sits idle for ``--warmup`` seconds (the sizing controller's idle state), then
``sse-batcher loadtest --clients 1 --batch-per-request 1`` posts one event per request at that
rate for ``--seconds``. The latency is the event's ``ts`` (stamped by the server when it accepted
it; by the load tool for nchan) to the moment the client read it.

Run: ``python -m bench.lone [--rates 4,10] [--seconds 10] [--servers sse-batcher,probe,nchan] [--crowd 60]``.
About (warm-up + seconds + 5) s per server and rate.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import httpx

from bench._pg import machine, postgres
from bench._servers import SERVERS, Running, loadtest, running

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.lone", description=__doc__)
    parser.add_argument("--rates", default="4,10", help="comma-separated events per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="idle seconds before publishing")
    parser.add_argument("--servers", default="sse-batcher,probe,nchan", help=f"any of {','.join(SERVERS)}")
    parser.add_argument("--crowd", type=int, default=60, help="single-event POSTs sent at once (0: none)")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"{'server':<12} {'ev/s':>5} {'events':>6} {'delivered':>9} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    with postgres() as pg:
        for kind in args.servers.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                uses_db = kind in ("sse-batcher", "peer")
                dsn = pg.create_database(f"lone_{kind.replace('-', '_')}", replace=True) if uses_db else None
                with running(kind, dsn=dsn, data_dir=pg.pgdata.parent / kind) as server:
                    time.sleep(args.warmup)
                    count = max(1, round(rate * args.seconds))
                    r = loadtest(server, clients=1, rate=rate, count=count, batch_per_request=1, settle_seconds=3)
                    crowd = (
                        asyncio.run(_crowd(server, dsn, args.crowd))
                        if dsn and kind == "sse-batcher" and args.crowd
                        else None
                    )
                print(
                    f"{kind:<12} {rate:>5.0f} {r['accepted']:>6} {r['delivered_fraction']:>9.4f} "
                    f"{r['latency_p50_ms']!s:>7} {r['latency_p99_ms']!s:>7} {r['latency_max_ms']!s:>7}",
                    flush=True,
                )
                if crowd is not None:
                    events, messages = crowd
                    print(
                        f"{'':<12} crowd: {events} single-event POSTs at once from 10 connections -> "
                        f"{messages} messages ({messages / max(events, 1):.3f} per event)",
                        flush=True,
                    )
    return 0


async def _crowd(server: Running, dsn: str, posts: int) -> tuple[int, int]:
    """POST ``posts`` single events at once over 10 connections; return (events stored, messages stored).

    Counted in the database, by the crowd's own source, so the sizer's own events are left out.
    """
    clients = [httpx.AsyncClient(base_url=server.url, limits=httpx.Limits(max_connections=1)) for _ in range(10)]
    conn = await asyncpg.connect(dsn)
    query = "SELECT coalesce(sum(event_count), 0), count(*) FROM sse_events WHERE source = 'crowd'"
    try:
        body = {"type": "CROWD", "data": {}, "source": "crowd"}
        await asyncio.gather(*(clients[i % 10].post("/api/events", json=body) for i in range(posts)))
        deadline = time.monotonic() + 10
        row: Any = await conn.fetchrow(query)
        while row[0] < posts and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            row = await conn.fetchrow(query)
        return int(row[0]), int(row[1])
    finally:
        await conn.close()
        for client in clients:
            await client.aclose()


if __name__ == "__main__":
    raise SystemExit(main())
