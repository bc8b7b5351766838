"""The ASGI server, measured: sse-batcher under uvicorn (httptools + uvloop) and under granian.

uvicorn runs as ``python -m server serve`` (its GracefulServer drains the app on SIGTERM);
granian runs ``sse_batcher.server.asgi:app`` (``--interface asgi --loop uvloop``, one worker), where that
uvicorn-specific drain does not exist. Both on databases of one embedded PostgreSQL (not counted
in the server's CPU or memory), in the same run, one after the other:

1. throughput: the issue's workload (``--workload b``: 200 clients, 100,000 events at 60,000/s;
   ``a``: 1,000 clients, 50,000 at 25,000/s) through ``sse-batcher loadtest``: delivered events/s
   per client, delivered fraction, p50/p99, CPU-seconds per million delivered events;
2. memory per idle stream: RSS growth of the server's process tree over ``--streams`` streams;
3. disconnect detection: ``--vanish`` clients stream, then vanish (sockets closed with a FIN, then
   in a second round reset with SO_LINGER 0); how long until /api/stats' ``hub.clients`` says
   their stream tasks ended (bounded by ``--disconnect-wait``; SSE_PING_SECONDS stays 15, so a
   server that notices only when a write fails takes up to one ping interval);
4. SIGTERM drain: ``--drain-clients`` clients stream, ``--drain-events`` events are posted (202,
   buffered, not yet stored), SIGTERM follows the last answer at once; did every client get every
   accepted event before its stream ended, how long did the exit take, and the exit code.

Run: ``python -m bench.asgi_servers [--workload b] [--servers uvicorn,granian]``. About 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._pg import machine
from bench._servers import Running, raise_open_files, running
from bench.fanout import WORKLOADS, cpu_per_million, measure
from bench.idle_memory import memory_per_stream
from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres

__all__ = ["main"]

# One per load-tool event, in any aggregate format: its data is {"i": n}.
_EVENT_KEY = b'{"i":'


@dataclass(slots=True)
class _Counter:
    """A raw-socket SSE client that counts load-tool events until its stream ends."""

    events: int = 0
    ended: bool = False
    error: str | None = None


async def _connect(server: Running, path: str = "/events") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(f"stream refused: {head[:80]!r}")
    return reader, writer


async def _count(reader: asyncio.StreamReader, counter: _Counter) -> None:
    tail = b""
    try:
        while data := await reader.read(65536):
            counter.events += (tail + data).count(_EVENT_KEY)
            tail = data[-4:]
    except OSError as exc:
        counter.error = str(exc)
    counter.ended = True


async def _hub_clients(http: httpx.AsyncClient) -> int | None:
    try:
        response = await http.get("/api/stats", timeout=5)
        clients: int = response.json()["hub"]["clients"]
        return clients
    except (httpx.HTTPError, KeyError, ValueError):
        return None


async def _wait_clients(http: httpx.AsyncClient, wanted: int, seconds: float) -> float | None:
    """Seconds until the hub counts ``wanted`` clients (polled every 20 ms), or ``None``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if await _hub_clients(http) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return None


async def _disconnects(server: Running, count: int, wait: float) -> dict[str, float | None]:
    """Open ``count`` streams, make them vanish (FIN, then RST); the seconds until the hub noticed."""
    found: dict[str, float | None] = {}
    async with httpx.AsyncClient(base_url=server.url) as http:
        base = await _hub_clients(http) or 0
        for how in ("fin", "rst"):
            writers = [(await _connect(server))[1] for _ in range(count)]
            if await _wait_clients(http, base + count, 30) is None:
                raise RuntimeError(f"the hub never counted {count} clients")
            started = time.monotonic()
            for writer in writers:
                if how == "rst":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()
            seen = await _wait_clients(http, base, wait)
            found[how] = None if seen is None else time.monotonic() - started
            if seen is None:
                await _wait_clients(http, base, 30)  # let the next round start from a clean count
    return found


async def _drain(server: Running, clients: int, events: int, drain_wait: float) -> dict[str, Any]:
    """Stream to ``clients``, post ``events``, SIGTERM at once; who got what, and how it exited."""
    counters = [_Counter() for _ in range(clients)]
    readers, writers = [], []  # a writer dropped would close its socket when collected
    for counter in counters:
        reader, writer = await _connect(server)
        writers.append(writer)
        readers.append(asyncio.create_task(_count(reader, counter)))
    accepted = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        await _wait_clients(http, clients, 30)
        per_post = 100
        for first in range(0, events, per_post):
            body = [{"type": "LOAD_TEST", "source": "loadtest", "data": {"i": first + k}} for k in range(per_post)]
            response = await http.post("/api/events", json=body)
            if response.status_code == 202:
                accepted += len(body)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    streams_ended = exit_code = left_at = None
    try:
        await asyncio.wait_for(asyncio.gather(*readers), drain_wait)
        streams_ended = time.monotonic() - signalled
    except TimeoutError:
        # The server keeps the streams open: the clients leave, and the server may exit then.
        left_at = time.monotonic() - signalled
        for task in readers:
            task.cancel()
    for writer in writers:
        writer.close()
    try:
        exit_code = await asyncio.to_thread(server.process.wait, 30)
    except subprocess.TimeoutExpired:
        pass
    exit_s = time.monotonic() - signalled if exit_code is not None else None
    got = [c.events for c in counters]
    return {
        "accepted": accepted,
        "min": min(got),
        "complete": sum(1 for n in got if n >= accepted),
        "clients": clients,
        "streams_ended_s": streams_ended,
        "clients_left_s": left_at,
        "exit_s": exit_s,
        "exit_code": exit_code,
    }


