"""Bytes per delivered event: full aggregates (inner events whole) against compact ones (the wire format).

For bursts of the same payloads, builds the message the way ``batcher/pipeline/aggregate.py`` did before
(every inner event repeating ``type`` and ``source``, ``ts`` at full float precision) and the way
it does now (compact, ``ts`` in milliseconds), and prints what one SSE message costs per event:

- ``live``: the SSE frame of a live message (``id:``, ``event:``, the msgspec ``data:`` line);
- ``replay``: the same frame with the ``data:`` line as PostgreSQL's jsonb renders it, which is what
  a resumed client receives (jsonb adds a space after ``:`` and ``,`` and reorders keys).

The jsonb text comes from a real (embedded) PostgreSQL, ``SELECT $1::jsonb::text``.

Run: ``python -m bench.wire_bytes``
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate, aggregate_type

from ._pg import machine, postgres

__all__ = ["main"]

BURSTS = (10, 100, 500)
SCENARIOS: tuple[tuple[str, str, Callable[[int], dict[str, Any]]], ...] = (
    ("LOAD_TEST", "loadtest", lambda n: {"i": n}),
    ("JOB_STARTED", "thumbnail", lambda n: {"job_id": n}),
)
FIRST_SEQ = 1_000_000
MESSAGE_ID = 4_200_000


class _OldAggregate(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The full aggregate: inner events are whole ``Event`` structs, type and source repeated."""

    type: str
    source: str
    batch_count: int
    job_ids: list[Any] | msgspec.UnsetType = msgspec.UNSET
    events: list[Event]


def _events(event_type: str, source: str, data: Callable[[int], dict[str, Any]], count: int, ms: bool) -> list[Event]:
    # A burst emitted over a few milliseconds: wall-clock stamps as time.time() gives them.
    start = time.time()
    events = []
    for n in range(count):
        ts = start + n * 7.3e-6
        stamp = round(ts, 3) if ms else ts
        events.append(Event(event_type, source, FIRST_SEQ + n, stamp, msgspec.Raw(msgspec.json.encode(data(n)))))
    return events


def _old_payload(events: list[Event]) -> bytes:
    job_ids = [msgspec.json.decode(e.data).get("job_id") for e in events]
    body = _OldAggregate(
        type=aggregate_type(events[0].type),
        source=events[0].source,
        batch_count=len(events),
        job_ids=[j for j in job_ids if j is not None] or msgspec.UNSET,
        events=events,
    )
    return msgspec.json.encode(body)


def _new_payload(events: list[Event]) -> bytes:
    [message] = aggregate(events, "bench")
    return message.payload


def _frame(name: str, payload: bytes) -> int:
    return len(b"id: %d\nevent: %s\ndata: %s\n\n" % (MESSAGE_ID, name.encode(), payload))


async def _jsonb(connection: asyncpg.Connection, payload: bytes) -> bytes:
    text: str = await connection.fetchval("SELECT $1::jsonb::text", payload.decode())
    return text.encode()


async def _measure(dsn: str) -> list[tuple[str, int, dict[str, float]]]:
    rows = []
    connection = await asyncpg.connect(dsn)
    try:
        for event_type, source, data in SCENARIOS:
            name = aggregate_type(event_type)
            for count in BURSTS:
                old = _old_payload(_events(event_type, source, data, count, ms=False))
                compact = _new_payload(_events(event_type, source, data, count, ms=False))
                compact_ms = _new_payload(_events(event_type, source, data, count, ms=True))
                figures: dict[str, float] = {}
                for label, payload in (("old", old), ("compact", compact), ("compact_ms", compact_ms)):
                    figures[f"{label}_live"] = _frame(name, payload) / count
                    figures[f"{label}_replay"] = _frame(name, await _jsonb(connection, payload)) / count
                rows.append((f"{event_type} from {source}", count, figures))
    finally:
        await connection.close()
    return rows


def main() -> None:
    with postgres() as server:
        rows = asyncio.run(_measure(server.dsn()))
    print(f"# {machine()}")
    print("bytes on the wire per delivered event (SSE frame / events in it); ratio = after / before")
    print()
    print(
        "| burst | events | before, live | compact | ratio | compact + ms ts | ratio "
        "| before, replay (jsonb) | compact | ratio | compact + ms ts | ratio |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, count, f in rows:
        cells = [label, str(count)]
        for where in ("live", "replay"):
            old = f[f"old_{where}"]
            cells.append(f"{old:.1f}")
            for variant in ("compact", "compact_ms"):
                new = f[f"{variant}_{where}"]
                cells += [f"{new:.1f}", f"{new / old:.2f}x"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
