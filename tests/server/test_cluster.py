"""Several real server processes on one PostgreSQL: one global order, resume on any node."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import asyncpg
import httpx

from tests.server.sse import Received, publish, read_until
from tests.server_process import ServerProcess


@contextmanager
def nodes(dsn: str, tmp_path: Path, count: int) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            node = ServerProcess(dsn, tmp_path / f"node{i}", demo=False)
            (tmp_path / f"node{i}").mkdir()
            node.start()
            started.append(node)
        yield started
    finally:
        for node in started:
            node.stop()


@asynccontextmanager
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        yield http


async def test_every_subscriber_on_every_node_gets_every_event_once_in_one_order(dsn: str, tmp_path: Path) -> None:
    with nodes(dsn, tmp_path, 3) as servers:
        async with anyio.create_task_group() as tg:
            http = [httpx.AsyncClient(base_url=s.url, timeout=20) for s in servers]
            received = [Received() for _ in range(6)]
            for i, r in enumerate(received):  # two subscribers per node
                tg.start_soon(read_until, http[i % 3], r)
            for r in received:
                await r.connected.wait()
            seqs: list[tuple[int, int]] = []

            async def publisher(node: int) -> None:
                for k in range(20):
                    body = [{"type": "JOB_STARTED", "source": f"n{node}", "data": {"job_id": node * 1000 + k * 10 + j}}
                            for j in range(10)]  # fmt: skip
                    for seq in await publish(http[node], body):
                        seqs.append((node, seq))

            async with anyio.create_task_group() as publishers:
                for node in range(3):
                    publishers.start_soon(publisher, node)
            for r in received:
                await r.wait_for(lambda r: len(_events(r)) >= 600, timeout=30)
            tg.cancel_scope.cancel()
        for h in http:
            await h.aclose()
    log = await _stored_ids(dsn)
    job_ids = sorted(n * 1000 + k * 10 + j for n in range(3) for k in range(20) for j in range(10))
    for r in received:
        events = [e["data"]["job_id"] for e in _events(r)]
        assert sorted(events) == job_ids  # every event, exactly once
        # One global order, the same on every node: each subscriber got a gapless stretch of the
        # stored log, in its order. The stretches' ends differ: the nodes' sizers commit
        # BATCH_SIZE_ADJUSTED messages at any time, also while the subscribers are still
        # connecting and after the last event, so a subscriber sees such a message only if
        # it was connected when it committed and still reading when it arrived.
        assert r.ids == [i for i in log if r.ids[0] <= i <= r.ids[-1]]


async def _stored_ids(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [row["id"] for row in await conn.fetch("SELECT id FROM sse_events ORDER BY id")]
    finally:
        await conn.close()


def _events(received: Received) -> list[dict[str, object]]:
    from tests.server.sse import events_of

    # BATCH_SIZE_ADJUSTED events of the nodes' sizing travel the same log; only the test's count.
    return [e for e in events_of(received.messages) if e["source"] != "sizing"]


async def test_a_subscriber_moved_to_another_node_mid_flow_gets_no_gap_and_no_duplicate(
    dsn: str, tmp_path: Path
) -> None:
    with nodes(dsn, tmp_path, 2) as (a, b):
        async with client(a.url) as on_a, client(b.url) as on_b:
            first = Received()
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_until, on_a, first)
                await first.connected.wait()
                for k in range(10):
                    await publish(on_a if k % 2 else on_b, [{"type": "T", "data": {"k": k, "i": i}} for i in range(5)])
                await first.wait_for(lambda r: len(_events(r)) >= 50)
                tg.cancel_scope.cancel()
            last_id = first.ids[-1]
            # Published while the client is between nodes, on both nodes.
            for k in range(10, 20):
                await publish(on_a if k % 2 else on_b, [{"type": "T", "data": {"k": k, "i": i}} for i in range(5)])
            second = Received()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: read_until(on_b, second, headers={"Last-Event-ID": str(last_id)}))
                await second.connected.wait()
                for k in range(20, 25):
                    await publish(on_a, [{"type": "T", "data": {"k": k, "i": i}} for i in range(5)])
                await second.wait_for(lambda r: len(_events(r)) >= 75)
                tg.cancel_scope.cancel()
    got = [(e["data"]["k"], e["data"]["i"]) for e in _events(first) + _events(second)]  # type: ignore[index]
    assert sorted(got) == [(k, i) for k in range(25) for i in range(5)]  # no gap
    assert len(got) == len(set(got))
    assert second.ids[0] > last_id


async def test_a_node_killed_mid_stream_loses_nothing_stored_and_its_clients_resume_elsewhere(
    dsn: str, tmp_path: Path
) -> None:
    with nodes(dsn, tmp_path, 2) as (a, b):
        async with client(a.url) as on_a, client(b.url) as on_b:
            before = Received()
            accepted = 0
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_until, on_a, before)
                await before.connected.wait()
                for k in range(10):
                    response = await on_a.post("/api/events?wait=stored", json=[{"type": "T", "data": {"k": k}}])
                    assert response.status_code == 201, response.text
                    accepted += 1
                await before.wait_for(lambda r: len(_events(r)) >= 10)
                # kill -9 node A while its client is connected
                process = a._process
                assert process is not None
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                tg.cancel_scope.cancel()
            for k in range(10, 20):
                response = await on_b.post("/api/events?wait=stored", json=[{"type": "T", "data": {"k": k}}])
                assert response.status_code == 201
            after = Received()
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: read_until(on_b, after, headers={"Last-Event-ID": str(before.ids[-1])}))
                await after.wait_for(lambda r: len(_events(r)) >= 10)
                tg.cancel_scope.cancel()
    ks = [e["data"]["k"] for e in _events(before) + _events(after)]  # type: ignore[index]
    assert sorted(ks) == list(range(20))
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT coalesce(sum(event_count), 0) FROM sse_events WHERE source <> 'sizing'")
    finally:
        await conn.close()
    assert stored == 20
