"""How long the latest state of 10,000 keys takes to reach a client: ``/events?snapshot=1`` and ``/api/state``.

Run: ``python -m bench.snapshot [--keys N] [--requests R]``.

The state is filled first: N jobs started and each moved once (two events per key, stored through
the batcher, keys on 4 sources), so every key's latest event is a ``JOB_PROGRESS`` inside an
aggregate, the case that needs the event made whole. Then a real server process (``serve
--no-demo``) is asked R times each way, one request at a time, on a kept-alive connection:

- ``/events?snapshot=1``: from sending the request until the whole ``STATE_SNAPSHOT`` message
  has arrived and been parsed as JSON (the client's work included), then the stream is closed;
- ``/api/state``: from sending the request until the body is read and parsed.

Printed: p50 and p99 in ms, the body size, and the count (checked to be N).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import msgspec

from bench._pg import machine, postgres
from bench._server import ServerUnderTest
from sse_batcher.batcher import BatcherConfig, PostgresStore, SSEEventBatcher, StoreConfig
from tests.server_process import free_port

_SOURCES = ("thumbnail", "overlay", "scheduler", "transcoder")


async def fill(dsn: str, keys: int, data_dir: Path) -> None:
    """Store a start and a progress for each of ``keys`` jobs."""
    config = BatcherConfig(batch_size=1000, max_buffered_events=2 * keys + 1, data_dir=data_dir)
    async with PostgresStore(StoreConfig(dsn=dsn)) as store, SSEEventBatcher(store, config) as batcher:
        for type_ in ("JOB_STARTED", "JOB_PROGRESS"):
            for job in range(keys):
                data = {"job_id": job, "name": f"IMG_{job:05d}.jpg", "percent": 40, "step": "tile 2/5"}
                batcher.emit(type_, data, source=_SOURCES[job % 4], key=str(job))
            if not await batcher.flush(timeout=120):
                raise RuntimeError("flush did not finish")


def by_stream(client: httpx.Client, keys: int) -> tuple[float, int]:
    started = time.perf_counter()
    with client.stream("GET", "/events", params={"snapshot": "1"}) as response:
        parts: list[bytes] = []
        start = -1
        for chunk in response.iter_raw():
            parts.append(chunk)
            if b"\n\n" not in chunk:
                continue  # the message ends with a blank line: only a chunk holding one can end it
            buffer = b"".join(parts)
            start = buffer.find(b"event: STATE_SNAPSHOT\n")
            if start >= 0 and buffer.find(b"\n\n", start) >= 0:
                break
    line = buffer[start:].split(b"\n")[1]
    body = msgspec.json.decode(line.removeprefix(b"data: "))
    elapsed = time.perf_counter() - started
    if body["count"] != keys:
        raise RuntimeError(f"the snapshot holds {body['count']} keys, expected {keys}")
    return elapsed, len(line)


def by_json(client: httpx.Client, keys: int) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get("/api/state")
    body = msgspec.json.decode(response.content)
    elapsed = time.perf_counter() - started
    if body["count"] != keys:
        raise RuntimeError(f"the state holds {body['count']} keys, expected {keys}")
    return elapsed, len(response.content)


def report(name: str, samples: list[tuple[float, int]]) -> None:
    times = sorted(t * 1000 for t, _ in samples)
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(
        f"{name:<22} p50 {statistics.median(times):7.1f} ms   p99 {p99:7.1f} ms   "
        f"body {samples[0][1] / 1e6:.2f} MB   ({len(times)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with postgres() as server, tempfile.TemporaryDirectory() as tmp:
        dsn = server.create_database("snapshot", replace=True)
        asyncio.run(fill(dsn, args.keys, Path(tmp) / "fill"))
        (Path(tmp) / "server").mkdir()
        node = ServerUnderTest(dsn, Path(tmp) / "server", free_port())
        node.start()
        try:
            with httpx.Client(base_url=node.url, timeout=30) as client:
                by_stream(client, args.keys)  # warm up: connection, plans, caches
                by_json(client, args.keys)
                report("/events?snapshot=1", [by_stream(client, args.keys) for _ in range(args.requests)])
                report("/api/state", [by_json(client, args.keys) for _ in range(args.requests)])
        finally:
            node.stop()


if __name__ == "__main__":
    main()
