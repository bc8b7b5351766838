"""The log follower under faults, on a live server: its connection killed, PostgreSQL stopped."""

from __future__ import annotations

import anyio
import asyncpg

from sse_batcher.server.nodes.embedded_pg import EmbeddedPostgres
from tests.server.live import LiveServer, until
from tests.server.sse import publish, subscribed


async def test_follower_connection_killed_mid_stream_heals_with_no_gap(live: LiveServer, dsn: str) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client, params={"types": "T"})
        await received.connected.wait()
        await publish(client, [{"type": "T", "data": {"i": i}} for i in range(10)])
        await received.wait_for(lambda r: r.count() >= 10)
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'sse-batcher-follower' AND datname = current_database()"
            )
        finally:
            await admin.close()
        assert killed == 1
        await publish(client, [{"type": "T", "data": {"i": i}} for i in range(10, 30)])
        await received.wait_for(lambda r: r.count() >= 30)
        await until(lambda: live.runtime.follower.statistics().reconnects >= 1)
        assert (await client.get("/healthz")).json()["follower"] == "ok"
        tg.cancel_scope.cancel()
    assert [e["data"]["i"] for e in received_events(received)] == list(range(30))
    assert received.ids == sorted(set(received.ids))


async def test_healthz_reports_the_follower_down_while_postgres_is_stopped_and_nothing_is_lost(
    live: LiveServer, pg_server: EmbeddedPostgres
) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client, params={"types": "T"})
        await received.connected.wait()
        await publish(client, [{"type": "T", "data": {"i": i}} for i in range(5)])
        await received.wait_for(lambda r: r.count() >= 5)
        await anyio.to_thread.run_sync(pg_server.stop)
        try:
            await until(lambda: not live.runtime.follower.connected, timeout=20)
            health = await client.get("/healthz")
            assert health.status_code == 503 and health.json()["follower"].startswith("down")
            await publish(client, [{"type": "T", "data": {"i": i}} for i in range(5, 15)])  # buffered, then on disk
        finally:
            await anyio.to_thread.run_sync(pg_server.start_again)
        await received.wait_for(lambda r: r.count() >= 15, timeout=60)
        await until(lambda: live.runtime.follower.connected, timeout=20)
        tg.cancel_scope.cancel()
    assert [e["data"]["i"] for e in received_events(received)] == list(range(15))


def received_events(received: object) -> list[dict[str, object]]:
    from tests.server.sse import Received, events_of

    assert isinstance(received, Received)
    return events_of(received.messages)
