"""Crash test: kill -9 the server mid-burst, restart it on the same data directory and database.

Publishers post small bursts of events, each carrying a unique marker, without pause; the server
is killed with SIGKILL ``--kills`` times, ``--burst`` seconds after each (re)start. Half the
publishers ask ``?wait=stored`` (201 with ids once committed), the other half take the plain 202
(answered once buffered). Nothing is ever re-sent: a request that got no answer is simply left
out of both counts. At the end the rows of ``sse_events`` are unrolled and the markers counted:

- every event answered 201 is stored, exactly once, in the message whose id it was given;
- no event is stored twice (whatever its answer);
- the answered-202 events that are missing are the time in memory docs/durability.md states (buffered, not yet
  committed, when the process died): the figure this prints.

Run: ``python -m bench.crash [--kills 10] [--publishers 4] [--burst 2]`` (an embedded PostgreSQL in
a temporary directory; the server processes use it through DATABASE_URL).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
import httpx
import msgspec

from sse_batcher.server.client import unroll

from ._pg import machine, postgres
from ._server import ServerUnderTest
from ._servers import free_port

__all__ = ["CrashReport", "crash_run", "main"]

_EVENTS_PER_REQUEST = 10


@dataclass(slots=True, kw_only=True)
class CrashReport:
    """What a crash run counted; ``acked_lost``, ``acked_wrong_id`` and ``duplicates`` must be 0."""

    kills: int
    posted: int = 0  # events in requests sent
    acked: int = 0  # answered 201 (committed)
    answered_202: int = 0  # answered 202 (buffered)
    unanswered: int = 0  # no answer (the process died first), a 504, or a 503 while shutting down
    stored: int = 0  # distinct markers in sse_events
    acked_lost: int = 0
    acked_wrong_id: int = 0
    duplicates: int = 0
    lost_202: int = 0  # answered 202 but not stored: the documented window
    unanswered_stored: int = 0  # of the unanswered, how many were stored anyway
    deadletter_restarts: int = 0  # restarts that found a dead-letter file
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class _Publisher(threading.Thread):
    """Posts bursts of fresh markers until told to stop; records what each answer promised."""

    def __init__(self, index: int, url: str, wait_stored: bool, stop: threading.Event) -> None:
        super().__init__(name=f"publisher-{index}", daemon=True)
        self.index = index
        self.url = url + "/api/events" + ("?wait=stored" if wait_stored else "")
        self.wait_stored = wait_stored
        self.stop = stop
        self.posted = 0
        self.acked: dict[str, int] = {}  # marker -> message id (201)
        self.buffered: set[str] = set()  # answered 202
        self.unanswered: set[str] = set()

    def run(self) -> None:
        source = f"pub{self.index}"
        n = 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                markers = [f"{source}-{n + k}" for k in range(_EVENTS_PER_REQUEST)]
                n += _EVENTS_PER_REQUEST
                body = [{"type": "CRASH_TEST", "source": source, "data": {"m": m}} for m in markers]
                self.posted += len(markers)
                try:
                    response = client.post(self.url, json=body)
                except httpx.HTTPError:
                    self.unanswered.update(markers)
                    self.stop.wait(0.05)  # the server is down: try again soon, with new markers
                    continue
                if response.status_code == 201:
                    self.acked.update(zip(markers, response.json()["ids"], strict=True))
                elif response.status_code == 202:
                    self.buffered.update(markers)
                else:
                    self.unanswered.update(markers)
                    self.stop.wait(0.05)


async def _stored(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, data::text AS data FROM sse_events ORDER BY id")
    finally:
        await conn.close()
    return [(row["id"], row["data"]) for row in rows]


def crash_run(
    dsn: str,
    data_dir: Path,
    *,
    kills: int,
    publishers: int,
    burst_seconds: float,
    acked_only: bool = False,
    env: dict[str, str] | None = None,
) -> CrashReport:
    """Kill the server ``kills`` times mid-burst and count what each kind of answer kept.

    ``acked_only`` makes every publisher wait for the commit (no 202 publishers); ``env`` adds
    server settings (the batch timeout bounds how long a 202 event waits in memory).
    """
    started = time.monotonic()
    report = CrashReport(kills=kills)
    server = ServerUnderTest(dsn, data_dir, free_port(), env=env)
    stop = threading.Event()
    pubs = [
        _Publisher(i, server.url, wait_stored=acked_only or i % 2 == 0, stop=stop) for i in range(max(1, publishers))
    ]
    server.start()
    for pub in pubs:
        pub.start()
    try:
        for _ in range(kills):
            time.sleep(burst_seconds)  # the burst runs against the live server meanwhile
            server.kill()
            if (data_dir / "deadletter").exists() and any((data_dir / "deadletter").iterdir()):
                report.deadletter_restarts += 1
            server.start()
        time.sleep(burst_seconds / 2)
    finally:
        stop.set()
        for pub in pubs:
            pub.join(60)
        server.stop()  # graceful: everything answered 202 since the last kill gets stored
    rows = anyio.run(_stored, dsn)
    where: dict[str, int] = {}
    counts: collections.Counter[str] = collections.Counter()
    for message_id, payload in rows:
        for event in unroll(msgspec.json.decode(payload)):
            if event.get("type") != "CRASH_TEST":
                continue  # the server's own messages (node joined, ...)
            marker = event["data"]["m"]
            counts[marker] += 1
            where[marker] = message_id
    acked = {m: i for pub in pubs for m, i in pub.acked.items()}
    buffered = {m for pub in pubs for m in pub.buffered}
    unanswered = {m for pub in pubs for m in pub.unanswered}
    report.posted = sum(pub.posted for pub in pubs)
    report.acked = len(acked)
    report.answered_202 = len(buffered)
    report.unanswered = len(unanswered)
    report.stored = len(counts)
    report.acked_lost = sum(1 for m in acked if m not in counts)
    report.acked_wrong_id = sum(1 for m, i in acked.items() if m in where and where[m] != i)
    report.duplicates = sum(1 for n in counts.values() if n > 1)
    report.lost_202 = sum(1 for m in buffered if m not in counts)
    report.unanswered_stored = sum(1 for m in unanswered if m in counts)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--publishers", type=int, default=4, help="half wait=stored, half plain 202")
    parser.add_argument("--burst", type=float, default=2.0, help="seconds of publishing before each kill")
    parser.add_argument("--batch-timeout", type=float, help="SSE_BATCH_TIMEOUT_SECONDS (default: the server's)")
    args = parser.parse_args(argv)
    env = {} if args.batch_timeout is None else {"SSE_BATCH_TIMEOUT_SECONDS": str(args.batch_timeout)}
    print(f"machine: {machine()}")
    with postgres() as pg, tempfile.TemporaryDirectory(prefix="sse-crash-") as tmp:
        dsn = pg.create_database("crash")
        report = crash_run(
            dsn, Path(tmp), kills=args.kills, publishers=args.publishers, burst_seconds=args.burst, env=env
        )
    timeout = "default" if args.batch_timeout is None else f"{args.batch_timeout:g} s"
    print(f"kills                          {report.kills} (SIGKILL, {args.burst:g} s into each burst)")
    print(f"batch timeout                  {timeout}")
    print(f"events posted                  {report.posted:,}")
    print(f"answered 201 (wait=stored)     {report.acked:,}")
    print(f"answered 202 (buffered)        {report.answered_202:,}")
    print(f"no answer / 504 / 503          {report.unanswered:,} (of them stored anyway: {report.unanswered_stored:,})")
    print(f"stored (distinct markers)      {report.stored:,}")
    print(f"acknowledged lost              {report.acked_lost}")
    print(f"acknowledged under another id  {report.acked_wrong_id}")
    print(f"stored twice                   {report.duplicates}")
    print(f"answered 202 but lost          {report.lost_202:,} ({report.lost_202 / max(report.kills, 1):.0f} per kill)")
    print(f"restarts with a dead-letter    {report.deadletter_restarts}")
    print(f"seconds                        {report.seconds:.1f}")
    return 0 if report.acked_lost == report.acked_wrong_id == report.duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
