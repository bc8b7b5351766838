"""How long the latest state of 10,000 keys takes to reach a client: ``/events?snapshot=1`` and ``/api/state``.

Run: ``python -m bench.snapshot [--keys N] [--requests R]``.

The state is filled first: N jobs started and each moved once (two events per key, stored through
the batcher, keys on 4 sources), so every key's latest event is a ``JOB_PROGRESS`` inside an
aggregate, the case that needs the event made whole. Then a real server process (``serve
--no-demo``) is asked R times each way, one request at a time, on a kept-alive connection:

- ``/events?snapshot=1``: from sending the request until the whole ``STATE_SNAPSHOT`` message
  has arrived (``arrived``), and until it has also been parsed as JSON into 10,000 Python
  objects (``parsed``, the client's own work included), then the stream is closed;
- ``/api/state``: from sending the request until the body is read, and until it is parsed.

The peer is what a client without the snapshot does: resume from id 0 (``Last-Event-ID: 0``) and
rebuild the state from the whole log, timed until the newest id has arrived and until every event
has been folded into a dict of latest events by key (checked to hold N keys).

Printed: p50 and p99 in ms of each, the body size, and the count (checked to be N). With the
default 200 requests, p99 is the third-slowest request, not the slowest.
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


Sample = tuple[float, float, int]  # seconds until arrived, seconds until parsed, body bytes


def by_stream(client: httpx.Client, keys: int) -> Sample:
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
    arrived = time.perf_counter() - started
    line = buffer[start:].split(b"\n")[1]
    body = msgspec.json.decode(line.removeprefix(b"data: "))
    parsed = time.perf_counter() - started
    if body["count"] != keys:
        raise RuntimeError(f"the snapshot holds {body['count']} keys, expected {keys}")
    return arrived, parsed, len(line)


def by_json(client: httpx.Client, keys: int) -> Sample:
    started = time.perf_counter()
    response = client.get("/api/state")
    arrived = time.perf_counter() - started
    body = msgspec.json.decode(response.content)
    parsed = time.perf_counter() - started
    if body["count"] != keys:
        raise RuntimeError(f"the state holds {body['count']} keys, expected {keys}")
    return arrived, parsed, len(response.content)


def by_replay(client: httpx.Client, keys: int, upto_id: int) -> Sample:
    """The peer: every stored message from id 0, folded into the latest event of each key."""
    started = time.perf_counter()
    last = b"id: %d\n" % upto_id
    buffer = bytearray()
    with client.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as response:
        for chunk in response.iter_raw():
            buffer += chunk
            # The newest message has arrived once the blank line after its id (and data) has.
            at = buffer.rfind(last)
            if at >= 0 and buffer.find(b"\n\n", at) >= 0:
                break
    arrived = time.perf_counter() - started
    latest: dict[tuple[str, str], object] = {}
    for line in bytes(buffer).split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        message = msgspec.json.decode(line[6:])
        for event in message.get("events", [message]):
            if "key" in event:
                latest[(message["source"], event["key"])] = event
    parsed = time.perf_counter() - started
    if len(latest) != keys:
        raise RuntimeError(f"the replay rebuilt {len(latest)} keys, expected {keys}")
    return arrived, parsed, len(buffer)


def _p50_p99(seconds: list[float]) -> tuple[float, float]:
    times = sorted(t * 1000 for t in seconds)
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


def report(name: str, samples: list[Sample]) -> None:
    arrived = _p50_p99([a for a, _, _ in samples])
    parsed = _p50_p99([p for _, p, _ in samples])
    print(
        f"{name:<20} arrived p50 {arrived[0]:6.1f} ms p99 {arrived[1]:6.1f} ms   "
        f"parsed p50 {parsed[0]:6.1f} ms p99 {parsed[1]:6.1f} ms   "
        f"body {samples[0][2] / 1e6:.2f} MB   ({len(samples)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--replays", type=int, default=20, help="requests of the peer (a whole replay each)")
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
                upto_id = msgspec.json.decode(client.get("/api/state").content)["upto_id"]
                replays = [by_replay(client, args.keys, upto_id) for _ in range(args.replays)]
                report("peer: replay from 0", replays)
        finally:
            node.stop()


if __name__ == "__main__":
    main()
