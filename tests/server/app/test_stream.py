"""GET /events: wire format, resume without gap or duplicate, truncated history, filters, limits."""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import msgspec

from tests.server.live import LiveServer, make_config, serving, until
from tests.server.sse import events_of, publish, subscribed


def _events(n: int, type_: str = "JOB_STARTED", source: str = "web", start: int = 0) -> list[dict[str, object]]:
    return [{"type": type_, "source": source, "data": {"job_id": start + i}} for i in range(n)]


async def test_stream_sends_retry_hint_then_messages_with_id_event_and_one_data_line(live: LiveServer) -> None:
    async with live.client() as client, client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        chunks = response.aiter_raw()
        assert await anext(chunks) == b"retry: 3000\n\n"
        await publish(client, {"type": "JOB_STARTED", "source": "thumbnail", "data": {"job_id": 123}})
        raw = b""
        while b"\n\n" not in raw:
            raw += await anext(chunks)
    id_line, event_line, data_line = raw.split(b"\n\n")[0].split(b"\n")
    assert id_line.startswith(b"id: ") and int(id_line[4:]) >= 1
    assert event_line == b"event: JOB_STARTED"
    data = msgspec.json.decode(data_line.removeprefix(b"data: "))
    assert data["type"] == "JOB_STARTED" and data["source"] == "thumbnail" and data["data"] == {"job_id": 123}


