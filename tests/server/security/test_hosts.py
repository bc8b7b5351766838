"""The Host check (``server/security/hosts.py``): a rebound name reaches nothing; the server's own names do."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sse_batcher.batcher import ConfigError
from sse_batcher.server import ServerConfig
from sse_batcher.server.security.hosts import host_allowed
from tests.server.live import LiveServer, make_config, serving

JSON = {"Content-Type": "application/json"}


async def _answers(client: httpx.AsyncClient, host: str) -> list[int]:
    """Statuses of the dashboard, a publish and a stream asked for under ``Host: host``."""
    headers = {"Host": host}
    page = await client.get("/", headers=headers)
    published = await client.post("/api/events", json={"type": "A", "data": {}}, headers=headers)
    async with client.stream("GET", "/events", headers=headers) as stream:
        streamed = stream.status_code
        if streamed != 200:
            await stream.aread()
            assert stream.headers["content-type"] == "application/json"
            assert stream.json()["field"] == "Host"
            assert stream.headers["x-content-type-options"] == "nosniff"
    return [page.status_code, published.status_code, streamed]


async def test_a_foreign_host_is_refused_with_400_and_nothing_is_stored(live: LiveServer) -> None:
    async with live.client() as client:
        assert await _answers(client, "attacker.example") == [400, 400, 400]
        assert await _answers(client, "attacker.example:8000") == [400, 400, 400]
        assert await _answers(client, "localhost.attacker.example") == [400, 400, 400]
    assert live.runtime.batcher.statistics().events_emitted == 0


async def test_the_servers_own_names_and_address_literals_are_served(live: LiveServer) -> None:
    port = live.url.rsplit(":", 1)[1]
    async with live.client() as client:
        for host in (f"localhost:{port}", "LOCALHOST", f"127.0.0.1:{port}", "[::1]:8000", "192.0.2.7"):
            assert await _answers(client, host) == [200, 202, 200], host


async def test_configured_hosts_are_served_and_a_star_serves_any(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, allowed_hosts=("sse.example.com", "*.internal.example"))
    async with serving(config) as live, live.client() as client:
        assert await _answers(client, "sse.example.com") == [200, 202, 200]
        assert await _answers(client, "a.internal.example:443") == [200, 202, 200]
        assert await _answers(client, "internal.example") == [400, 400, 400]
        assert await _answers(client, "localhost") == [200, 202, 200]
    async with serving(make_config(dsn, tmp_path, allowed_hosts=("*",))) as live, live.client() as client:
        assert await _answers(client, "anything.example") == [200, 202, 200]


def test_the_bound_host_name_is_allowed() -> None:
    assert host_allowed("box.lan:8000", ("box.lan",))
    assert not host_allowed("box.lan.evil:8000", ("box.lan",))
    assert host_allowed(None, ())  # no Host (HTTP/1.0): not a browser, so no rebinding


@pytest.mark.parametrize("bad", ["", "a b", "http://x.example", "x.example/"])
def test_an_allowed_host_that_is_not_a_host_name_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="allowed_hosts"):
        ServerConfig(allowed_hosts=(bad,))
