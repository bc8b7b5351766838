"""Server memory per idle SSE connection: sse-batcher against the plain sse-starlette peer.

Run: ``python -m bench.idle_memory [--clients 1000]``. For each server (a subprocess on a free
port, its own database on one embedded PostgreSQL), reads the server process's RSS, opens
``--clients`` SSE connections that then sit idle, waits until they are all streaming, reads the
RSS again and prints (after - before) / clients. The clients are raw sockets in this process, so
the figure is the server's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import psutil

from bench._pg import machine
from bench.fanout import free_port, start_server, stop_server
from server.embedded_pg import EmbeddedPostgres

__all__ = ["main"]


async def _open_idle(port: int, count: int) -> list[asyncio.StreamWriter]:
    request = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream refused: {head[:80]!r}")
        return writer

    writers: list[asyncio.StreamWriter] = []
    for start in range(0, count, 100):  # a hundred at a time: no listen-backlog overflow
        writers += await asyncio.gather(*(one() for _ in range(min(100, count - start))))
    return writers


def _rss(pid: int) -> int:
    rss: int = psutil.Process(pid).memory_info().rss
    return rss


async def _measure(kind: str, port: int, pid: int, clients: int) -> tuple[float, float]:
    await asyncio.sleep(2)  # let start-up allocations settle
    before = _rss(pid)
    writers = await _open_idle(port, clients)
    await asyncio.sleep(3)  # the connections sit idle; pings may go out
    after = _rss(pid)
    for writer in writers:
        writer.close()
    return before / 2**20, (after - before) / clients / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.idle_memory", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--servers", default="sse-batcher,peer")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"{'server':<12} {'RSS before':>11} {'KB per idle connection':>24}  ({args.clients} clients)")
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg.start()
        try:
            for kind in args.servers.split(","):
                dsn = pg.create_database(f"idle_{kind.replace('-', '_')}", replace=True)
                port = free_port()
                process = start_server(kind, port, dsn, Path(tmp) / kind)
                try:
                    base, per = asyncio.run(_measure(kind, port, process.pid, args.clients))
                finally:
                    stop_server(process)
                print(f"{kind:<12} {base:>9.1f} MB {per:>24.1f}")
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
