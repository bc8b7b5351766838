"""The app around the stream: dashboard, demo burst, and mounting."""

from __future__ import annotations

import importlib.util
import py_compile
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from sse_batcher import frontend
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


def test_create_app_runs_no_demo_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert create_app().state.config.demo is False
    assert ServerConfig().demo is False


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


async def test_demo_burst_needs_the_publish_token_when_one_is_set(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, demo=True, demo_rate=1.0, publish_token="pub", subscribe_token="sub")
    async with serving(config) as live, live.client() as client:
        anonymous = await client.post("/api/demo/burst", json={"count": 5})
        subscriber = await client.post("/api/demo/burst", json={"count": 5}, headers={"Authorization": "Bearer sub"})
        publisher = await client.post("/api/demo/burst", json={"count": 5}, headers={"Authorization": "Bearer pub"})
    assert anonymous.status_code == subscriber.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert publisher.status_code == 202


async def test_static_serves_the_dashboard_files_but_never_the_packages_python(live: LiveServer) -> None:
    # Make sure a compiled file is there to be asked for, as in any installed copy.
    py_compile.compile(frontend.__file__, cfile=importlib.util.cache_from_source(frontend.__file__))
    compiled = Path(importlib.util.cache_from_source(frontend.__file__)).name
    async with live.client() as client:
        assert (await client.get("/static/app.js")).status_code == 200
        for path in ("__init__.py", f"__pycache__/{compiled}", "__pycache__/", "panels/../__init__.py"):
            assert (await client.get(f"/static/{path}")).status_code == 404, path


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
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        with pytest.raises(RuntimeError, match="lifespan"):
            await client.get("/live/healthz")
