"""GET /api/stats and GET /healthz (``server/app/stats.py``): the shape the dashboard reads, and health that
names what is down or draining."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import publish, subscribed


async def test_healthz_is_ok_while_store_answers_and_batcher_runs(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "ok", "store": "ok", "batcher": "running", "follower": "ok", "breaker": "closed"},
    )


async def test_healthz_is_503_naming_the_store_when_it_is_down(live: LiveServer) -> None:
    await live.runtime.store.aclose()
    async with live.client() as client:
        response = await client.get("/healthz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable" and body["store"].startswith("unavailable") and body["batcher"] == "running"


async def test_healthz_says_draining_during_shutdown(live: LiveServer) -> None:
    await live.runtime.drain()
    async with live.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["batcher"] == "draining"


async def test_stats_have_the_shape_the_dashboard_reads(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        await publish(client, [{"type": "JOB_STARTED", "data": {"job_id": i}} for i in range(3)])
        await received.wait_for(lambda r: r.count() == 3)
        # The follower may hand the rows on before the writer's COMMIT answer is back: wait for it.
        assert await live.runtime.batcher.flush(timeout=10)
        stats = (await client.get("/api/stats")).json()
        tg.cancel_scope.cancel()
    assert set(stats) == {
        "ts", "batcher", "store", "hub", "sizing", "follower", "workers", "process", "demo", "node", "nodes", "ab",
        "latency", "digests",
    }  # fmt: skip
    assert stats["digests"] == {"enabled": False, "rules": []}
    assert stats["follower"]["connected"] is True and stats["follower"]["lag"] == 0
    assert stats["ab"] == {"arms": []}  # no A/B without SSE_BATCH_STRATEGY_B
    assert stats["demo"] == {"enabled": False}
    batcher = stats["batcher"]
    for key in (
        "state",
        "events_emitted",
        "events_batched",
        "events_saved",
        "batches_created",
        "messages_stored",
        "buffer_depth",
        "buffer_high_water",
        "retries",
        "failed_writes",
        "dead_lettered_batches",
        "batch_size",
        "batch_timeout_seconds",
        "batching_enabled",
    ):
        assert key in batcher, key
    assert set(batcher["flushes"]) == {"idle", "size", "timeout", "manual", "critical", "bypass", "shutdown"}
    assert batcher["events_emitted"] == 3 and batcher["events_saved"] == 2
    hub = stats["hub"]
    assert (hub["clients"], hub["messages_sent"]) == (1, 1) and hub["bytes_sent"] > 0, hub
    assert hub["lagged"] == 0 and hub["send_timeouts"] == 0
    assert stats["store"]["rows_written"] == 1
    assert {
        "dynamic",
        "strategy",
        "strategy_state",
        "batch_size",
        "batch_timeout_seconds",
        "load",
        "history",
        "breaker",
    } <= set(stats["sizing"])
    assert stats["workers"] == []
    assert stats["process"]["rss_bytes"] > 0 and "cpu_percent" in stats["process"]


async def test_healthz_names_the_dead_letter_file_and_publishes_get_503_while_it_refuses_writes(
    dsn: str, tmp_path: Path
) -> None:
    config = make_config(dsn, tmp_path, batcher={"max_retries": 0, "retry_delay_seconds": 0.01})
    async with serving(config) as live, live.client() as client:
        runtime = live.runtime
        blocker = runtime.batcher.config.data_dir / "deadletter"
        await runtime.store.aclose()  # the store is down, and so is the disk behind it
        blocker.write_text("a file where the dead-letter directory should be")
        assert (await client.post("/api/events", json={"type": "T", "data": {}})).status_code == 202
        await until(lambda: runtime.batcher.statistics().held_batches == 1)
        refused = await client.post("/api/events", json={"type": "T", "data": {}})
        health = await client.get("/healthz")
        assert (refused.status_code, refused.headers["Retry-After"]) == (503, "1")
        assert "dead-letter file" in refused.json()["error"]
        assert health.status_code == 503 and str(blocker) in health.json()["deadletter"]
        blocker.unlink()  # the held batch goes to the file: nothing is lost at shutdown
        await until(lambda: runtime.batcher.statistics().kept_on_disk)
        assert "deadletter" not in (await client.get("/healthz")).json()
