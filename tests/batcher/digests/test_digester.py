"""Digester on a real PostgreSQL, time driven by a controllable clock: windows close on time, cover
exactly their events, survive kill -9, and are emitted once however many processes run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import msgspec

from sse_batcher.batcher import PostgresStore, TypeRule
from sse_batcher.batcher.digests.digester import Digester
from sse_batcher.batcher.events import Event
from sse_batcher.batcher.pipeline.aggregate import aggregate
from tests.pg import store_config

ROOT = Path(__file__).resolve().parents[3]
HOUR = 3600.0
T0 = 1_800_000_000.0  # a multiple of 3600 s: clock windows of an hour start here


class Clock:
    """The digester's wall clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def events(source: str, first_seq: int, times: Iterable[float], **data: Any) -> list[Event]:
    return [
        Event("APPROVAL", source, first_seq + i, ts, msgspec.Raw(msgspec.json.encode({"n": first_seq + i, **data})))
        for i, ts in enumerate(times)
    ]


async def store_events(store: PostgresStore, batch: list[Event], origin: str = "o") -> list[int]:
    """Store ``batch`` as one flush would: aggregated per (source, type)."""
    result = await store.write(aggregate(batch, origin))
    return [m.id for m in result.stored]


async def digests(dsn: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, idem_key, data::text FROM sse_events WHERE type LIKE '%_DIGEST' ORDER BY id"
        )
    finally:
        await conn.close()
    return [{"id": r[0], "idem_key": r[1], **msgspec.json.decode(r[2])} for r in rows]


def digester(dsn: str, clock: Clock, **rule: Any) -> Digester:
    rules = {"APPROVAL": TypeRule(**{"digest_seconds": HOUR, **rule})}
    return Digester(store_config(dsn), rules, grace_seconds=2.0, clock=clock)


async def test_a_window_closes_after_its_end_and_covers_exactly_its_events(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0 + 10)
    async with digester(dsn, clock, max_items=3) as node:
        ids = await store_events(store, events("s", 1, [T0 + 5, T0 + 6, T0 + 7]))
        ids += await store_events(store, events("s", 4, [T0 + 100, T0 + HOUR - 1]))
        later = await store_events(store, events("s", 6, [T0 + HOUR + 1]))  # the next window
        assert (await node.run_pass()).digests == ()
        [open_window, next_window] = node.statistics().open_windows
        assert (open_window.count, open_window.closes_at) == (5, T0 + HOUR + 2)
        clock.now = T0 + HOUR + 1.999  # past the end, inside the grace
        assert (await node.run_pass()).digests == ()
        clock.now = T0 + HOUR + 2
        report = await node.run_pass()
        assert len(report.digests) == 1
        [digest] = await digests(dsn)
    assert digest["id"] == report.digests[0] and digest["type"] == "APPROVAL_DIGEST" and digest["source"] == "s"
    data = digest["data"]
    assert (data["count"], data["first_id"], data["last_id"], data["truncated"]) == (5, ids[0], ids[-1], True)
    assert [e["seq"] for e in data["events"]] == [3, 4, 5]  # the newest three, oldest first
    assert (data["window_start"], data["window_end"]) == (T0, T0 + HOUR)
    assert digest["idem_key"] == f"digest:APPROVAL:s::{int(T0 * 1000)}"
    assert next_window.count == 1 and later[0] > ids[-1]


async def test_keep_oldest_and_a_window_without_truncation(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock, max_items=2, keep="oldest") as node:
        await store_events(store, events("a", 1, [T0 + 1, T0 + 2, T0 + 3]))
        await store_events(store, events("b", 10, [T0 + 4]))
        clock.now = T0 + 2 * HOUR
        assert len((await node.run_pass()).digests) == 2
    by_source = {d["source"]: d["data"] for d in await digests(dsn)}
    assert [e["seq"] for e in by_source["a"]["events"]] == [1, 2] and by_source["a"]["truncated"] is True
    assert by_source["b"]["count"] == 1 and by_source["b"]["truncated"] is False


async def test_first_alignment_opens_the_window_at_the_first_event(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock, align="first", digest_seconds=900) as node:
        await store_events(store, events("s", 1, [T0 + 600, T0 + 1400]))
        await store_events(store, events("s", 3, [T0 + 1500]))  # after 600 + 900: a new window
        clock.now = T0 + 1500 + 2
        await node.run_pass()
        clock.now = T0 + 3000
        await node.run_pass()
    first, second = (d["data"] for d in await digests(dsn))
    assert (first["window_start"], first["window_end"], first["count"]) == (T0 + 600, T0 + 1500, 2)
    assert (second["window_start"], second["window_end"], second["count"]) == (T0 + 1500, T0 + 2400, 1)


async def test_group_by_emits_one_digest_per_source_and_group(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock, group_by="user_id") as node:
        mixed = events("s", 1, [T0 + 1, T0 + 2], user_id="u1") + events("s", 3, [T0 + 3], user_id="u2")
        await store_events(store, sorted(mixed, key=lambda e: e.seq))
        await store_events(store, events("t", 4, [T0 + 4], user_id="u1"))
        clock.now = T0 + HOUR + 5
        await node.run_pass()
    found = {(d["source"], d["data"]["group"]): d["data"]["count"] for d in await digests(dsn)}
    assert found == {("s", "u1"): 2, ("s", "u2"): 1, ("t", "u1"): 1}
    assert all(d["type"] == "APPROVAL_DIGEST" for d in await digests(dsn))


