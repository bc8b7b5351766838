"""The state snapshot against real server processes on one PostgreSQL: exact, shared, durable."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import msgspec
import pytest

from sse_batcher.server.client import unroll
from sse_batcher.server.stream.snapshot import parse_snapshot_flag
from tests.server.sse import Received, read_until
from tests.server_process import ServerProcess

_FINAL = {"JOB_COMPLETED", "JOB_FAILED"}
_TYPES = ("JOB_STARTED", "JOB_PROGRESS", "JOB_PROGRESS", "JOB_COMPLETED", "JOB_FAILED")


@contextmanager
def nodes(dsn: str, tmp_path: Path, count: int) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            (tmp_path / f"node{i}").mkdir(exist_ok=True)
            node = ServerProcess(dsn, tmp_path / f"node{i}", demo=False, env={"SSE_BATCH_TIMEOUT_SECONDS": "0.02"})
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            node.stop()


def batch(rng: random.Random, source: str, size: int) -> list[dict[str, Any]]:
    """Job events over a few dozen keys, some closing them; a keyless event now and then."""
    events: list[dict[str, Any]] = []
    for _ in range(size):
        key = str(rng.randrange(40))
        events.append({"type": rng.choice(_TYPES), "source": source, "key": key, "data": {"job_id": key}})
    events.append({"type": "NOTE", "source": source, "data": {"n": rng.random()}})
    return events


async def expected_state(dsn: str, upto_id: int) -> dict[tuple[str, str], tuple[int, int, str]]:
    """The state the log up to ``upto_id`` implies, rebuilt from scratch: (source, key) -> (message id, seq, type)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, data::text FROM sse_events WHERE id <= $1 ORDER BY id", upto_id)
    finally:
        await conn.close()
    # Each source here publishes through one node, so its events share one seq order: a key's
    # latest event is its highest seq, even when an aggregate carrying an older one was stored
    # after the message carrying a newer one.
    keyed = [(e, message_id) for message_id, text in rows for e in unroll(text) if e.get("key") is not None]
    keyed.sort(key=lambda pair: (pair[0]["source"], pair[0]["seq"]))
    state: dict[tuple[str, str], tuple[int, int, str]] = {}
    for event, message_id in keyed:
        if event["type"] in _FINAL:
            state.pop((event["source"], event["key"]), None)
        else:
            state[(event["source"], event["key"])] = (message_id, event["seq"], event["type"])
    return state


async def log_ids_after(dsn: str, after_id: int) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT id FROM sse_events WHERE id > $1 ORDER BY id", after_id)]
    finally:
        await conn.close()


def snapshot_state(body: dict[str, Any]) -> dict[tuple[str, str], tuple[int, int, str]]:
    return {(e["source"], e["key"]): (e["message_id"], e["seq"], e["type"]) for e in body["events"]}


async def test_a_snapshot_taken_while_publishers_run_is_the_log_up_to_n_and_live_is_the_log_after_n(
    dsn: str, tmp_path: Path
) -> None:
    with nodes(dsn, tmp_path, 2) as servers:
        http = [httpx.AsyncClient(base_url=s.url, timeout=20) for s in servers]
        received = Received()
        going = anyio.Event()

        async def publisher(node: int) -> None:
            rng = random.Random(node)
            for i in range(60):
                events = batch(rng, f"n{node}", 5)
                response = await http[node].post("/api/events", params={"wait": "stored"}, json=events)
                assert response.status_code == 201, response.text
                if i == 10:
                    going.set()  # the snapshot lands mid-run

        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as publishers:
                publishers.start_soon(publisher, 0)
                publishers.start_soon(publisher, 1)
                await going.wait()
                tg.start_soon(lambda: read_until(http[1], received, params={"snapshot": "1"}))
            # Both publishers are done: wait until the stream has everything the log has.
            conn = await asyncpg.connect(dsn)
            try:
                last = await conn.fetchval("SELECT max(id) FROM sse_events")
            finally:
                await conn.close()
            await received.wait_for(lambda r: bool(r.ids) and r.ids[-1] >= last, timeout=30)
            states = [(await h.get("/api/state")).content for h in http]
            tg.cancel_scope.cancel()
        for client in http:
            await client.aclose()

    first = received.messages[0]
    body = msgspec.json.decode(first.data)
    upto_id = int(first.id)
    assert first.event == "STATE_SNAPSHOT" and body["upto_id"] == upto_id > 0
    assert upto_id < last and body["count"] > 0  # taken mid-run, with keys open
    assert snapshot_state(body) == await expected_state(dsn, upto_id)
    assert body["count"] == len(body["events"])
    # No gap, no duplicate (the server's own keyless messages may go on after ``last``).
    assert [i for i in received.ids[1:] if i <= last] == [i for i in await log_ids_after(dsn, upto_id) if i <= last]
    # Two nodes serve the same state, byte for byte.
    assert states[0][states[0].index(b',"count"') :] == states[1][states[1].index(b',"count"') :]
    assert snapshot_state(msgspec.json.decode(states[0])) == await expected_state(dsn, last)


async def test_a_restart_keeps_the_state(dsn: str, tmp_path: Path) -> None:
    with nodes(dsn, tmp_path, 1) as (server,):
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            events = batch(random.Random(7), "w", 30)
            response = await client.post("/api/events", params={"wait": "stored"}, json=events)
            assert response.status_code == 201
            before = (await client.get("/api/state")).json()
        server.stop()
        server.start()
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            after = (await client.get("/api/state")).json()

    assert before["count"] > 0
    assert snapshot_state(after) == snapshot_state(before)


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("1", True), ("true", True), ("0", False)])
def test_the_snapshot_flag_reads_as_a_bool(value: str | None, expected: bool) -> None:
    assert parse_snapshot_flag(value) is expected


def test_a_snapshot_flag_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="snapshot must be 1 or 0"):
        parse_snapshot_flag("maybe")
