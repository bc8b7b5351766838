"""Soak: minutes of steady load with the demo workers on; memory, file descriptors, exactly once.

One server process (``serve`` with the demo workers) on an embedded PostgreSQL; ``--clients`` SSE
clients subscribe to ``?source=loadtest`` and a publisher posts ``--rate`` events/s for
``--minutes``. Every few seconds the server's RSS and open file descriptors are sampled (psutil, on
the server process). Checked at the end:

- RSS after the warm-up (the first ``--warmup`` fraction of the run) stays within 10 % of its value
  when the warm-up ended;
- the file descriptors do not grow: the last sample is no higher than the highest one of the warm-up;
- every event is delivered exactly once to every client: each client's message ids strictly
  increase (no message twice) and its event count equals the accepted count (none missing); four
  sampled clients parse every event and see each published index once; in PostgreSQL every index
  is stored once.

The clients only count (``"seq":`` keys and ``id:`` lines, at C speed), as ``sse-batcher loadtest``
does, so the load tool stays cheaper than the server it measures on the same cores.

Run: ``python -m bench.soak [--minutes 10] [--rate 5000] [--clients 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
import httpx
import psutil

from sse_batcher.server.client import unroll
from sse_batcher.server.client._load_readers import Signal
from sse_batcher.server.client.loadtest import _ms, _percentile

from ._pg import machine, postgres
from ._server import ServerUnderTest
from ._servers import free_port

__all__ = ["SoakReport", "main", "soak"]

_SEQ = b'"seq":'
_ID = re.compile(rb"\nid: (\d+)\n")
_SAMPLED = 4
_READ_SIZE = 256 * 1024
_PER_REQUEST = 100
_SOURCE = "loadtest"


@dataclass(slots=True, kw_only=True)
class SoakReport:
    """What a soak measured; ``ok`` says whether every property held."""

    minutes: float
    rate: float
    clients: int
    published: int = 0
    accepted: int = 0
    complete_clients: int = 0
    id_regressions: int = 0  # a message id not above the one before it, on any client
    sampled_duplicates: int = 0
    sampled_missing: int = 0
    stored_events: int = 0
    stored_distinct: int = 0
    rss_warm_mib: float = 0.0  # median of the first quarter of the samples after the warm-up
    rss_late_mib: float = 0.0  # median of the last quarter
    rss_max_mib: float = 0.0
    rss_end_mib: float = 0.0
    fds_warm_max: int = 0
    fds_end: int = 0
    fds_max: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    cpu_seconds: float = 0.0
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (t, rss MiB, fds)

    @property
    def rss_growth(self) -> float:
        """Growth of RSS after the warm-up: the last quarter's median against the first quarter's.

        Medians, not the peak: a client that lags and catches up from PostgreSQL briefly holds a
        page of rows, which is a spike, not a leak; a leak moves the median of the late samples.
        """
        return (self.rss_late_mib - self.rss_warm_mib) / self.rss_warm_mib if self.rss_warm_mib else 0.0

    @property
    def exactly_once(self) -> bool:
        return (
            self.accepted == self.published
            and self.complete_clients == self.clients
            and self.id_regressions == self.sampled_duplicates == self.sampled_missing == 0
            and self.stored_events == self.stored_distinct == self.accepted
        )

    @property
    def ok(self) -> bool:
        return self.exactly_once and self.rss_growth <= 0.10 and self.fds_end <= self.fds_warm_max


class _Client:
    """One SSE connection on a raw socket: counts events, checks ids rise; sampled ones parse all."""

    def __init__(self, sampled: bool, notify: Callable[[], None]) -> None:
        self.sampled = sampled
        self._notify = notify
        self.events = 0
        self.last_id = 0
        self.id_regressions = 0
        self.indexes: dict[int, int] = {}
        self.latencies: list[float] = []
        self.error: str | None = None
        self.ready = anyio.Event()
        self._partial = b""

    async def run(self, host: str, port: int) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=_READ_SIZE)
            target = f"/events?source={_SOURCE}"
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                self.error = head.split(b"\r\n", 1)[0].decode(errors="replace")
                return
            self.ready.set()
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    self.error = self.error or "the server closed the stream"
                    return
                self._feed(data)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()
            if writer is not None:
                writer.close()

    def _feed(self, data: bytes) -> None:
        # Only whole messages (up to the last blank line) are counted; the rest waits for the next
        # read. Chunked framing falls between messages (the server writes whole ones).
        buffer = self._partial + data
        cut = buffer.rfind(b"\n\n")
        if cut < 0:
            self._partial = buffer
            return
        complete, self._partial = buffer[: cut + 2], buffer[cut + 2 :]
        self.events += complete.count(_SEQ)
        self._notify()
        last = self.last_id
        for match in _ID.finditer(complete):
            message_id = int(match.group(1))
            if message_id <= last:
                self.id_regressions += 1
            last = max(last, message_id)
        self.last_id = last
        if self.sampled:
            now = time.time()
            for line in complete.split(b"\n"):
                if line.startswith(b"data: "):
                    for event in unroll(line[6:]):
                        index = event["data"]["i"]
                        self.indexes[index] = self.indexes.get(index, 0) + 1
                        self.latencies.append(now - event["ts"])


async def _publish(url: str, rate: float, seconds: float, report: SoakReport) -> None:
    interval = _PER_REQUEST / rate
    total = int(rate * seconds)
    limiter = anyio.CapacityLimiter(8)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def post(first: int, n: int) -> None:
            body = [{"type": "LOAD_TEST", "source": _SOURCE, "data": {"i": first + k}} for k in range(n)]
            async with limiter:
                try:
                    response = await http.post("/api/events", json=body)
                except httpx.HTTPError:
                    return
            if response.status_code == 202:
                report.accepted += n

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for request, first in enumerate(range(0, total, _PER_REQUEST)):
                delay = started + request * interval - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                n = min(_PER_REQUEST, total - first)
                report.published += n
                tg.start_soon(post, first, n)


async def _sample(process: psutil.Process, report: SoakReport, stop: anyio.Event, every: float) -> None:
    started = time.monotonic()
    while not stop.is_set():
        with process.oneshot():
            rss = process.memory_info().rss / 2**20
            fds = process.num_fds()
        report.samples.append((time.monotonic() - started, rss, fds))
        with anyio.move_on_after(every):
            await stop.wait()


async def _stored(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT e->'data'->>'i') AS d FROM sse_events,"
            " jsonb_array_elements(CASE WHEN data ? 'events' THEN data->'events' ELSE jsonb_build_array(data) END) e"
            " WHERE source = $1",
            _SOURCE,
        )
    finally:
        await conn.close()
    return int(row["n"]), int(row["d"])


async def _soak(
    server: ServerUnderTest, dsn: str, minutes: float, rate: float, clients: int, warmup: float, progress: bool
) -> SoakReport:
    report = SoakReport(minutes=minutes, rate=rate, clients=clients)
    process = psutil.Process(server.pid)
    cpu_before = sum(process.cpu_times()[:2])
    received = Signal()
    readers = [_Client(i < _SAMPLED, received.set) for i in range(clients)]
    seconds = minutes * 60
    every = max(1.0, min(5.0, seconds / 60))
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        for client in readers:
            tg.start_soon(client.run, "127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        with anyio.fail_after(60):
            for client in readers:
                await client.ready.wait()
        failed = [c.error for c in readers if c.error]
        if failed:
            raise RuntimeError(f"{len(failed)} of {clients} clients could not subscribe: {failed[0]}")
        tg.start_soon(_sample, process, report, stop, every)

        async def show() -> None:
            while not stop.is_set():
                with anyio.move_on_after(30):
                    await stop.wait()
                if progress and report.samples:
                    t, rss, fds = report.samples[-1]
                    low = min(c.events for c in readers)
                    print(f"soak: t={t:5.0f}s accepted={report.accepted} slowest={low} rss={rss:.0f} MiB fds={fds}")

        tg.start_soon(show)
        await _publish(server.url, rate, seconds, report)
        # Delivery is bounded: what has not arrived a minute after publishing stopped never will.
        with anyio.move_on_after(60):
            while any(c.events < report.accepted for c in readers):
                await received.wait()
        stop.set()
        tg.cancel_scope.cancel()
    report.cpu_seconds = sum(process.cpu_times()[:2]) - cpu_before
    report.complete_clients = sum(1 for c in readers if c.events == report.accepted)
    report.id_regressions = sum(c.id_regressions for c in readers)
    for client in readers[:_SAMPLED]:
        report.sampled_duplicates += sum(n - 1 for n in client.indexes.values() if n > 1)
        report.sampled_missing += report.published - len(client.indexes)
    latencies = [x for c in readers[:_SAMPLED] for x in c.latencies]
    report.latency_p50_ms = _ms(_percentile(latencies, 0.5))
    report.latency_p99_ms = _ms(_percentile(latencies, 0.99))
    warm = [s for s in report.samples if s[0] <= warmup * seconds] or report.samples[:1]
    after = [s for s in report.samples if s[0] >= warm[-1][0]]
    quarter = max(1, len(after) // 4)
    report.rss_warm_mib = statistics.median(s[1] for s in after[:quarter])
    report.rss_late_mib = statistics.median(s[1] for s in after[-quarter:])
    report.rss_max_mib = max(s[1] for s in after)
    report.rss_end_mib = report.samples[-1][1]
    report.fds_warm_max = max(s[2] for s in warm)
    report.fds_end = report.samples[-1][2]
    report.fds_max = max(s[2] for s in report.samples)
    report.stored_events, report.stored_distinct = await _stored(dsn)
    return report


def soak(
    dsn: str,
    data_dir: Path,
    *,
    minutes: float,
    rate: float = 5000.0,
    clients: int = 200,
    warmup: float = 0.2,
    progress: bool = False,
) -> SoakReport:
    """Run one soak against a fresh server (demo workers on) on ``dsn``; stop it afterwards."""
    server = ServerUnderTest(dsn, data_dir, free_port(), demo=True)
    server.start()
    try:
        return anyio.run(_soak, server, dsn, minutes, rate, clients, warmup, progress)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second published")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction of the run before RSS is watched")
    parser.add_argument("--samples", action="store_true", help="print every RSS and fd sample")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    with postgres() as pg, tempfile.TemporaryDirectory(prefix="sse-soak-") as tmp:
        dsn = pg.create_database("soak")
        options = {"rate": args.rate, "clients": args.clients, "warmup": args.warmup}
        r = soak(dsn, Path(tmp), minutes=args.minutes, progress=True, **options)
    print(f"run                       {r.minutes:g} min, {r.rate:g} events/s, {r.clients} clients, demo workers on")
    print(f"published / accepted      {r.published:,} / {r.accepted:,}")
    print(f"clients with every event  {r.complete_clients}/{r.clients}; id regressions {r.id_regressions}")
    print(f"sampled: twice / missing  {r.sampled_duplicates} / {r.sampled_missing}")
    print(f"stored / distinct         {r.stored_events:,} / {r.stored_distinct:,}")
    print(
        f"RSS MiB (medians)         {r.rss_warm_mib:.1f} after warm-up, {r.rss_late_mib:.1f} at the end "
        f"(growth {r.rss_growth:+.1%}); peak {r.rss_max_mib:.1f}, last {r.rss_end_mib:.1f}"
    )
    print(f"file descriptors          max in warm-up {r.fds_warm_max}, end {r.fds_end}, max {r.fds_max}")
    print(f"latency p50 / p99         {r.latency_p50_ms} / {r.latency_p99_ms} ms (sampled clients)")
    print(f"server CPU                {r.cpu_seconds:.0f} s ({r.cpu_seconds / (r.minutes * 60):.0%} of one core)")
    if args.samples:
        print("samples (s, RSS MiB, fds): " + " ".join(f"{t:.0f}:{m:.1f}:{n}" for t, m, n in r.samples))
    print(f"verdict                   {'ok' if r.ok else 'FAILED'}")
    return 0 if r.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