async def test_events_of_one_flush_arrive_as_one_aggregate_message(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        received = subscribed(tg, client)
        await received.connected.wait()
        await publish(client, _events(3))
        await received.wait_for(lambda r: r.count() == 3)
        tg.cancel_scope.cancel()
    (message,) = received.messages
    assert message.event == "JOBS_BATCH_STARTED"
    data = msgspec.json.decode(message.data)
    assert data["batch_count"] == 3 and data["job_ids"] == [0, 1, 2]


async def test_resume_mid_flow_has_no_gap_and_no_duplicate(live: LiveServer) -> None:
    """Events keep flowing while the resumed client replays; it gets each exactly once, in order."""
    async with live.client() as client, anyio.create_task_group() as tg:
        first = subscribed(tg, client)
        await first.connected.wait()
        for i in range(5):
            await publish(client, _events(20, start=i * 20))
        await first.wait_for(lambda r: r.count() == 100)
        resume_from = first.ids[len(first.ids) // 2]
        stop, stopped = anyio.Event(), anyio.Event()

        async def keep_publishing() -> None:
            i = 5
            while not stop.is_set():
                await publish(client, _events(10, start=i * 10 + 1000))
                i += 1
            stopped.set()

        tg.start_soon(keep_publishing)
        resumed = subscribed(tg, client, headers={"Last-Event-ID": str(resume_from)})
        await resumed.connected.wait()
        await resumed.wait_for(lambda r: len(r.ids) >= 20)
        stop.set()
        await stopped.wait()
        assert await live.runtime.batcher.flush()
        last = (await live.runtime.store.bounds())[1]
        await first.wait_for(lambda r: r.ids[-1] == last)
        await resumed.wait_for(lambda r: r.ids[-1] == last)
        tg.cancel_scope.cancel()
    expected = [i for i in first.ids if i > resume_from]
    assert resumed.ids == expected
    assert len(set(resumed.seqs)) == len(resumed.seqs)
    first_seqs = [e["seq"] for e in events_of([m for m in first.messages if int(m.id) > resume_from])]
    assert resumed.seqs == first_seqs


async def test_last_event_id_query_parameter_resumes_like_the_header(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        first = subscribed(tg, client)
        await first.connected.wait()
        for i in range(3):
            await publish(client, _events(1, start=i))
            await first.wait_for(lambda r, n=i + 1: len(r.ids) == n)
        resumed = subscribed(tg, client, params={"last_event_id": str(first.ids[0])})
        await resumed.wait_for(lambda r: len(r.ids) == 2)
        tg.cancel_scope.cancel()
    assert resumed.ids == first.ids[1:]


async def test_header_wins_over_query_parameter_on_reconnect(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        first = subscribed(tg, client)
        await first.connected.wait()
        for i in range(3):
            await publish(client, _events(1, start=i))
            await first.wait_for(lambda r, n=i + 1: len(r.ids) == n)
        resumed = subscribed(tg, client, params={"last_event_id": "0"}, headers={"Last-Event-ID": str(first.ids[1])})
        await resumed.wait_for(lambda r: len(r.ids) >= 1)
        tg.cancel_scope.cancel()
    assert resumed.ids == first.ids[2:]


async def test_malformed_last_event_id_streams_from_now_after_history_truncated(live: LiveServer) -> None:
    # A 4xx would stop a browser's EventSource for good; a malformed id is treated as one out of range.
    async with live.client() as client, anyio.create_task_group() as tg:
        seed = subscribed(tg, client)
        await seed.connected.wait()
        await publish(client, _events(1))
        await seed.wait_for(lambda r: len(r.ids) == 1)
        streams = [subscribed(tg, client, headers={"Last-Event-ID": bad}) for bad in ("-1", "abc", "1e3", "1.5")]
        streams += [subscribed(tg, client, headers={"Last-Event-ID": str(2**63)})]
        streams += [subscribed(tg, client, params={"last_event_id": bad}) for bad in ("x", "\uff11\uff12")]
        for stream in streams:
            await stream.wait_for(lambda r: len(r.messages) == 1)
        await publish(client, _events(1, start=1))
        for stream in streams:
            await stream.wait_for(lambda r: len(r.ids) == 1)
        tg.cancel_scope.cancel()
    for stream in streams:
        notice = stream.messages[0]
        assert notice.event == "HISTORY_TRUNCATED" and notice.id == ""
        assert msgspec.json.decode(notice.data) == {
            "type": "HISTORY_TRUNCATED",
            "first_available_id": seed.ids[0],
            "last_event_id": None,
        }
        assert stream.ids == [seed.ids[0] + 1]  # live from the newest stored message: nothing replayed


async def _delete_up_to(dsn: str, last_id: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM sse_events WHERE id <= $1", last_id)
    finally:
        await conn.close()


async def test_resume_from_deleted_history_starts_with_history_truncated(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path)) as live, live.client() as client:
        async with anyio.create_task_group() as tg:
            first = subscribed(tg, client)
            await first.connected.wait()
            for i in range(4):
                await publish(client, _events(1, start=i))
                await first.wait_for(lambda r, n=i + 1: len(r.ids) == n)
            tg.cancel_scope.cancel()
        await _delete_up_to(dsn, first.ids[1])
        async with anyio.create_task_group() as tg:
            resumed = subscribed(tg, client, headers={"Last-Event-ID": "0"})
            await resumed.wait_for(lambda r: len(r.ids) == 2)
            tg.cancel_scope.cancel()
    notice = resumed.messages[0]
    assert notice.event == "HISTORY_TRUNCATED" and notice.id == ""
    assert msgspec.json.decode(notice.data) == {
        "type": "HISTORY_TRUNCATED",
        "first_available_id": first.ids[2],
        "last_event_id": 0,
    }
    assert resumed.ids == first.ids[2:]


async def test_resume_beyond_newest_id_says_truncated_and_continues_live(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        seed = subscribed(tg, client)
        await seed.connected.wait()
        await publish(client, _events(1))
        await seed.wait_for(lambda r: len(r.ids) == 1)
        resumed = subscribed(tg, client, headers={"Last-Event-ID": "1000000"})
        await resumed.wait_for(lambda r: len(r.messages) == 1)
        await publish(client, _events(1, start=1))
        await resumed.wait_for(lambda r: len(r.ids) == 1)
        tg.cancel_scope.cancel()
    notice = msgspec.json.decode(resumed.messages[0].data)
    assert notice == {"type": "HISTORY_TRUNCATED", "first_available_id": seed.ids[0], "last_event_id": 1000000}
    assert resumed.ids == [seed.ids[0] + 1]


async def test_filters_match_original_type_and_source(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        by_type = subscribed(tg, client, params={"types": "JOB_DONE,JOB_FAILED"})
        by_source = subscribed(tg, client, params={"source": "thumbnail"})
        everything = subscribed(tg, client)
        for r in (by_type, by_source, everything):
            await r.connected.wait()
        await publish(
            client,
            _events(2, "JOB_DONE", "thumbnail")
            + _events(2, "JOB_STARTED", "thumbnail")
            + _events(1, "JOB_FAILED", "web"),
        )
        await everything.wait_for(lambda r: r.count() == 5)
        await by_type.wait_for(lambda r: r.count() == 3)
        await by_source.wait_for(lambda r: r.count() == 4)
        tg.cancel_scope.cancel()
    assert {e["type"] for e in events_of(by_type.messages)} == {"JOB_DONE", "JOB_FAILED"}
    assert {m.event for m in by_type.messages} == {"JOBS_BATCH_DONE", "JOB_FAILED"}
    assert {e["source"] for e in events_of(by_source.messages)} == {"thumbnail"}


async def test_filters_apply_to_replay_too(live: LiveServer) -> None:
    async with live.client() as client, anyio.create_task_group() as tg:
        everything = subscribed(tg, client)
        await everything.connected.wait()
        await publish(client, _events(1, "JOB_DONE") + _events(1, "JOB_STARTED"))
        await everything.wait_for(lambda r: r.count() == 2)
        replayed = subscribed(tg, client, params={"types": "JOB_DONE", "last_event_id": "0"})
        await replayed.wait_for(lambda r: r.count() == 1)
        tg.cancel_scope.cancel()
    assert [e["type"] for e in events_of(replayed.messages)] == ["JOB_DONE"]


async def test_invalid_filters_are_400(live: LiveServer) -> None:
    async with live.client() as client:
        for params in ({"types": "job_started"}, {"types": "A,,B"}, {"source": "bad source!"}, {"types": "X" * 65}):
            response = await client.get("/events", params=params)
            assert response.status_code == 400, params
            assert response.json()["field"] in ("types", "source")


async def test_subscribe_token_is_required_by_header_or_query(dsn: str, tmp_path: Path) -> None:
    config = make_config(dsn, tmp_path, subscribe_token="s3cret")
    async with serving(config) as live, live.client() as client:
        assert (await client.get("/events")).status_code == 401
        wrong = await client.get("/events", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]
        for kwargs in ({"headers": {"Authorization": "Bearer s3cret"}}, {"params": {"token": "s3cret"}}):
            async with client.stream("GET", "/events", **kwargs) as response:  # type: ignore[arg-type]
                assert response.status_code == 200


async def test_one_client_over_max_clients_gets_503(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, max_clients=2)) as live, live.client() as client:
        async with anyio.create_task_group() as tg:
            a, b = subscribed(tg, client), subscribed(tg, client)
            await a.connected.wait()
            await b.connected.wait()
            refused = await client.get("/events")
            assert refused.status_code == 503
            assert "error" in refused.json()
            tg.cancel_scope.cancel()
        # A closed stream frees its place.
        await until(lambda: live.runtime.hub.clients == 0)
        async with client.stream("GET", "/events") as response:
            assert response.status_code == 200
