"""Idle SSE streams: server memory per stream, and the CPU that 10,000 idle streams cost.

Two modes, each a single bounded command:

- ``python -m bench.idle_memory [--streams 2000] [--servers sse-batcher,peer,probe,nchan]``: for
  each server (a subprocess on a free port; sse-batcher and the peer on databases of one embedded
  PostgreSQL, which is *not* counted), reads the RSS of the server's process tree, opens
  ``--streams`` SSE connections that then sit idle, waits until they all stream, reads the RSS
  again and prints (after - before) / streams in KB. About 15 s per server.
- ``python -m bench.idle_memory --hold 10000 [--seconds 60] [--servers sse-batcher]``: opens
  ``--hold`` idle streams, keeps them (reading the ``: ping`` comments) for ``--seconds``, sampling
  the server's CPU time every half second, and prints its CPU % with no stream (5 s before they
  open), over the hold, and in the half-second samples in which no ping reached any client
  ("between pings"; there are few when the pings of 10,000 streams, opened over many seconds,
  are spread over the whole interval), the pings seen per second and the CPU each ping costs
  above the no-stream figure. The server keeps its SSE_PING_SECONDS (default 15; nchan is set to
  15 s too; the probe sends no pings). About ``--seconds`` + 50 s per server.

The clients are raw sockets in this process (its open-files limit is raised with setrlimit, and
the servers inherit it), so the figures are the servers' alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

from bench._pg import machine, postgres
from bench._servers import SERVERS, Running, raise_open_files, running, tree_cpu_seconds, tree_rss_bytes

__all__ = ["main", "memory_per_stream"]

_OPEN_AT_ONCE = 100
_PING = b": ping"


@dataclass(slots=True)
class _Streams:
    """Idle streams held open; their readers count ping comments and when they arrived."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    pings: int = 0
    last_bytes_at: float = 0.0

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for writer in self.writers:
            writer.close()


async def _open(server: Running, count: int, path: str) -> _Streams:
    host_port = server.url.removeprefix("http://")
    host, port = host_port.split(":")
    request = f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    streams = _Streams()

    async def read(reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65536):
            streams.pings += data.count(_PING)
            streams.last_bytes_at = time.monotonic()

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        streams.writers.append(writer)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"stream refused: {head[:80]!r}")
        streams.readers.append(asyncio.create_task(read(reader)))

    try:
        for start in range(0, count, _OPEN_AT_ONCE):  # a hundred at a time: no listen-backlog overflow
            await asyncio.gather(*(one() for _ in range(min(_OPEN_AT_ONCE, count - start))))
    except BaseException:
        streams.close()
        raise
    return streams


async def memory_per_stream(server: Running, count: int, path: str) -> tuple[float, float]:
    """Open ``count`` idle streams; the server's RSS before (MB) and its growth per stream (KB)."""
    await asyncio.sleep(2)  # let start-up allocations settle
    before = tree_rss_bytes(server.pid)
    streams = await _open(server, count, path)
    try:
        await asyncio.sleep(3)  # the connections sit idle; pings may go out
        after = tree_rss_bytes(server.pid)
    finally:
        streams.close()
    return before / 2**20, (after - before) / count / 1024


@dataclass(frozen=True, slots=True)
class _Held:
    open_seconds: float
    baseline_percent: float
    held_percent: float
    between_percent: float | None
    quiet_samples: int
    pings_per_second: float
    cpu_us_per_ping: float | None


def _cpu_percent(pid: int, seconds: float) -> float:
    started, before = time.monotonic(), tree_cpu_seconds(pid)
    time.sleep(seconds)
    return 100 * (tree_cpu_seconds(pid) - before) / (time.monotonic() - started)


