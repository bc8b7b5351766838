"""GET /events?snapshot=1 and GET /api/state: the latest event of every open key, then live."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import msgspec

from tests.server.live import LiveServer
from tests.server.sse import subscribed


async def stored(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> list[int]:
    response = await client.post("/api/events", params={"wait": "stored"}, json=events)
    assert response.status_code == 201, response.text
    ids: list[int] = response.json()["ids"]
    return ids


def job(type_: str, key: str, source: str = "web", **data: Any) -> dict[str, Any]:
    return {"type": type_, "source": source, "key": key, "data": {"job_id": key, **data}}


async def test_a_snapshot_stream_starts_with_the_open_keys_then_goes_on_live(live: LiveServer) -> None:
    async with live.client() as client:
        ids = await stored(
            client,
            [job("JOB_STARTED", "a"), job("JOB_STARTED", "b"), job("JOB_PROGRESS", "a", percent=50),
             job("JOB_COMPLETED", "b"), {"type": "NOTE", "source": "web", "data": {}}],
        )  # fmt: skip
        async with anyio.create_task_group() as tg:
            received = subscribed(tg, client, params={"snapshot": "1"})
            await received.connected.wait()
            await received.wait_for(lambda r: len(r.messages) >= 1)
            later = await stored(client, [job("JOB_STARTED", "c")])
            await received.wait_for(lambda r: len(r.messages) >= 2)
            tg.cancel_scope.cancel()

    first, second = received.messages[:2]
    body = msgspec.json.decode(first.data)
    assert first.event == "STATE_SNAPSHOT" and int(first.id) == body["upto_id"] == max(ids)
    assert body["type"] == "STATE_SNAPSHOT" and body["count"] == 1
    (event,) = body["events"]
    assert event["type"] == "JOB_PROGRESS" and event["key"] == "a" and event["data"] == {"job_id": "a", "percent": 50}
    assert event["source"] == "web" and isinstance(event["seq"], int) and isinstance(event["message_id"], int)
    assert int(second.id) == later[0] and second.event == "JOB_STARTED"


async def test_a_resume_ignores_snapshot(live: LiveServer) -> None:
    async with live.client() as client:
        first = await stored(client, [job("JOB_STARTED", "a")])
        second = await stored(client, [job("JOB_STARTED", "b")])
        params = {"snapshot": "1", "types": "JOB_STARTED"}
        async with anyio.create_task_group() as tg:
            received = subscribed(tg, client, params=params, headers={"Last-Event-ID": str(first[0])})
            await received.wait_for(lambda r: len(r.messages) >= 1)
            tg.cancel_scope.cancel()

    assert received.messages[0].event == "JOB_STARTED" and int(received.messages[0].id) == second[0]


async def test_api_state_is_the_snapshot_as_json_with_the_filters_on_each_keys_latest_event(live: LiveServer) -> None:
    async with live.client() as client:
        ids = await stored(
            client,
            [job("JOB_STARTED", "a"), job("JOB_STARTED", "b", source="cli"), job("JOB_PROGRESS", "a")],
        )
        everything = await client.get("/api/state")
        started = await client.get("/api/state", params={"types": "JOB_STARTED"})
        cli = await client.get("/api/state", params={"source": "cli"})
        bad = await client.get("/events", params={"snapshot": "maybe"})

    assert everything.status_code == 200 and everything.headers["content-type"] == "application/json"
    body = everything.json()
    assert body["upto_id"] == max(ids) and body["count"] == 2
    assert [(e["key"], e["type"]) for e in body["events"]] == [("b", "JOB_STARTED"), ("a", "JOB_PROGRESS")]
    assert [e["key"] for e in started.json()["events"]] == ["b"]  # a's latest is a progress
    assert [e["key"] for e in cli.json()["events"]] == ["b"]
    assert bad.status_code == 400 and bad.json()["field"] == "snapshot"


async def test_snapshots_are_counted_in_stats_and_metrics(live: LiveServer) -> None:
    async with live.client() as client:
        await client.get("/api/state")
        await client.get("/api/state")
        stats = (await client.get("/api/stats")).json()
        metrics = (await client.get("/metrics")).text

    assert stats["store"]["state_snapshots"] == 2 and stats["store"]["state_displaced"] == 0
    assert 'sse_batcher_state_snapshots_total{node="' in metrics
    assert "sse_batcher_store_state_snapshots" not in metrics