async def test_critical_events_bypass_the_digest(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock) as node:
        critical = Event("APPROVAL", "s", 1, T0 + 1, msgspec.Raw(b"{}"), priority="critical")
        await store_events(store, [critical, *events("s", 2, [T0 + 2, T0 + 3])])
        clock.now = T0 + HOUR + 5
        await node.run_pass()
    [digest] = await digests(dsn)
    assert digest["data"]["count"] == 2 and [e["seq"] for e in digest["data"]["events"]] == [2, 3]


async def test_a_late_event_goes_into_the_next_digest_never_lost_nor_counted_twice(
    store: PostgresStore, dsn: str
) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock) as node:
        await store_events(store, events("s", 1, [T0 + 1]))
        clock.now = T0 + HOUR + 5
        await node.run_pass()
        await store_events(store, events("s", 2, [T0 + 2]))  # its window closed already
        clock.now = T0 + 2 * HOUR + 5
        await node.run_pass()
    first, second = (d["data"] for d in await digests(dsn))
    assert (first["count"], second["count"], second["window_start"]) == (1, 1, T0 + HOUR)


async def test_a_restarted_digester_completes_the_window_it_left_open(store: PostgresStore, dsn: str) -> None:
    clock = Clock(T0)
    async with digester(dsn, clock) as node:
        await store_events(store, events("s", 1, [T0 + 1, T0 + 2]))
        await node.run_pass()
    await store_events(store, events("s", 3, [T0 + 3]))  # stored while no digester runs
    clock.now = T0 + HOUR + 5
    async with digester(dsn, clock) as node:
        await node.run_pass()
    [digest] = await digests(dsn)
    assert digest["data"]["count"] == 3


# A node in a process of its own: runs passes with a fixed clock and prints what each did.
_NODE = textwrap.dedent(
    """
    import sys, anyio
    from sse_batcher.batcher import TypeRule
    from sse_batcher.batcher.config import StoreConfig
    from sse_batcher.batcher.digests.digester import Digester

    async def main(dsn, now):
        rules = {"APPROVAL": TypeRule(digest_seconds=3600)}
        async with Digester(StoreConfig(dsn=dsn, pool_size=1), rules, grace_seconds=2.0, clock=lambda: now) as node:
            ready = False
            while True:
                report = await node.run_pass()
                if not ready or report.rows or report.digests:  # quiet otherwise: nobody may be reading
                    print("pass", report.ran, report.rows, *report.digests, flush=True)
                ready = ready or report.ran
                await anyio.sleep(0.001)

    anyio.run(main, sys.argv[1], float(sys.argv[2]))
    """
)


def start_node(dsn: str, now: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _NODE, dsn, repr(now)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def wait_for_line(process: subprocess.Popen[str], predicate: Any, timeout: float = 30) -> list[str]:
    """Read the node's lines until one satisfies ``predicate``; return them all."""
    assert process.stdout is not None
    lines: list[str] = []
    with anyio.fail_after(timeout):
        while True:
            line = await anyio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
            if not line:
                raise AssertionError(f"the node exited: {lines[-5:]}")
            lines.append(line)
            if predicate(line.split()):
                return lines


async def test_kill_9_mid_window_then_restart_yields_one_complete_digest(store: PostgresStore, dsn: str) -> None:
    node = start_node(dsn, T0 + 10)  # mid-window
    try:
        await wait_for_line(node, lambda words: words[:2] == ["pass", "True"])
        await store_events(store, events("s", 1, [T0 + 1, T0 + 2]))
        # Wait for a pass that took the rows in, then keep it busy with more while it is killed.
        await wait_for_line(node, lambda words: words[:2] == ["pass", "True"] and int(words[2]) > 0)
        for seq in range(3, 23):
            await store_events(store, events("s", seq, [T0 + seq]), origin=f"o{seq}")
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if node.stdout is not None:
            node.stdout.close()
    await store_events(store, events("s", 30, [T0 + 30]))
    clock = Clock(T0 + HOUR + 5)
    async with digester(dsn, clock) as restarted:
        await restarted.run_pass()
    [digest] = await digests(dsn)
    assert digest["data"]["count"] == 23


async def closed_windows(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM sse_digest_windows WHERE message_id IS NOT NULL")
    return count


async def test_two_processes_emit_each_digest_exactly_once(store: PostgresStore, dsn: str) -> None:
    # Both clocks are far past every window: each window is due as soon as it is ingested, so the
    # two nodes race for every one of them.
    nodes = [start_node(dsn, T0 + 100 * HOUR) for _ in range(2)]
    try:
        for node in nodes:
            await wait_for_line(node, lambda words: words[:2] == ["pass", "True"])
        windows = 30
        for w in range(windows):
            await store_events(store, events("s", 1 + 3 * w, [T0 + w * HOUR + i for i in (1, 2, 3)]), origin=f"o{w}")
        conn = await asyncpg.connect(dsn)
        try:
            with anyio.fail_after(60):
                while await closed_windows(conn) < windows:  # noqa: ASYNC110 - another process's progress
                    await anyio.sleep(0.01)
        finally:
            await conn.close()
    finally:
        for node in nodes:
            node.kill()
            node.wait()
    emitted: list[int] = []
    for node in nodes:
        assert node.stdout is not None
        emitted += [int(i) for line in node.stdout.read().splitlines() for i in line.split()[3:]]
        node.stdout.close()
    found = await digests(dsn)
    assert sorted(emitted) == [d["id"] for d in found]  # each digest reported by one node only
    assert len(found) == windows
    assert len({d["idem_key"] for d in found}) == windows
    assert sorted(d["data"]["window_start"] for d in found) == [T0 + w * HOUR for w in range(windows)]
    assert all(d["data"]["count"] == 3 for d in found)
