"""The app around the stream: dashboard, health, stats, metrics, demo burst, and mounting."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

from sse_batcher.server import ServerConfig, create_app
from tests.server.live import LiveServer, make_config, serving
from tests.server.sse import publish, subscribed


async def test_dashboard_and_its_static_files_are_served(live: LiveServer) -> None:
    async with live.client() as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'href="static/style.css"' in page.text
        assert (await client.get("/static/style.css")).status_code == 200
        assert (await client.get("/static/nope.js")).status_code == 404


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
    assert set(batcher["flushes"]) == {"size", "timeout", "manual", "critical", "bypass", "shutdown"}
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


async def test_metrics_are_prometheus_text_from_a_registry_of_the_app(live: LiveServer) -> None:
    async with live.client() as client:
        await publish(client, {"type": "A", "data": {}})
        assert await live.runtime.batcher.flush()
        response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["sse_batcher_events_emitted"].samples[0].value == 1
    assert families["sse_batcher_messages_stored"].samples[0].value == 1
    assert families["sse_batcher_clients"].samples[0].value == 0
    assert {s.labels["reason"] for s in families["sse_batcher_flushes"].samples} >= {"size", "timeout"}
    assert families["sse_batcher_flush_events"].type == "histogram"
    breaker = {s.labels["state"]: s.value for s in families["sse_batcher_breaker_state"].samples}
    assert breaker == {"closed": 1.0, "open": 0.0, "half_open": 0.0}
    # A second app in the same process has its own figures.
    assert create_app(live.runtime.config).state.metrics_registry is not live.app.state.metrics_registry


async def test_demo_burst_is_404_when_the_demo_is_off(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/demo/burst", json={"count": 5})
    assert response.status_code == 404 and response.json()["error"]


async def test_demo_burst_starts_jobs_and_validates_count(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, demo=True, demo_rate=1.0)) as live, live.client() as client:
        for bad in ({"count": 0}, {"count": 10_001}, {"count": "5"}, {"count": True}, {}):
            assert (await client.post("/api/demo/burst", json=bad)).status_code == 422, bad
        assert (
            await client.post("/api/demo/burst", content=b"{", headers={"Content-Type": "application/json"})
        ).status_code == 400
        response = await client.post("/api/demo/burst", json={"count": 5})
        assert (response.status_code, response.json()) == (202, {"requested": 5})
        stats = (await client.get("/api/stats")).json()
        assert stats["workers"] and {"name", "use_batching", "events", "jobs_running"} <= set(stats["workers"][0])


async def _check_mounted(parent: Starlette, live_app: Starlette, config: ServerConfig) -> None:
    """Health, dashboard, static files, stream and publish all answer under the parent's /live."""
    async with (
        serving(config, app=parent, inner=live_app, prefix="/live") as live,
        live.client() as client,
        anyio.create_task_group() as tg,
    ):
        assert (await client.get("/healthz")).json()["status"] == "ok"
        page = await client.get("/")
        assert page.status_code == 200 and 'href="static/style.css"' in page.text
        assert (await client.get("/static/style.css")).status_code == 200
        assert (await client.get("/static/sse-batcher.js")).status_code == 200
        received = subscribed(tg, client)
        await received.connected.wait()
        await publish(client, {"type": "JOB_DONE", "data": {"job_id": 1}})
        await received.wait_for(lambda r: r.count() == 1)
        tg.cancel_scope.cancel()
    assert live_app.state.runtime is None  # the lifespan ended with the parent's


async def test_app_mounted_in_a_parent_runs_through_the_parents_lifespan(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path)
    live_app = create_app(config)
    parent = Starlette(routes=[Mount("/live", app=live_app)], lifespan=live_app.router.lifespan_context)
    await _check_mounted(parent, live_app, config)


async def test_app_mounted_in_fastapi_as_the_readme_shows(dsn: str, tmp_path: Path) -> None:
    from fastapi import FastAPI  # the test extra has it; imported here so only this test needs it

    config = make_config(dsn, tmp_path)
    live_app = create_app(config)
    parent = FastAPI(lifespan=live_app.router.lifespan_context)
    parent.mount("/live", live_app)

    @parent.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    await _check_mounted(parent, live_app, config)
    async with serving(config, app=parent, inner=live_app) as live, live.client() as client:
        assert (await client.get("/hello")).json() == {"hello": "world"}  # the parent's own routes still work
        assert (await client.get("/live/healthz")).json()["status"] == "ok"


async def test_mounting_without_the_lifespan_fails_with_a_clear_error(dsn: str, tmp_path: Path) -> None:
    parent = Starlette(routes=[Mount("/live", app=create_app(make_config(dsn, tmp_path)))])
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="lifespan"):
            await client.get("/live/healthz")
