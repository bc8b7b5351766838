"""One bound for the whole shutdown (``server/app/shutdown_budget.py``): the stages share it, and a
database that never answers cannot stretch it to the statement timeout."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import asyncpg
import httpx
import msgspec

from sse_batcher.server.app.shutdown_budget import ShutdownBudget
from tests.server_process import ServerProcess, proxied


def test_each_stage_gets_what_is_left_of_its_share_since_the_start() -> None:
    now = [100.0]
    budget = ShutdownBudget(10.0, clock=lambda: now[0])
    assert budget.left(0.8) == 8.0  # not started: the whole share
    budget.start()
    now[0] += 3.0
    budget.start()  # a second request keeps the first start
    assert budget.left(0.8) == 5.0
    assert budget.left(1.0) == 7.0
    now[0] += 30.0
    assert budget.left(1.0) == 0.25  # spent: a moment, never nothing


async def test_sigterm_behind_a_partition_exits_within_the_bound_and_keeps_every_accepted_event(
    dsn: str, tmp_path: Path
) -> None:
    # The statement timeout (30 s) is six times the shutdown bound (5 s). Behind the partition a
    # write neither commits nor fails, the driver's cancel request hangs, and so does a graceful
    # close: each stage must stop at the shared bound, and every event answered 202 must be kept.
    proxy, node_dsn = await proxied(dsn)
    env = {"SSE_STORE_TIMEOUT_SECONDS": "30", "SSE_SHUTDOWN_TIMEOUT_SECONDS": "5"}
    server = ServerProcess(node_dsn, tmp_path, demo=False, env=env)
    try:
        await anyio.to_thread.run_sync(server.start)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for i in range(6):
                if i == 3:
                    proxy.partition()  # bytes stop both ways, nothing is closed
                answer = await client.post("/api/events", json={"type": "T", "source": "s", "data": {"i": i}})
                assert answer.status_code == 202, answer.text
                await anyio.sleep(0.5)
        started = time.monotonic()
        code = await anyio.to_thread.run_sync(lambda: server.stop(timeout=60))
        took = time.monotonic() - started
        assert code == 0
        # The bound, plus a Python process's own start-to-exit overhead; it took 36.8 s before.
        assert took < 7.0, (took, server.log.read_text()[-3000:])
        proxy.heal()
        # The next start writes back what the shutdown kept on disk.
        await anyio.to_thread.run_sync(server.start)
        conn = await asyncpg.connect(dsn)
        try:
            with anyio.fail_after(20):
                while True:
                    rows = await conn.fetch("SELECT data::text FROM sse_events WHERE source = 's'")
                    stored = sorted(i for row in rows for i in _values_of(row[0]))
                    if len(stored) >= 6:
                        break
                    await anyio.sleep(0.2)
        finally:
            await conn.close()
        assert stored == list(range(6))
    finally:
        proxy.heal()
        await anyio.to_thread.run_sync(server.stop)
        await proxy.aclose()


def _values_of(payload: str) -> list[int]:
    """The ``i`` of every event a stored payload carries (a single event or an aggregate)."""
    decoded = msgspec.json.decode(payload)
    events = decoded.get("events", [decoded])
    return [event["data"]["i"] for event in events]