async def _hold(server: Running, count: int, seconds: float, path: str) -> _Held:
    baseline = await asyncio.to_thread(_cpu_percent, server.pid, 5.0)  # no streams yet
    opened = time.monotonic()
    streams = await _open(server, count, path)
    open_seconds = time.monotonic() - opened
    try:
        await asyncio.sleep(2)
        samples: list[tuple[float, float, int]] = []  # (monotonic, cpu seconds, pings so far)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append((time.monotonic(), tree_cpu_seconds(server.pid), streams.pings))
            await asyncio.sleep(0.5)
        samples.append((time.monotonic(), tree_cpu_seconds(server.pid), streams.pings))
    finally:
        streams.close()
    (t0, c0, p0), (t1, c1, p1) = samples[0], samples[-1]
    quiet_cpu = quiet_time = 0.0
    quiet = 0
    for (ta, ca, pa), (tb, cb, pb) in zip(samples, samples[1:], strict=False):
        if pb == pa:  # no ping reached any client in this half second
            quiet += 1
            quiet_cpu += cb - ca
            quiet_time += tb - ta
    pings = p1 - p0
    extra_cpu = (c1 - c0) - baseline / 100 * (t1 - t0)
    return _Held(
        open_seconds=open_seconds,
        baseline_percent=baseline,
        held_percent=100 * (c1 - c0) / (t1 - t0),
        between_percent=100 * quiet_cpu / quiet_time if quiet_time > 0 else None,
        quiet_samples=quiet,
        pings_per_second=pings / (t1 - t0),
        cpu_us_per_ping=extra_cpu / pings * 1e6 if pings else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.idle_memory", description=__doc__)
    parser.add_argument("--streams", type=int, default=2000, help="idle streams for the memory figure")
    parser.add_argument("--hold", type=int, default=0, help="hold this many idle streams and report CPU %%")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long --hold holds them")
    parser.add_argument("--servers", default=None, help=f"any of {','.join(SERVERS)}")
    args = parser.parse_args(argv)
    kinds = (args.servers or ("sse-batcher" if args.hold else "sse-batcher,peer,probe,nchan")).split(",")
    limit = raise_open_files()
    wanted = max(args.hold, args.streams) + 1000
    if limit < wanted:
        raise SystemExit(f"open-files limit {limit} < {wanted}: raise the hard limit (ulimit -Hn) first")
    print(f"machine: {machine()}")
    env = {"SSE_MAX_CLIENTS": str(max(args.hold, args.streams) * 2)}
    if args.hold:
        header = ("server", "streams", "open s", "CPU % idle", "CPU % held", "between pings", "pings/s", "us/ping")
        print("{:<12} {:>7} {:>6} {:>10} {:>10} {:>17} {:>8} {:>8}".format(*header))
    else:
        print(f"{'server':<12} {'RSS before':>11} {'KB per idle stream':>19}  ({args.streams} streams)")
    with postgres() as pg:
        for kind in kinds:
            uses_db = kind in ("sse-batcher", "peer")
            dsn = pg.create_database(f"idle_{kind.replace('-', '_')}", replace=True) if uses_db else None
            with running(kind, dsn=dsn, data_dir=pg.pgdata.parent / kind, env=env) as server:
                path = server.stream_path
                if args.hold:
                    h = asyncio.run(_hold(server, args.hold, args.seconds, path))
                    between = "-" if h.between_percent is None else f"{h.between_percent:.1f}"
                    between += f" ({h.quiet_samples} x 0.5 s)"
                    per_ping = "-" if h.cpu_us_per_ping is None else f"{h.cpu_us_per_ping:.0f}"
                    print(
                        f"{kind:<12} {args.hold:>7} {h.open_seconds:>6.1f} {h.baseline_percent:>10.1f} "
                        f"{h.held_percent:>10.1f} {between:>17} {h.pings_per_second:>8.0f} {per_ping:>8}",
                        flush=True,
                    )
                else:
                    base, per = asyncio.run(memory_per_stream(server, args.streams, path))
                    print(f"{kind:<12} {base:>9.1f} MB {per:>19.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