def _s(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.asgi_servers", description=__doc__)
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--workload", default="b", choices=sorted(WORKLOADS))
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=2000, help="idle streams for memory per stream")
    parser.add_argument("--vanish", type=int, default=50, help="clients that vanish at once")
    parser.add_argument("--disconnect-wait", type=float, default=20.0, help="seconds to wait for the hub to notice")
    parser.add_argument("--drain-clients", type=int, default=20)
    parser.add_argument("--drain-events", type=int, default=5000)
    parser.add_argument("--drain-wait", type=float, default=15.0, help="seconds the streams get to end after SIGTERM")
    args = parser.parse_args(argv)
    raise_open_files()
    print(f"machine: {machine()}", flush=True)
    point = WORKLOADS[args.workload]
    rows: dict[str, dict[str, Any]] = {}
    env = {"SSE_MAX_CLIENTS": str(args.streams * 2)}
    with tempfile.TemporaryDirectory(prefix="sse-asgi-") as tmp:
        data_dir = Path(tmp)
        data_dir.chmod(0o755)
        pg = EmbeddedPostgres(data_dir / "pg")
        pg.start()
        try:
            for asgi in args.servers.split(","):
                row: dict[str, Any] = {"load": measure("sse-batcher", point, pg, data_dir / asgi, args.settle, asgi)}
                print(f"{asgi}: load done", file=sys.stderr, flush=True)

                def fresh(name: str, asgi: str = asgi) -> Any:
                    dsn = pg.create_database(f"asgi_{asgi}_{name}", replace=True)
                    return running("sse-batcher", dsn=dsn, data_dir=data_dir / asgi / name, env=env, asgi=asgi)

                with fresh("idle") as server:
                    row["rss_mb"], row["kb_per_stream"] = asyncio.run(
                        memory_per_stream(server, args.streams, "/events")
                    )
                print(f"{asgi}: memory done", file=sys.stderr, flush=True)
                with fresh("vanish") as server:
                    row["vanish"] = asyncio.run(_disconnects(server, args.vanish, args.disconnect_wait))
                print(f"{asgi}: disconnects done", file=sys.stderr, flush=True)
                with fresh("drain") as server:
                    row["drain"] = asyncio.run(_drain(server, args.drain_clients, args.drain_events, args.drain_wait))
                print(f"{asgi}: drain done", file=sys.stderr, flush=True)
                rows[asgi] = row
        finally:
            pg.stop()
    print(f"\nsse-batcher, workload {args.workload}: {point.describe()}")
    print(f"{'server':<8} {'accepted':>8} {'in s':>5} {'ev/s/client':>11}"
          f" {'delivered':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU s/M':>8} "
          f"{'srv CPU s':>9} {'KB/stream':>9} {'FIN s':>6} {'RST s':>6}")  # fmt: skip
    for asgi, row in rows.items():
        load, vanish = row["load"], row["vanish"]
        print(
            f"{asgi:<8} {load['accepted'] / load['published']:>8.3f} {load['publish_seconds']:>5.1f} "
            f"{load['events_per_second_per_client']:>11.0f} {load['delivered_fraction']:>9.4f} "
            f"{_s(load['latency_p50_ms'], '.1f'):>8} {_s(load['latency_p99_ms'], '.1f'):>8} "
            f"{_s(cpu_per_million(load)):>8} {load['server_cpu_seconds']:>9.1f} {row['kb_per_stream']:>9.1f} "
            f"{_s(vanish['fin']):>6} {_s(vanish['rst']):>6}"
        )
    print(f"\nSIGTERM right after the last of {args.drain_events} events was accepted, {args.drain_clients} clients:")
    for asgi, row in rows.items():
        drain = row["drain"]
        ended = (
            f"the server ended the streams {_s(drain['streams_ended_s'])} s after SIGTERM"
            if drain["clients_left_s"] is None
            else f"streams still open {_s(drain['clients_left_s'], '.0f')} s after SIGTERM, then the clients left"
        )
        print(
            f"  {asgi:<8} {drain['complete']}/{drain['clients']} clients got all {drain['accepted']} events "
            f"(min {drain['min']}); {ended}; exit code {drain['exit_code']} {_s(drain['exit_s'])} s after SIGTERM"
        )
    print(
        "\nCPU s/M: server + PostgreSQL CPU-seconds per million delivered events; FIN/RST s: seconds until "
        f"/api/stats counted {args.vanish} vanished clients gone ('-': not within {args.disconnect_wait:g} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
