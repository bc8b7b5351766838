"""Opening an app's parts (``server/app/wiring.py``): the sizing wiring, one batcher and its sizer, or a live
A/B of two arms."""

from __future__ import annotations

from pathlib import Path

import anyio
import msgspec

from sse_batcher.batcher.sizing import SizingConfig, SplitBatcher
from sse_batcher.batcher.sizing.split import arm_of
from tests.server.live import make_config, serving
from tests.server.sse import publish, subscribed

SOURCES = [f"worker-{i}" for i in range(12)]


async def test_a_live_ab_routes_sources_to_two_arms_delivers_everything_and_shows_both(
    dsn: str, tmp_path: Path
) -> None:
    # No sizing tick and no backlog of two batches within the test: no BATCH_SIZE_ADJUSTED joins the counts.
    sizing = SizingConfig(strategy="adaptive", strategy_b="conservative", ab_split=0.5, sample_seconds=3600)
    config = make_config(dsn, tmp_path, sizing=sizing, batcher={"batch_size": 100})
    async with serving(config) as live:
        assert isinstance(live.runtime.batcher, SplitBatcher)
        async with live.client() as client, anyio.create_task_group() as tg:
            received = subscribed(tg, client)
            await received.connected.wait()
            for round_ in range(5):
                await publish(client, [{"type": "JOB_PROGRESS", "data": {"i": round_}, "source": s} for s in SOURCES])
            await received.wait_for(lambda r: r.count() == 5 * len(SOURCES))
            stats = (await client.get("/api/stats")).json()
            tg.cancel_scope.cancel()
    per_source: dict[str, list[int]] = {}
    for message in received.messages:
        body = msgspec.json.decode(message.data)
        events = body["events"] if "events" in body else [body]
        per_source.setdefault(body["source"], []).extend(e["data"]["i"] for e in events)
    assert per_source == {s: [0, 1, 2, 3, 4] for s in SOURCES}
    a, b = stats["ab"]["arms"]
    assert (a["strategy"], b["strategy"], a["share"], b["share"]) == ("adaptive", "conservative", 0.5, 0.5)
    on_b = sum(arm_of(s, 0.5) for s in SOURCES)
    assert (a["sources"], b["sources"]) == (len(SOURCES) - on_b, on_b)
    assert (a["events"], b["events"]) == (5 * (len(SOURCES) - on_b), 5 * on_b)
    keys = {"strategy", "share", "sources", "events", "messages", "rows", "p50_ms", "p99_ms", "store_latency_p99_ms"}
    assert set(a) == set(b) == keys
    assert stats["sizing"]["strategy"] == "adaptive"
    assert stats["batcher"]["events_stored"] == 5 * len(SOURCES)
