"""Server memory while clients that never read resume from id 0 over a history of large aggregates.

``python -m bench.replay_memory [--clients 30] [--rows 80] [--row-kb 630] [--hold 8]``

Writes ``--rows`` stored messages of ``--row-kb`` KB each (48 MB at the defaults) into a fresh
database of an embedded PostgreSQL, then, for each replay setting below, starts ``sse-batcher
serve`` as a subprocess, opens ``--clients`` raw sockets with a 4 KB receive buffer that send
``GET /events`` with ``Last-Event-ID: 0`` and never read, holds them for ``--hold`` seconds while
sampling the server's RSS every 0.25 s, closes them, and reads the RSS once more 3 s later. It
prints the RSS before, the peak while held (and its growth over before), and after.

Settings compared:

- ``no byte bound``: a page of up to ``SSE_REPLAY_PAGE_SIZE`` (500) rows whatever their size, and no
  total budget: how replay behaved before pages were bounded in bytes;
- ``defaults``: ``SSE_REPLAY_PAGE_BYTES`` 1 MiB, ``SSE_REPLAY_BUDGET_BYTES`` 64 MiB;
- ``tight budget``: 1 MiB pages, an 8 MiB budget.

What a stuck stream holds beyond its page is the chunk its write is blocked on (at least one row)
in uvicorn's transport buffer, which no budget counts. About 15 s per setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

import psutil

from bench._pg import machine, postgres
from bench._server import ServerUnderTest
from bench._servers import free_port
from sse_batcher.batcher.config import StoreConfig
from sse_batcher.batcher.events import Message
from sse_batcher.batcher.log.store import PostgresStore

__all__ = ["main"]

_SETTINGS: dict[str, dict[str, str]] = {
    "no byte bound": {"SSE_REPLAY_PAGE_BYTES": str(2**40), "SSE_REPLAY_BUDGET_BYTES": str(2**50)},
    "defaults": {},
    "tight budget": {"SSE_REPLAY_BUDGET_BYTES": str(8 * 2**20)},
}


async def _seed(dsn: str, rows: int, row_bytes: int) -> None:
    blob = "x" * row_bytes
    async with PostgresStore(StoreConfig(dsn=dsn)) as store:
        for seq in range(1, rows + 1):
            payload = json.dumps({"type": "BIG", "source": "bench", "seq": seq, "data": {"blob": blob}}).encode()
            message = Message(
                idem_key=f"bench:{seq}", type="BIG", event_type="BIG", source="bench", event_count=1,
                first_seq=seq, last_seq=seq, ts=time.time(), payload=payload,
            )  # fmt: skip
            await store.write([message])


def _stalled_clients(port: int, count: int) -> list[socket.socket]:
    request = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nLast-Event-ID: 0\r\n\r\n".encode()
    clients = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(request)
        clients.append(sock)
    return clients


def _measure(dsn: str, env: dict[str, str], clients: int, hold: float) -> tuple[int, int, int]:
    with tempfile.TemporaryDirectory(prefix="sse-replay-") as data:
        server = ServerUnderTest(dsn, Path(data), free_port(), env=env)
        server.start()
        try:
            process = psutil.Process(server.pid)
            time.sleep(1.0)
            before = process.memory_info().rss
            port = int(server.url.rsplit(":", 1)[1])
            sockets = _stalled_clients(port, clients)
            peak = before
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.25)
            for sock in sockets:
                sock.close()
            time.sleep(3.0)
            after = process.memory_info().rss
        finally:
            server.stop()
    return before, peak, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rows", type=int, default=80)
    parser.add_argument("--row-kb", type=int, default=630)
    parser.add_argument("--hold", type=float, default=8.0)
    args = parser.parse_args()
    print(machine())
    mb = 2**20
    with postgres() as pg:
        dsn = pg.create_database("bench_replay", replace=True)
        asyncio.run(_seed(dsn, args.rows, args.row_kb * 1024))
        print(f"history: {args.rows} rows of {args.row_kb} KB; {args.clients} clients that never read, from id 0")
        print(f"{'setting':<16}{'before MB':>11}{'peak MB':>10}{'growth MB':>11}{'after MB':>10}")
        for name, env in _SETTINGS.items():
            before, peak, after = _measure(dsn, env, args.clients, args.hold)
            print(f"{name:<16}{before / mb:>11.0f}{peak / mb:>10.0f}{(peak - before) / mb:>11.0f}{after / mb:>10.0f}")


if __name__ == "__main__":
    main()
