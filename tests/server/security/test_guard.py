"""The Guard (``server/security/guard.py``): the bucket a publish is charged to, its 429 or 413, the refund of a
request refused later; and a stream token's grant, which binds even on an open stream and which a request may
narrow but never widen."""

from __future__ import annotations

from pathlib import Path

import anyio

from tests.server.live import LiveServer, make_config, serving
from tests.server.security.test_ratelimit import _events
from tests.server.security.test_tokens import PUB, SECRET, _mint
from tests.server.sse import publish, subscribed


# -- publishing --------------------------------------------------------------------------------
async def test_a_publisher_over_the_rate_gets_429_with_retry_after_and_nothing_is_stored(
    dsn: str, tmp_path: Path
) -> None:
    # One token per 100 s: however slow the machine, nothing refills during the test.
    config = make_config(dsn, tmp_path, publish_rate_limit=0.01, publish_rate_burst=5)
    async with serving(config) as live, live.client() as client:
        await publish(client, _events(4))
        refused = await client.post("/api/events", json=_events(2, start=4))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        assert refused.json()["retry_after_seconds"] == int(refused.headers["retry-after"])
        await publish(client, _events(1, start=4))  # what is left still fits
        assert await live.runtime.batcher.flush()
        assert live.runtime.batcher.statistics().events_emitted == 5
        too_big = await client.post("/api/events", json=_events(6))
        assert too_big.status_code == 413


async def test_a_request_refused_after_the_charge_is_refunded(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, publish_rate_limit=0.01, publish_rate_burst=5)
    async with serving(config) as live, live.client() as client:
        invalid = await client.post("/api/events", json=[*_events(4), {"type": "", "data": {}}])
        assert invalid.status_code == 422
        await publish(client, _events(5))  # the 422 cost nothing


async def test_a_publish_that_waits_for_storage_is_charged_like_any_other(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, publish_rate_limit=0.01, publish_rate_burst=5)
    async with serving(config) as live, live.client() as client:
        stored = await client.post("/api/events", json=_events(5), params={"wait": "stored"})
        assert stored.status_code == 201
        again = await client.post("/api/events", json=_events(1, start=5), params={"wait": "stored"})
        assert again.status_code == 429
        assert live.runtime.batcher.statistics().events_emitted == 5


async def test_each_publish_token_has_its_own_bucket(dsn: str, tmp_path: Path) -> None:
    tokens = tmp_path / "publish.tokens"
    tokens.write_text("alpha-token\nbeta-token\n")
    config = make_config(dsn, tmp_path, publish_tokens_file=tokens, publish_rate_limit=0.01, publish_rate_burst=3)
    async with serving(config) as live, live.client() as client:
        alpha = {"Authorization": "Bearer alpha-token"}
        beta = {"Authorization": "Bearer beta-token"}
        assert (await client.post("/api/events", json=_events(3), headers=alpha)).status_code == 202
        assert (await client.post("/api/events", json=_events(1), headers=alpha)).status_code == 429
        assert (await client.post("/api/events", json=_events(3), headers=beta)).status_code == 202


# -- subscribing -------------------------------------------------------------------------------
async def test_a_stream_token_opens_a_closed_stream_and_its_type_filter_binds(guarded: LiveServer) -> None:
    async with guarded.client() as client, anyio.create_task_group() as tg:
        token = await _mint(client, ttl_seconds=60, types=["JOB_COMPLETED"])
        assert (await client.get("/events")).status_code == 401
        received = subscribed(tg, client, params={"token": token})
        await received.connected.wait()
        client.headers.update(PUB)
        await publish(client, {"type": "JOB_STARTED", "data": {"job_id": 1}})
        assert await guarded.runtime.batcher.flush()
        await publish(client, {"type": "JOB_COMPLETED", "data": {"job_id": 1}})
        # Ids increase along the stream: once the later event is here, the earlier one was filtered out.
        await received.wait_for(lambda r: r.count() >= 1)
        tg.cancel_scope.cancel()
    assert [m.event for m in received.messages] == ["JOB_COMPLETED"]


async def test_a_request_may_narrow_a_stream_tokens_filters_but_never_widen_them(guarded: LiveServer) -> None:
    async with guarded.client() as client:
        token = await _mint(client, types=["A", "B"], source="web")
        wider = await client.get("/events", params={"token": token, "types": "A,C"})
        other_source = await client.get("/events", params={"token": token, "source": "cron"})
        async with client.stream("GET", "/events", params={"token": token, "types": "B", "source": "web"}) as ok:
            assert ok.status_code == 200
    assert wider.status_code == other_source.status_code == 403
    assert wider.json()["field"] == "types" and other_source.json()["field"] == "source"


async def test_a_stream_token_binds_even_where_subscribing_is_open(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, publish_token="pub", stream_token_secret=SECRET)
    async with serving(config) as live, live.client() as client:
        token = await _mint(client, types=["A"])
        assert (await client.get("/events", params={"token": token, "types": "B"})).status_code == 403
        assert (await client.get("/events", params={"token": token + "x"})).status_code == 401
