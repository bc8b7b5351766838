"""GET /metrics (``server/app/metrics.py``): the stats in the Prometheus text format, from a registry of each
app's own, every family labelled with the node."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sse_batcher.server import create_app
from tests.server.live import LiveServer, serving
from tests.server.nodes.test_node import _beats_after, _config
from tests.server.sse import publish


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


async def test_every_metric_is_labelled_with_the_node(dsn: str, tmp_path: Path) -> None:
    async with serving(_config(dsn, tmp_path, node_id="edge-b")) as live:
        async with live.client() as client:
            await publish(client, {"type": "A", "data": {}})
            assert await live.runtime.batcher.flush()
            await _beats_after(live)
            text = (await client.get("/metrics")).text
    families = list(text_string_to_metric_families(text))
    assert len(families) > 20
    unlabelled = [s.name for f in families for s in f.samples if s.labels.get("node") != "edge-b"]
    assert unlabelled == []
    by_name = {f.name: f for f in families}
    assert by_name["sse_batcher_follower_lag"].samples[0].value == 0
    assert by_name["sse_batcher_nodes_alive"].samples[0].value == 1
